"""Per-call ``extra_query`` and ``extra_headers``: checked before anything is sent, then
carried by every request of the call."""

from __future__ import annotations

from typing import Any

import pytest
from _helpers import D0, DAY, expected_records, make_client

from r9s_async import Client
from r9s_async._config import RequestOptions, check_request_options
from r9s_async.testing import TEST_API_KEY, FakeR9sAPI

pytestmark = pytest.mark.usefixtures("quiet_asyncio")

QUERY: dict[str, str | int] = {"key_id": "k_42", "page": 3}
HEADERS = {"X-Trace": "abc", "User-Agent": "finance-bot/1"}


async def test_every_window_of_usage_carries_the_extra_query_and_headers(
    api: FakeR9sAPI, base_url: str
) -> None:
    async with make_client(base_url, max_concurrency=2) as client:
        report = await client.usage(
            D0, D0 + 3 * DAY, user_id=7, extra_query=QUERY, extra_headers=HEADERS
        )

    assert expected_records(api, D0, D0 + 3 * DAY) == report.records
    assert 3 == len(api.requests)
    for request in api.requests:
        assert ("k_42", "3", "7") == tuple(request.query[k] for k in ("key_id", "page", "user_id"))
        assert ("abc", "finance-bot/1") == (
            request.headers["X-Trace"],
            request.headers["User-Agent"],
        )
        assert request.authorized


async def test_iter_usage_carries_them_too(api: FakeR9sAPI, base_url: str) -> None:
    async with make_client(base_url) as client:
        windows = client.iter_usage(D0, D0 + 2 * DAY, extra_query=QUERY, extra_headers=HEADERS)
        reports = [w async for w in windows]

    assert 2 == len(reports) == len(api.requests)
    assert [("k_42", "abc")] * 2 == [
        (r.query["key_id"], r.headers["X-Trace"]) for r in api.requests
    ]


def test_the_sync_client_carries_them_too(api: FakeR9sAPI, threaded_base_url: str) -> None:
    with Client(TEST_API_KEY, base_url=threaded_base_url) as client:
        client.usage(D0, D0 + DAY, extra_query=QUERY, extra_headers=HEADERS)
        list(client.iter_usage(D0, D0 + DAY, extra_query={"key_id": 9}))

    assert ["k_42", "9"] == [r.query["key_id"] for r in api.requests]
    assert "abc" == api.requests[0].headers["X-Trace"]


async def test_without_them_nothing_is_added(api: FakeR9sAPI, base_url: str) -> None:
    async with make_client(base_url) as client:
        await client.usage(D0, D0 + DAY)

    assert {"start_time", "end_time"} == set(api.requests[0].query)
    assert "X-Trace" not in api.requests[0].headers


@pytest.mark.parametrize(
    ("query", "headers", "error", "match"),
    [
        ({"start_time": 0}, None, ValueError, "start_time"),
        ({"end_time": "1"}, None, ValueError, "end_time"),
        ({"user_id": "u"}, None, ValueError, "use the user_id argument"),
        ({"k": True}, None, TypeError, "str or int"),
        ({"k": 1.5}, None, TypeError, "str or int"),
        ({"k": "a\r\nX-Injected: 1"}, None, ValueError, "CR, LF"),
        ({"": "v"}, None, ValueError, "empty name"),
        ({1: "v"}, None, TypeError, "names must be str"),
        ([("k", "v")], None, TypeError, "mapping"),
        (None, {"Authorization": "Bearer x"}, ValueError, "Authorization"),
        (None, {"authorization": "Bearer x"}, ValueError, "authorization"),
        (None, {"AUTHORIZATION": "Bearer x"}, ValueError, "AUTHORIZATION"),
        (None, {"Host": "evil.example"}, ValueError, "Host"),
        (None, {"Content-Length": "0"}, ValueError, "Content-Length"),
        (None, {"Accept-Encoding": "br"}, ValueError, "Accept-Encoding"),
        (None, {"Connection": "close"}, ValueError, "Connection"),
        (None, {"Transfer-Encoding": "chunked"}, ValueError, "Transfer-Encoding"),
        (None, {"X-A": "1\nX-B: 2"}, ValueError, "CR, LF"),
        (None, {"X-A": 5}, TypeError, "must be a str"),
        (None, {"X A": "1"}, ValueError, "not a valid header name"),
        (None, {"X-A": "1", "x-a": "2"}, ValueError, "twice"),
    ],
)
async def test_refused_before_anything_is_sent(
    api: FakeR9sAPI,
    base_url: str,
    query: Any,
    headers: Any,
    error: type[Exception],
    match: str,
) -> None:
    async with make_client(base_url) as client:
        with pytest.raises(error, match=match):
            await client.usage(D0, D0 + DAY, extra_query=query, extra_headers=headers)
        with pytest.raises(error, match=match):
            client.iter_usage(D0, D0 + DAY, extra_query=query, extra_headers=headers)

    assert [] == api.requests


def test_one_frozen_object_carries_them_in_the_callers_order() -> None:
    options = check_request_options(None, {"b": 2, "a": "1"}, {"X-Z": "z"})

    assert RequestOptions(None, (("b", "2"), ("a", "1")), (("X-Z", "z"),)) == options
    assert {"start_time": "0", "end_time": "5", "b": "2", "a": "1"} == options.params(0, 5)
    assert hash(options) == hash(check_request_options(None, {"b": 2, "a": "1"}, {"X-Z": "z"}))
