"""``python -m r9s_async`` runs the ``r9s-usage`` command."""

import sys

from ._cli import main

sys.exit(main())
