"""``ClientSettings``: a client's arguments checked once, the environment's defaults applied, and
``with_options`` changing only what it is given (the client-level rules: ``test_config.py``)."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from yarl import URL

from r9s_async._settings import ClientSettings
from r9s_async._transport import DEFAULT_MAX_RESPONSE_SIZE
from r9s_async._windows import DEFAULT_SPLIT_FLOOR

BASE_URL = "http://127.0.0.1:8080/api"


def resolve(**changes: Any) -> ClientSettings:
    arguments: dict[str, Any] = {
        "base_url": BASE_URL,
        "timeout": None,
        "max_retries": None,
        "max_concurrency": 8,
        "max_rate": None,
        "trust_env": None,
        "on_retry": None,
        "max_response_size": DEFAULT_MAX_RESPONSE_SIZE,
        "split_floor": DEFAULT_SPLIT_FLOOR,
        "session": None,
    }
    return ClientSettings.resolve(**(arguments | changes))


def test_unset_timeout_and_max_retries_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("R9S_TIMEOUT", "2.5")
    monkeypatch.setenv("R9S_MAX_RETRIES", "0")

    settings = resolve()

    assert (URL(BASE_URL), 2.5, 0) == (settings.base_url, settings.timeout, settings.max_retries)


def test_with_options_changes_only_what_it_is_given() -> None:
    settings = resolve(timeout=5, max_rate=3.0)

    assert attrs.evolve(settings, max_retries=0) == settings.with_options(None, 0)
    assert attrs.evolve(settings, timeout=0.5) == settings.with_options(0.5, None)
    assert settings == settings.with_options(None, None)


@pytest.mark.parametrize(
    ("timeout", "max_retries", "error"),
    [(0, None, ValueError), ("5", None, TypeError), (None, -1, ValueError), (None, 1.0, TypeError)],
)
def test_with_options_checks_its_arguments(
    timeout: object, max_retries: object, error: type[Exception]
) -> None:
    with pytest.raises(error):
        resolve().with_options(timeout, max_retries)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"max_concurrency": 0}, ValueError, "max_concurrency"),
        ({"split_floor": True}, TypeError, "split_floor"),
        ({"max_rate": -1}, ValueError, "max_rate"),
        ({"on_retry": "print"}, TypeError, "on_retry"),
        ({"trust_env": "yes"}, TypeError, "trust_env"),
    ],
)
def test_a_bad_setting_is_refused_naming_it(
    changes: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        resolve(**changes)
