"""The API double (``r9s_async.testing``) behaves like the real Manager API, over real HTTP."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from typing import Any

import aiohttp
import pytest
from _helpers import D0, DAY, VENDOR_BALANCE

from r9s_async.testing import TEST_API_KEY, FakeR9sAPI, Fault

pytestmark = pytest.mark.usefixtures("quiet_asyncio")

REQUEST_ID = re.compile(r"[A-Za-z0-9]{32}")


async def get(
    base_url: str,
    path: str,
    params: dict[str, str] | None = None,
    *,
    authorization: str | None = "Bearer " + TEST_API_KEY,
) -> tuple[int, Any]:
    """One raw GET; returns the status and the decoded JSON body."""
    headers = {} if authorization is None else {"Authorization": authorization}
    async with (
        aiohttp.ClientSession() as session,
        session.get(base_url + path, params=params, headers=headers) as response,
    ):
        return response.status, await response.json()


def window(start: int, end: int) -> dict[str, str]:
    return {"start_time": str(start), "end_time": str(end)}


# -- authentication ---------------------------------------------------------------------------


async def test_a_well_formed_unknown_key_gets_the_real_401_api_key_not_found(
    base_url: str,
) -> None:
    unknown = "Bearer sk_mg_" + "f" * 64

    status, body = await get(base_url, "/usage", window(D0, D0 + DAY), authorization=unknown)

    assert 401 == status
    assert {"code": 401, "message": "API key not found"} == {
        k: body["meta"][k] for k in ("code", "message")
    }
    assert REQUEST_ID.fullmatch(body["meta"]["request_id"])
    assert body["data"] is None


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer nope", "Bearer sk_mg_" + "F" * 64, "Bearer sk_mg_123", TEST_API_KEY],
    ids=["missing", "short", "uppercase-hex", "too-short-hex", "no-bearer"],
)
async def test_a_malformed_or_missing_key_gets_the_real_401_invalid_api_key_format(
    base_url: str, authorization: str | None
) -> None:
    status, body = await get(base_url, "/balance", authorization=authorization)

    assert 401 == status
    assert "Invalid API key format" == body["meta"]["message"]
    assert 401 == body["meta"]["code"]


async def test_requests_are_recorded_as_authorized_without_the_key(
    api: FakeR9sAPI, base_url: str
) -> None:
    await get(base_url, "/balance")
    await get(base_url, "/balance", authorization="Bearer wrong")

    assert [True, False] == [r.authorized for r in api.requests]
    assert all("authorization" not in {k.lower() for k in r.headers} for r in api.requests)
    assert all(TEST_API_KEY not in repr(r) for r in api.requests)


# -- parameters -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"start_time": str(D0)},
        {"end_time": str(D0)},
        window(D0, D0 + DAY) | {"start_time": "abc"},
        window(D0, D0 + DAY) | {"start_time": "-5"},
        window(D0, D0 + DAY) | {"end_time": "1.5"},
    ],
    ids=["none", "no-end", "no-start", "text", "negative", "fraction"],
)
async def test_usage_without_two_integer_times_is_a_400(
    base_url: str, params: dict[str, str]
) -> None:
    status, body = await get(base_url, "/usage", params)

    assert (400, 400) == (status, body["meta"]["code"])
    assert body["data"] is None


async def test_usage_with_end_before_start_is_a_400(base_url: str) -> None:
    status, body = await get(base_url, "/usage", window(D0 + 10, D0))

    assert (400, "end_time must not be before start_time") == (status, body["meta"]["message"])


# -- the data ---------------------------------------------------------------------------------


async def test_usage_answers_the_seed_pages_envelope_with_records_and_their_total(
    api: FakeR9sAPI, base_url: str
) -> None:
    status, body = await get(base_url, "/usage", window(D0, D0 + 3 * DAY))

    assert 200 == status
    assert (200, "success") == (body["meta"]["code"], body["meta"]["message"])
    assert REQUEST_ID.fullmatch(body["meta"]["request_id"])
    assert api.records(D0, D0 + 3 * DAY) == body["data"]["records"]
    assert sum(r["tokens"] for r in body["data"]["records"]) == body["data"]["total_tokens"]


async def test_daily_mode_has_one_record_per_model_on_each_utc_midnight(
    api: FakeR9sAPI, base_url: str
) -> None:
    _, body = await get(base_url, "/usage", window(D0, D0 + 3 * DAY - 1))

    records = body["data"]["records"]
    expected = Counter({(D0 + d * DAY, m): 1 for d in range(3) for m in api.models})
    assert expected == Counter((r["timestamp"], r["model"]) for r in records)


@pytest.mark.parametrize(("end_inclusive", "days_seen"), [(True, [0, 1]), (False, [0])])
async def test_end_time_is_inclusive_or_exclusive_as_configured(
    end_inclusive: bool, days_seen: list[int]
) -> None:
    api = FakeR9sAPI(end_inclusive=end_inclusive)
    async with api.serve() as base_url:
        _, body = await get(base_url, "/usage", window(D0, D0 + DAY))

    assert [D0 + d * DAY for d in days_seen] == sorted(
        {r["timestamp"] for r in body["data"]["records"]}
    )


async def test_a_record_cap_cuts_an_answer_off_after_the_first_records_but_declares_them_all() -> (
    None
):
    api = FakeR9sAPI(mode="events", events_per_day=50, record_cap=10)
    everything = api.records(D0, D0 + DAY)
    async with api.serve() as base_url:
        _, body = await get(base_url, "/usage", window(D0, D0 + DAY))
        _, small = await get(base_url, "/usage", window(D0, D0 + 1))

    assert everything[:10] == body["data"]["records"]
    assert sum(r["tokens"] for r in everything) == body["data"]["total_tokens"]
    # an answer within the cap is whole
    assert api.records(D0, D0 + 1) == small["data"]["records"]
    assert sum(r["tokens"] for r in small["data"]["records"]) == small["data"]["total_tokens"]


@pytest.mark.parametrize("cap", [-1, True])
def test_a_record_cap_must_be_none_or_a_count(cap: int) -> None:
    with pytest.raises(ValueError, match="record_cap"):
        FakeR9sAPI(record_cap=cap)


@pytest.mark.parametrize("end_inclusive", [True, False])
def test_records_in_is_the_half_open_truth_whatever_end_time_means(end_inclusive: bool) -> None:
    api = FakeR9sAPI(end_inclusive=end_inclusive)

    truth = api.records_in(D0, D0 + DAY)

    assert {D0} == {r["timestamp"] for r in truth}
    assert len(api.models) == len(truth)


async def test_start_time_is_always_inclusive() -> None:
    api = FakeR9sAPI(end_inclusive=False)
    async with api.serve() as base_url:
        _, body = await get(base_url, "/usage", window(D0 + DAY, D0 + DAY + 1))

    assert {D0 + DAY} == {r["timestamp"] for r in body["data"]["records"]}


async def test_events_mode_has_the_first_and_last_second_of_each_day_and_identical_twins() -> None:
    api = FakeR9sAPI(mode="events")
    async with api.serve() as base_url:
        _, body = await get(base_url, "/usage", window(D0, D0 + 5 * DAY - 1))

    records = body["data"]["records"]
    timestamps = {r["timestamp"] for r in records}
    for day in range(5):
        assert {D0 + day * DAY, D0 + day * DAY + DAY - 1} <= timestamps
    twins = [k for k, n in Counter(tuple(sorted(r.items())) for r in records).items() if n > 1]
    assert twins, "identical twins are real, distinct usage and must be served"
    assert [r["timestamp"] for r in records] == sorted(r["timestamp"] for r in records)


def test_the_same_seed_serves_the_same_data_and_another_seed_does_not() -> None:
    first, second, other = FakeR9sAPI(seed=7), FakeR9sAPI(seed=7), FakeR9sAPI(seed=8)

    assert first.records(D0, D0 + 10 * DAY) == second.records(D0, D0 + 10 * DAY)
    assert first.records(D0, D0 + 10 * DAY) != other.records(D0, D0 + 10 * DAY)


async def test_the_same_seed_answers_the_same_request_ids_in_the_same_order() -> None:
    seen: list[list[str]] = []
    for _ in range(2):
        api = FakeR9sAPI(seed=3)
        async with api.serve() as base_url:
            ids = [(await get(base_url, "/balance"))[1]["meta"]["request_id"] for _ in range(3)]
        seen.append(ids)

    assert seen[0] == seen[1]
    assert 3 == len(set(seen[0]))


async def test_balance_answers_the_vendor_sdks_example(base_url: str) -> None:
    status, body = await get(base_url, "/balance")

    assert 200 == status
    assert (0, "") == (body["meta"]["code"], body["meta"]["message"])
    assert VENDOR_BALANCE == body["data"]


# -- scripted faults --------------------------------------------------------------------------


async def test_scripted_faults_are_consumed_in_order_then_normal_answers_resume(
    api: FakeR9sAPI, base_url: str
) -> None:
    api.add_fault(Fault.error(503, "busy"))
    api.add_fault(Fault.respond(429, "slow down", headers={"Retry-After": "7"}), times=2)

    statuses = [(await get_status(base_url, "/balance")) for _ in range(4)]

    assert [(503, None), (429, "7"), (429, "7"), (200, None)] == statuses


async def get_status(base_url: str, path: str, params: dict[str, str] | None = None) -> Any:
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            base_url + path, params=params, headers={"Authorization": "Bearer " + TEST_API_KEY}
        ) as response,
    ):
        await response.read()
        return response.status, response.headers.get("Retry-After")


async def test_a_fault_limited_to_a_path_leaves_other_paths_alone(
    api: FakeR9sAPI, base_url: str
) -> None:
    api.add_fault(Fault.error(500), path="/balance")

    usage = await get_status(base_url, "/usage", window(D0, D0 + DAY))
    balance = await get_status(base_url, "/balance")

    assert [(200, None), (500, None)] == [usage, balance]


async def test_a_fault_limited_to_a_start_time_hits_only_that_window(
    api: FakeR9sAPI, base_url: str
) -> None:
    api.add_fault(Fault.error(502), start_time=D0 + DAY)

    statuses = [
        (await get_status(base_url, "/usage", window(D0 + d * DAY, D0 + (d + 1) * DAY)))[0]
        for d in range(3)
    ]

    assert [200, 502, 200] == statuses


async def test_clear_faults_forgets_the_unused_ones(api: FakeR9sAPI, base_url: str) -> None:
    api.add_fault(Fault.error(500), times=5)
    await get_status(base_url, "/balance")

    api.clear_faults()

    assert (200, None) == await get_status(base_url, "/balance")


async def test_an_error_fault_uses_the_apis_error_envelope(api: FakeR9sAPI, base_url: str) -> None:
    api.add_fault(Fault.error(403, "missing scope usage:read"))

    status, body = await get(base_url, "/balance")

    assert 403 == status
    assert {"code": 403, "message": "missing scope usage:read", "request_id": "F" * 32} == body[
        "meta"
    ]
    assert body["data"] is None


async def test_a_respond_fault_sends_its_body_and_headers_as_given(
    api: FakeR9sAPI, base_url: str
) -> None:
    api.add_fault(Fault.respond(502, "<html>Bad Gateway</html>", headers={"X-Gateway": "lb-1"}))

    async with (
        aiohttp.ClientSession() as session,
        session.get(base_url + "/balance") as response,
    ):
        assert (502, b"<html>Bad Gateway</html>", "lb-1") == (
            response.status,
            await response.read(),
            response.headers["X-Gateway"],
        )


async def test_a_reset_drops_the_connection_without_an_answer(
    api: FakeR9sAPI, base_url: str
) -> None:
    api.add_fault(Fault.reset(), times=2)  # aiohttp retries a dropped GET once by itself

    with pytest.raises(aiohttp.ServerDisconnectedError):
        await get(base_url, "/balance")


async def test_a_reset_after_headers_cuts_the_body_short(api: FakeR9sAPI, base_url: str) -> None:
    api.add_fault(Fault.reset(after_headers=True))

    with pytest.raises(aiohttp.ClientPayloadError):
        await get(base_url, "/balance")


async def test_a_stall_holds_the_answer_back(api: FakeR9sAPI, base_url: str) -> None:
    api.add_fault(Fault.stall(30))

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.1)) as session:
        with pytest.raises(asyncio.TimeoutError):
            await session.get(base_url + "/balance")
        async with session.get(base_url + "/balance") as response:
            assert 401 == response.status  # stalls once, then answers normally (no key here)


# -- instrumentation --------------------------------------------------------------------------


async def test_requests_waiting_out_their_latency_count_as_in_flight() -> None:
    api = FakeR9sAPI(latency=0.05)
    async with api.serve() as base_url:
        await asyncio.gather(*(get(base_url, "/balance") for _ in range(3)))

    assert (3, 3, 0) == (api.peak_in_flight, len(api.requests), api.in_flight)


async def test_connections_counts_distinct_tcp_connections(api: FakeR9sAPI, base_url: str) -> None:
    headers = {"Authorization": "Bearer " + TEST_API_KEY}
    async with aiohttp.ClientSession() as session:
        for _ in range(3):
            async with session.get(base_url + "/balance", headers=headers) as response:
                await response.read()
    async with (
        aiohttp.ClientSession() as session,
        session.get(base_url + "/balance", headers=headers) as response,
    ):
        await response.read()

    assert (4, 2) == (len(api.requests), api.connections)


def test_serve_in_thread_serves_blocking_code_without_an_event_loop() -> None:
    api = FakeR9sAPI()

    with api.serve_in_thread() as base_url:
        status, body = asyncio.run(get(base_url, "/usage", window(D0, D0 + DAY)))

    assert 200 == status
    assert api.records(D0, D0 + DAY) == body["data"]["records"]


async def test_the_base_path_is_configurable() -> None:
    api = FakeR9sAPI(base_path="/v2/")
    async with api.serve() as base_url:
        status, _ = await get(base_url, "/balance")

    assert (True, 200) == (base_url.endswith("/v2"), status)


def test_an_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="mode"):
        FakeR9sAPI(mode="hourly")  # type: ignore[arg-type]
