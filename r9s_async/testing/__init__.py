"""A fake r9s Manager API for your tests: real HTTP on loopback, deterministic data, faults.

Example::

    from r9s_async import AsyncClient
    from r9s_async.testing import TEST_API_KEY, FakeR9sAPI

    api = FakeR9sAPI(mode="events", end_inclusive=False)
    async with api.serve() as base_url:
        async with AsyncClient(TEST_API_KEY, base_url=base_url) as client:
            report = await client.usage(0, 3 * 86_400)

With pytest, the ``r9s_fake_api`` fixture (installed with the package) serves one per test.
"""

from ._fake import TEST_API_KEY, FakeR9sAPI, RecordedRequest
from ._faults import Fault, FaultKind, FaultPlan, RateLimit
from ._served import ServedFakeR9sAPI

__all__ = [
    "TEST_API_KEY",
    "FakeR9sAPI",
    "Fault",
    "FaultKind",
    "FaultPlan",
    "RateLimit",
    "RecordedRequest",
    "ServedFakeR9sAPI",
]
