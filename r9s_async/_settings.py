"""``ClientSettings``: a client's settings, checked and resolved once from its arguments and
the environment (``R9S_BASE_URL``, ``R9S_TIMEOUT``, ``R9S_MAX_RETRIES``, ``R9S_LOG``)."""

from __future__ import annotations

import attrs
from attrs import frozen
from yarl import URL

from ._config import (
    check_int,
    check_positive,
    configure_logging_from_env,
    resolve_base_url,
    resolve_max_retries,
    resolve_timeout,
)
from ._retry import RetryHook
from ._transport import ClientSession, check_session

__all__ = ["ClientSettings"]


@frozen
class ClientSettings:
    """What an ``AsyncClient`` works with, every default applied (see its arguments).

    The API key is not one of them: it stays in its redacting ``ApiKey``, and a borrowed
    session is a resource, not a setting; both are checked here with the rest.
    """

    base_url: URL
    timeout: float
    max_retries: int
    max_concurrency: int
    max_rate: float | None
    trust_env: bool | None
    on_retry: RetryHook | None
    max_response_size: int
    split_floor: int

    @classmethod
    def resolve(
        cls,
        *,
        base_url: str | None,
        timeout: float | None,
        max_retries: int | None,
        max_concurrency: int,
        max_rate: float | None,
        trust_env: bool | None,
        on_retry: RetryHook | None,
        max_response_size: int,
        split_floor: int,
        session: ClientSession | None,
    ) -> ClientSettings:
        """Check the arguments of ``AsyncClient`` and fill in the environment's defaults;
        ``R9S_LOG`` turns on logging to stderr.

        Raises:
            ConfigurationError: A bad ``R9S_TIMEOUT``, ``R9S_MAX_RETRIES`` or ``R9S_LOG``.
            ValueError: A bad ``base_url`` or setting, or ``trust_env=True`` with ``session``.
            TypeError: A setting of the wrong type.
        """
        url = resolve_base_url(base_url)
        seconds = resolve_timeout(timeout)
        retries = resolve_max_retries(max_retries)
        configure_logging_from_env()
        check_int("max_concurrency", max_concurrency, minimum=1)
        check_int("max_response_size", max_response_size, minimum=1)
        check_int("split_floor", split_floor, minimum=1)
        if max_rate is not None:
            check_positive("max_rate", max_rate)
        check_session(session, trust_env)
        if on_retry is not None and not callable(on_retry):
            raise TypeError("on_retry must be callable")
        return cls(
            url,
            seconds,
            retries,
            max_concurrency,
            max_rate,
            trust_env,
            on_retry,
            max_response_size,
            split_floor,
        )

    def with_options(self, timeout: float | None, max_retries: int | None) -> ClientSettings:
        """These settings with another ``timeout`` or ``max_retries`` (``None`` keeps it).

        Raises:
            TypeError, ValueError: ``timeout`` is not a positive number, or ``max_retries``
                not an int >= 0.
        """
        if timeout is not None:
            check_positive("timeout", timeout)
        if max_retries is not None:
            check_int("max_retries", max_retries, minimum=0)
        return attrs.evolve(
            self,
            timeout=self.timeout if timeout is None else float(timeout),
            max_retries=self.max_retries if max_retries is None else max_retries,
        )
