"""Serving the fake API: in the running loop, or from a thread of its own for synchronous code."""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING

from aiohttp import web

__all__ = ["Serving"]


class Serving:
    """``serve``, ``serve_in_thread`` and the open connections; mixed into ``FakeR9sAPI``."""

    # Set by FakeR9sAPI.__init__.
    base_path: str
    _servers: list[web.Server]

    if TYPE_CHECKING:  # provided by FakeR9sAPI

        def make_app(self) -> web.Application: ...

    @property
    def open_connections(self) -> int:
        """How many TCP connections are open on the server side right now, idle ones
        included."""
        return sum(len(server.connections) for server in self._servers)

    @asynccontextmanager
    async def serve(
        self, host: str = "127.0.0.1", port: int = 0, *, ssl_context: ssl.SSLContext | None = None
    ) -> AsyncIterator[str]:
        """Serve in the running loop: ``async with api.serve() as base_url:``.

        Args:
            host: Address to listen on.
            port: TCP port; 0 picks a free one.
            ssl_context: Serve HTTPS with this server context (for example one made with
                ``trustme``), else plain HTTP.

        Yields the base URL to give the client.
        """
        runner = web.AppRunner(
            self.make_app(), handler_cancellation=True, access_log=None, shutdown_timeout=0.5
        )
        await runner.setup()
        site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
        await site.start()
        assert runner.server is not None
        server = runner.server
        self._servers.append(server)
        try:
            sockets = runner.addresses
            bound_port = sockets[0][1]
            scheme = "http" if ssl_context is None else "https"
            yield f"{scheme}://{host}:{bound_port}{self.base_path}"
        finally:
            self._servers.remove(server)
            await runner.cleanup()

    @contextmanager
    def serve_in_thread(
        self, host: str = "127.0.0.1", port: int = 0, *, ssl_context: ssl.SSLContext | None = None
    ) -> Iterator[str]:
        """Serve from a background thread with its own loop: ``with api.serve_in_thread() as
        base_url:``, for synchronous code. Takes the arguments of :meth:`serve` and yields the
        base URL to give the client."""
        ready = threading.Event()
        url: list[str] = []
        stop: list[Callable[[], None]] = []
        errors: list[BaseException] = []

        async def main() -> None:
            done = asyncio.Event()
            loop = asyncio.get_running_loop()

            def request_stop() -> None:
                loop.call_soon_threadsafe(done.set)

            stop.append(request_stop)
            async with self.serve(host, port, ssl_context=ssl_context) as base_url:
                url.append(base_url)
                ready.set()
                await done.wait()

        def run() -> None:
            try:
                asyncio.run(main())
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)
                ready.set()

        thread = threading.Thread(target=run, name="r9s_async fake API", daemon=True)
        thread.start()
        ready.wait()
        if errors:
            raise errors[0]
        try:
            yield url[0]
        finally:
            stop[0]()
            thread.join()
