"""Sphinx configuration for the r9s_async documentation (built by ``nox -s docs``)."""

from __future__ import annotations

import doctest
import os
import re
import sys
from pathlib import Path

import r9s_async

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE / "_ext"))

# sphinxcontrib-programoutput runs ``python -m r9s_async ...``: make that the interpreter that
# runs Sphinx, and fix the width argparse wraps the help text to, so builds are reproducible.
os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
os.environ["COLUMNS"] = "100"

project = "r9s_async"
author = "r9s_async developers"
copyright = "r9s_async developers"
release = r9s_async.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.doctest",
    "sphinx.ext.napoleon",
    "sphinxcontrib.programoutput",
    "r9s_docs",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# -- API reference -------------------------------------------------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_include_init_with_doc = False
python_use_unqualified_type_names = True

# Every reference to r9s_async must resolve. There is no network at build time, so there is no
# intersphinx: names from the standard library and third-party packages render as plain text.
nitpicky = True
_EXTERNAL_MODULES = [
    "aiohttp",
    "asyncio",
    "collections.abc",
    "contextlib",
    "datetime",
    "decimal",
    "os",
    "pandas",
    "pathlib",
    "pyarrow",
    "sqlite3",
    "ssl",
    "types",
]
nitpick_ignore_regex = [
    (r"py:.*", rf"(?:{'|'.join(re.escape(module) for module in _EXTERNAL_MODULES)})\..+"),
]

# -- Examples run as doctests against the API double ---------------------------------------------
# Every example reads like user code (``r9s_async.Client()`` with the key and URL from the
# environment); this setup points that environment at a FakeR9sAPI on loopback.
doctest_global_setup = """
__name__ = "__main__"  # as in a script; aiohttp's web.AppKey reads it
import os as _os
import r9s_async.testing as _testing

_saved_env = {name: _os.environ.get(name) for name in ("R9S_API_KEY", "R9S_BASE_URL")}
_fake_api = _testing.FakeR9sAPI()
_fake_server = _fake_api.serve_in_thread()
_os.environ["R9S_BASE_URL"] = _fake_server.__enter__()
_os.environ["R9S_API_KEY"] = _testing.TEST_API_KEY
"""
doctest_global_cleanup = """
_fake_server.__exit__(None, None, None)
for _name, _value in _saved_env.items():
    if _value is None:
        _os.environ.pop(_name, None)
    else:
        _os.environ[_name] = _value
"""
# Exception messages are part of what the examples show, so they are compared too.
doctest_default_flags = doctest.ELLIPSIS | doctest.DONT_ACCEPT_TRUE_FOR_1
doctest_test_doctest_blocks = ""
trim_doctest_flags = True

# -- HTML ----------------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"r9s_async {release}"
html_static_path: list[str] = []
