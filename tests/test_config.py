"""Configuration: where the key and base URL come from, what is refused, and how ``ApiKey`` and
``AuthHeaders`` keep the key hidden (the promise as a whole: ``test_secrets.py``)."""

from __future__ import annotations

import copy
import pickle

import pytest

from r9s_async import AsyncClient, Client, ConfigurationError, R9sError
from r9s_async._config import (
    DEFAULT_BASE_URL,
    ApiKey,
    AuthHeaders,
    check_positive,
    check_user_id,
    resolve_api_key,
    resolve_base_url,
)
from r9s_async.testing import TEST_API_KEY, FakeR9sAPI

KEY = "sk_mg_" + "9f" * 32


def test_the_key_comes_from_the_argument() -> None:
    assert "Bearer " + KEY == resolve_api_key(KEY).authorization()


def test_the_key_comes_from_r9s_api_key_when_not_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("R9S_API_KEY", KEY)

    assert "Bearer " + KEY == resolve_api_key(None).authorization()


def test_the_argument_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("R9S_API_KEY", "sk_mg_other")

    assert "Bearer " + KEY == resolve_api_key(KEY).authorization()


@pytest.mark.parametrize("env", [None, ""], ids=["unset", "empty"])
def test_no_key_anywhere_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, env: str | None
) -> None:
    if env is not None:
        monkeypatch.setenv("R9S_API_KEY", env)

    with pytest.raises(ConfigurationError, match="R9S_API_KEY"):
        AsyncClient()


def test_configuration_errors_are_r9s_errors() -> None:
    with pytest.raises(R9sError):
        Client()


def test_an_empty_key_argument_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="empty"):
        resolve_api_key("")


def test_a_key_that_is_not_a_string_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="api_key must be a str, not bytes"):
        resolve_api_key(KEY.encode())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "bad",
    [
        KEY + "\n",
        " " + KEY,
        KEY[:10] + " " + KEY[10:],
        KEY + "\t",
        KEY + "\x00",
        KEY + "\x7f",
        KEY + "é",
        KEY + "\u200b",
    ],
    ids=["newline", "leading-space", "inner-space", "tab", "nul", "del", "non-ascii", "zwsp"],
)
def test_keys_with_whitespace_control_or_non_ascii_are_refused_without_echoing_them(
    bad: str,
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        resolve_api_key(bad)

    assert "whitespace, control or non-ASCII" in str(caught.value)
    assert KEY[8:20] not in str(caught.value)


def test_a_bad_key_from_the_environment_names_the_variable_not_the_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("R9S_API_KEY", KEY + " ")

    with pytest.raises(ConfigurationError, match="R9S_API_KEY") as caught:
        AsyncClient()

    assert KEY not in str(caught.value)


def test_the_default_base_url_is_the_public_endpoint() -> None:
    assert "https://portal-api.r9s.ai/api/v1/portal/management" == DEFAULT_BASE_URL
    assert DEFAULT_BASE_URL == str(resolve_base_url(None))
    assert DEFAULT_BASE_URL == AsyncClient(KEY).base_url


def test_the_base_url_comes_from_r9s_base_url_when_not_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("R9S_BASE_URL", "https://proxy.example.com/r9s")

    assert "https://proxy.example.com/r9s" == AsyncClient(KEY).base_url


def test_the_base_url_argument_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("R9S_BASE_URL", "https://proxy.example.com/r9s")

    assert "https://api.example.com/v1" == str(resolve_base_url("https://api.example.com/v1/"))


async def test_key_and_base_url_from_the_environment_reach_the_api(
    monkeypatch: pytest.MonkeyPatch, api: FakeR9sAPI, base_url: str
) -> None:
    monkeypatch.setenv("R9S_API_KEY", TEST_API_KEY)
    monkeypatch.setenv("R9S_BASE_URL", base_url)

    async with AsyncClient() as client:
        await client.usage(0, 10)

    assert [True] == [r.authorized for r in api.requests]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/api",
        "http://127.0.0.2/api",
        "http://[::1]:8080/api",
        "http://localhost:8080/api",
        "http://LOCALHOST/api",
    ],
)
def test_plain_http_is_allowed_for_loopback_hosts(url: str) -> None:
    assert url.lower() == str(resolve_base_url(url)).lower()


