"""The API double in its own process, so its CPU and memory never count against the client.

Run by the benchmarks as ``python -m benchmarks._server [options]``: prints its base URL on
one line, then serves until its standard input closes. Besides the fake's own routes it answers
``GET /_bench/stats`` (requests and distinct TCP connections seen, read from the fake) and
``POST /_bench/reset`` (forget them), outside the API's base path.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable

from aiohttp import web

from r9s_async.testing import FakeR9sAPI, RateLimit

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._server")
    parser.add_argument("--mode", choices=("daily", "events"), default="daily")
    parser.add_argument("--events-per-day", type=int, default=24)
    parser.add_argument("--models", type=int, default=0, help="synthetic model names (0: default)")
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--latency-per-day", type=float, default=0.0)
    parser.add_argument("--end-exclusive", action="store_true")
    parser.add_argument(
        "--cache-bodies",
        action="store_true",
        help="answer a repeated /usage query with the bytes served the first time, so the "
        "server's JSON encoding does not compete with the client on a 2-core machine "
        "(only without latency: a cached answer skips the fake's handler)",
    )
    parser.add_argument("--rate", type=float, default=0.0, help="RateLimit rate (0: none)")
    parser.add_argument("--burst", type=int, default=1)
    parser.add_argument("--rate-headers", action="store_true", help="announce the limit")
    parser.add_argument("--cpu", type=int, default=-1, help="pin to this CPU (-1: do not pin)")
    return parser.parse_args()


def _body_cache() -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    bodies: dict[str, bytes] = {}

    @web.middleware
    async def cache(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.endswith("/usage"):
            return await handler(request)
        body = bodies.get(request.path_qs)
        if body is not None:
            return web.Response(body=body, content_type="application/json")
        response = await handler(request)
        if isinstance(response, web.Response) and response.status == 200:
            assert isinstance(response.body, bytes)
            bodies[request.path_qs] = response.body
        return response

    return cache


async def _serve(api: FakeR9sAPI, cache_bodies: bool) -> None:
    app = api.make_app()
    if cache_bodies:
        app.middlewares.append(_body_cache())

    async def stats(_: web.Request) -> web.Response:
        limited = sum(1 for r in api.requests if r.fault == "rate_limit")
        return web.json_response(
            {"requests": len(api.requests), "connections": api.connections, "limited": limited}
        )

    async def reset(_: web.Request) -> web.Response:
        api.requests.clear()
        return web.json_response({})

    app.router.add_get("/_bench/stats", stats)
    app.router.add_post("/_bench/reset", reset)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    port = runner.addresses[0][1]
    print(f"http://127.0.0.1:{port}{api.base_path}", flush=True)
    try:
        # Serve until the benchmark closes our stdin (or dies, which closes it too).
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.buffer.read)
    finally:
        await runner.cleanup()


def main() -> None:
    args = _parse_args()
    if args.cpu >= 0 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    models: dict[str, tuple[str, ...]] = {}
    if args.models:
        models["models"] = tuple(f"model-{i:04d}" for i in range(args.models))
    api = FakeR9sAPI(
        mode=args.mode,
        events_per_day=args.events_per_day,
        latency=args.latency,
        latency_per_day=args.latency_per_day,
        end_inclusive=not args.end_exclusive,
        rate_limit=RateLimit(args.rate, args.burst, args.rate_headers) if args.rate else None,
        **models,
    )
    asyncio.run(_serve(api, args.cache_bodies))


if __name__ == "__main__":
    main()
