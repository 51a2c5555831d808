"""The fake API as the pytest plugin's ``r9s_fake_api`` fixture hands it to a test."""

from __future__ import annotations

from ._fake import FakeR9sAPI

__all__ = ["ServedFakeR9sAPI"]


class ServedFakeR9sAPI(FakeR9sAPI):
    """A :class:`FakeR9sAPI` that is being served, and knows where.

    The ``r9s_fake_api`` fixture builds one from its options, serves it from a background
    thread for the length of the test, and sets :attr:`base_url`. Everything else is the
    :class:`FakeR9sAPI` itself: ``requests``, ``add_fault``, ``fault_plan``, ``rate_limit``.

    Attributes:
        base_url: The URL to give the client, for example
            ``"http://127.0.0.1:41234/api/v1/portal/management"``.
    """

    base_url: str