@pytest.mark.parametrize(
    "url",
    [
        "http://portal-api.r9s.ai/api/v1/portal/management",
        "http://10.0.0.1/api",
        "http://0.0.0.0/api",
        "http://127.0.0.1.example.com/api",
        "http://localhost.example.com/api",
        "http://dev.localhost/api",
    ],
)
def test_plain_http_to_other_hosts_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="refusing http://"):
        resolve_base_url(url)


@pytest.mark.parametrize("url", ["ftp://portal-api.r9s.ai/api", "ws://localhost/api"])
def test_other_schemes_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="must use https://"):
        resolve_base_url(url)


@pytest.mark.parametrize(
    "url", ["https://user:secret@portal-api.r9s.ai/api", "https://user@portal-api.r9s.ai/api"]
)
def test_credentials_in_the_url_are_refused_without_echoing_them(url: str) -> None:
    with pytest.raises(ValueError, match="credentials") as caught:
        resolve_base_url(url)

    assert "secret" not in str(caught.value)


@pytest.mark.parametrize(
    "url", ["https://portal-api.r9s.ai/api?user_id=1", "https://portal-api.r9s.ai/api#x"]
)
def test_a_query_or_fragment_in_the_url_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="query or a fragment"):
        resolve_base_url(url)


@pytest.mark.parametrize("url", ["portal-api.r9s.ai/api", "/api", "https:///api"])
def test_relative_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="absolute"):
        resolve_base_url(url)


def test_a_bad_base_url_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="refusing http://"):
        AsyncClient(KEY, base_url="http://portal-api.r9s.ai/api")


def test_api_key_repr_and_str_are_redacted() -> None:
    key = ApiKey(KEY)

    assert ("ApiKey([redacted])", "ApiKey([redacted])") == (repr(key), str(key))
    assert KEY not in f"{key} {key!r} {[key]}"


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_the_api_key_cannot_be_pickled(protocol: int) -> None:
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(ApiKey(KEY), protocol=protocol)


def test_the_api_key_cannot_be_copied_out_either() -> None:
    with pytest.raises(TypeError):
        copy.copy(ApiKey(KEY))


def test_the_api_key_redacts_itself_from_text() -> None:
    assert "key [redacted] and [redacted]" == ApiKey(KEY).redact(f"key {KEY} and {KEY}")
    assert "nothing here" == ApiKey(KEY).redact("nothing here")


def test_auth_headers_render_the_bearer_header_only_when_indexed() -> None:
    headers = AuthHeaders(ApiKey(KEY), {"User-Agent": "ua"})

    assert "Bearer " + KEY == headers["Authorization"]
    assert "ua" == headers["User-Agent"]
    assert ["Authorization", "User-Agent"] == list(headers)
    assert 2 == len(headers)
    assert {"Authorization": "Bearer " + KEY, "User-Agent": "ua"} == dict(headers)


def test_auth_headers_repr_and_str_are_redacted() -> None:
    headers = AuthHeaders(ApiKey(KEY), {"User-Agent": "ua"})

    expected = "AuthHeaders({'User-Agent': 'ua', 'Authorization': 'Bearer [redacted]'})"
    assert (expected, expected) == (repr(headers), str(headers))


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://[::1/api", "not a valid URL"),
        ("https://portal-api.r9s.ai:99999/api", "not a valid URL"),
        ("https://portal api.r9s.ai/api", "whitespace in its host"),
    ],
)
def test_malformed_base_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        resolve_base_url(url)


def test_a_base_url_that_is_not_a_string_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="base_url must be a str, not bytes"):
        resolve_base_url(b"https://portal-api.r9s.ai")  # type: ignore[arg-type]


@pytest.mark.parametrize(("user_id", "expected"), [(None, None), ("u_42", "u_42"), (42, "42")])
def test_user_id_is_sent_as_text(user_id: str | int | None, expected: str | None) -> None:
    assert expected == check_user_id(user_id)


@pytest.mark.parametrize(
    ("user_id", "error"),
    [
        (True, TypeError),
        (4.2, TypeError),
        (b"u", TypeError),
        ("", ValueError),
        ("a b", ValueError),
        ("a\nb", ValueError),
    ],
    ids=repr,
)
def test_bad_user_ids_are_refused(user_id: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="user_id"):
        check_user_id(user_id)


async def test_a_bad_user_id_is_refused_before_any_request(
    api: FakeR9sAPI, client: AsyncClient
) -> None:
    with pytest.raises(ValueError, match="user_id"):
        await client.usage(0, 10, user_id="a b")

    assert [] == api.requests


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (0, ValueError),
        (-1.0, ValueError),
        (float("nan"), ValueError),
        (True, TypeError),
        ("30", TypeError),
    ],
    ids=repr,
)
def test_timeout_must_be_a_positive_number(value: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="timeout"):
        check_positive("timeout", value)
    with pytest.raises(error, match="timeout"):
        AsyncClient(KEY, timeout=value)  # type: ignore[arg-type]


def test_zero_may_be_allowed_for_a_setting() -> None:
    check_positive("latency", 0, allow_zero=True)

    with pytest.raises(ValueError, match=r"latency must be >= 0"):
        check_positive("latency", -0.5, allow_zero=True)


def test_a_key_fingerprint_is_stable_short_hex_and_differs_per_base_url() -> None:
    key = ApiKey("sk_mg_" + "ab" * 32)
    prod = key.fingerprint("https://portal-api.r9s.ai/api/v1/portal/management")
    assert prod == key.fingerprint("https://portal-api.r9s.ai/api/v1/portal/management/")
    assert 16 == len(prod)
    assert set(prod) <= set("0123456789abcdef")
    assert prod != key.fingerprint("https://staging.example/api/v1/portal/management")
    assert prod != ApiKey("sk_mg_" + "cd" * 32).fingerprint(
        "https://portal-api.r9s.ai/api/v1/portal/management"
    )
    assert "ab" * 8 not in prod


# -- settings from the environment ----------------------------------------------------------------


def test_timeout_and_max_retries_default_to_30_seconds_and_3() -> None:
    client = AsyncClient(KEY)

    assert "timeout=30.0, max_retries=3," in repr(client)


def test_r9s_timeout_and_r9s_max_retries_set_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("R9S_TIMEOUT", "2.5")
    monkeypatch.setenv("R9S_MAX_RETRIES", "0")

    assert "timeout=2.5, max_retries=0," in repr(AsyncClient(KEY))
    assert "timeout=2.5, max_retries=0," in repr(Client(KEY))
    assert "timeout=9.0, max_retries=5," in repr(AsyncClient(KEY, timeout=9, max_retries=5))


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("R9S_TIMEOUT", "soon"),
        ("R9S_TIMEOUT", "0"),
        ("R9S_TIMEOUT", "-1"),
        ("R9S_TIMEOUT", "nan"),
        ("R9S_TIMEOUT", "inf"),
        ("R9S_MAX_RETRIES", "-1"),
        ("R9S_MAX_RETRIES", "2.5"),
        ("R9S_MAX_RETRIES", "three"),
        ("R9S_LOG", "verbose"),
    ],
)
def test_a_bad_setting_in_the_environment_is_a_configuration_error_naming_it(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)

    with pytest.raises(ConfigurationError, match=name):
        AsyncClient(KEY)
    with pytest.raises(ConfigurationError, match=name):
        Client(KEY)


def test_an_argument_wins_over_a_bad_environment_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("R9S_TIMEOUT", "soon")
    monkeypatch.setenv("R9S_MAX_RETRIES", "three")

    assert "timeout=1.0, max_retries=1," in repr(AsyncClient(KEY, timeout=1, max_retries=1))
