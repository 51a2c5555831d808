"""A real browser for the tests: Debian's headless Chromium driven over the DevTools protocol.

``Chromium`` starts ``/usr/bin/chromium`` (package ``chromium``, installed by ``.ci/run``) in its
own process group with a throw-away profile and every background network feature it lets us
turn off; host names resolve to nothing, so a page that tried to load anything from the network
would fail to. ``Chromium.page()`` connects aiohttp's websocket client to the page target and
gives a ``Page`` that sets the viewport, navigates, evaluates JavaScript and takes screenshots.
``decode_png`` reads a screenshot back into pixels with the standard library only.

A missing Chromium raises ``AssertionError``: the browser tests are part of CI, never skipped.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import struct
import subprocess
import tempfile
import time
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import aiohttp
from attrs import frozen

CHROMIUM = Path("/usr/bin/chromium")
STARTUP_TIMEOUT = 30.0
CALL_TIMEOUT = 30.0

# Headless, no sandbox (we run as root in CI), and nothing that phones home: no component or
# safe-browsing updates, no metrics, no sync, no field trials; every host name fails to resolve.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--remote-debugging-port=0",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-sync",
    "--disable-breakpad",
    "--disable-crash-reporter",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--disable-field-trial-config",
    "--disable-features=Translate,MediaRouter,OptimizationHints,AutofillServerCommunication",
    "--metrics-recording-only",
    "--no-pings",
    "--no-proxy-server",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--password-store=basic",
    "--use-mock-keychain",
    "--hide-scrollbars",
    "--mute-audio",
    "--font-render-hinting=none",
)


class DevToolsError(AssertionError):
    """The browser answered a DevTools call with an error, or not in time."""


class Chromium:
    """One headless Chromium process; ``stop()`` kills its process group and removes its
    profile directory.

    Raises:
        AssertionError: ``/usr/bin/chromium`` is missing, or did not start in time.
    """

    def __init__(self) -> None:
        assert CHROMIUM.exists(), f"{CHROMIUM} is missing: install the chromium package (.ci/run)"
        self._profile = tempfile.TemporaryDirectory(prefix="r9s-chromium-")
        profile = Path(self._profile.name)
        self._log = (profile.parent / f"{profile.name}.log").open("wb")
        self._process = subprocess.Popen(
            [str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() reaches every helper
        )
        try:
            self.port = self._wait_for_port(profile / "DevToolsActivePort")
        except BaseException:
            self.stop()
            raise

    def _wait_for_port(self, active_port: Path) -> int:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise AssertionError(f"chromium exited with {self._process.returncode}")
            try:
                first_line = active_port.read_text().split("\n", 1)[0]
            except FileNotFoundError:
                first_line = ""
            if first_line.strip().isdigit():
                return int(first_line)
            time.sleep(0.02)
        raise AssertionError(f"chromium wrote no {active_port.name} in {STARTUP_TIMEOUT} s")

    @asynccontextmanager
    async def page(self) -> AsyncIterator[Page]:
        """A DevTools connection to the browser's page target."""
        async with aiohttp.ClientSession() as session:
            base = f"http://127.0.0.1:{self.port}"
            async with session.get(f"{base}/json/list") as response:
                targets: list[dict[str, Any]] = await response.json()
            url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
            async with session.ws_connect(url, max_msg_size=0) as ws:
                page = Page(ws)
                await page.call("Page.enable")
                await page.call("Network.enable")  # so page.requests() sees every request
                yield page

    def stop(self) -> None:
        """Kill the browser's process group, reap it, and remove its profile and log."""
        with suppress(ProcessLookupError):  # it may have died by itself
            os.killpg(self._process.pid, signal.SIGKILL)
        self._process.wait(timeout=10)
        self._log.close()
        Path(self._log.name).unlink()
        self._profile.cleanup()


class Page:
    """The DevTools protocol over one websocket, one call at a time.

    Events that arrive while waiting for an answer are kept, so ``wait_for`` sees an event
    that came before it was asked for.
    """

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._next_id = 0
        self._events: list[dict[str, Any]] = []
        self.log: list[dict[str, Any]] = []
        """Every event since the last ``open()``, in arrival order."""

    async def _receive(self) -> dict[str, Any]:
        message = await self._ws.receive(timeout=CALL_TIMEOUT)
        if message.type is not aiohttp.WSMsgType.TEXT:
            raise DevToolsError(f"the browser closed the connection: {message!r}")
        decoded: dict[str, Any] = json.loads(message.data)
        if "method" in decoded:
            self.log.append(decoded)
        return decoded

    def requests(self) -> list[str]:
        """The URL of every request the page made since the last ``open()``."""
        return [
            e["params"]["request"]["url"]
            for e in self.log
            if e["method"] == "Network.requestWillBeSent"
        ]

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send ``method`` and return its ``result``."""
        self._next_id += 1
        call_id = self._next_id
        await self._ws.send_str(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = await self._receive()
            if message.get("id") == call_id:
                if "error" in message:
                    raise DevToolsError(f"{method}: {message['error']}")
                result: dict[str, Any] = message["result"]
                return result
            if "method" in message:
                self._events.append(message)

    async def wait_for(self, event: str) -> dict[str, Any]:
        """Return the first unseen ``event``, waiting for it if needed."""
        while True:
            for index, message in enumerate(self._events):
                if message["method"] == event:
                    del self._events[: index + 1]
                    params: dict[str, Any] = message.get("params", {})
                    return params
            self._events.append(await self._receive())

    async def open(self, url: str, *, width: int, height: int, mobile: bool = False) -> None:
        """Set a ``width`` x ``height`` CSS-pixel viewport, load ``url`` and wait for ``load``."""
        await self.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=mobile,
        )
        self._events.clear()
        self.log.clear()
        answer = await self.call("Page.navigate", url=url)
        if "errorText" in answer:
            raise DevToolsError(f"navigating to {url}: {answer['errorText']}")
        await self.wait_for("Page.loadEventFired")

    async def evaluate(self, expression: str) -> Any:
        """The JSON value of a JavaScript ``expression`` evaluated in the page."""
        answer = await self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in answer:
            raise DevToolsError(f"{expression}: {answer['exceptionDetails']}")
        return answer["result"].get("value")

    async def screenshot(self, *, full_page: bool = True, scale: float = 1.0) -> bytes:
        """A PNG of the page (all of it when ``full_page``), at ``scale`` times CSS pixels."""
        width, height = await self.evaluate(
            "[document.documentElement.scrollWidth, document.documentElement.scrollHeight]"
            if full_page
            else "[innerWidth, innerHeight]"
        )
        clip = {"x": 0, "y": 0, "width": width, "height": height, "scale": scale}
        answer = await self.call(
            "Page.captureScreenshot", format="png", clip=clip, captureBeyondViewport=full_page
        )
        return base64.b64decode(answer["data"])


@frozen
class Image:
    """Decoded pixels: ``rows[y][x * channels + c]``; ``channels`` is 3 (RGB) or 4 (RGBA)."""

    width: int
    height: int
    channels: int
    rows: tuple[bytes, ...]

    def colours(self) -> set[tuple[int, ...]]:
        """Every distinct colour (alpha dropped)."""
        step = self.channels
        found: set[tuple[int, ...]] = set()
        for row in self.rows:
            for x in range(0, len(row), step):
                found.add(tuple(row[x : x + 3]))
        return found


def decode_png(data: bytes) -> Image:
    """Decode an 8-bit RGB or RGBA, non-interlaced PNG (what Chromium writes).

    Raises:
        ValueError: Not a PNG of that kind.
    """
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    offset = 8
    header = b""
    compressed = bytearray()
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        offset += 12 + length
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            compressed += body
        elif kind == b"IEND":
            break
    width, height, depth, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", header)
    channels = {2: 3, 6: 4}.get(colour_type)
    if depth != 8 or channels is None or interlace:
        raise ValueError(f"unsupported PNG: depth {depth}, colour type {colour_type}")
    raw = zlib.decompress(bytes(compressed))
    stride = width * channels
    rows: list[bytes] = []
    previous = bytes(stride)
    for y in range(height):
        start = y * (stride + 1)
        line = _unfilter(raw[start], raw[start + 1 : start + 1 + stride], previous, channels)
        rows.append(line)
        previous = line
    return Image(width, height, channels, tuple(rows))


def _unfilter(kind: int, line: bytes, previous: bytes, bpp: int) -> bytes:
    if kind == 0:
        return line
    out = bytearray(line)
    n = len(out)
    if kind == 1:
        for i in range(bpp, n):
            out[i] = (out[i] + out[i - bpp]) & 0xFF
    elif kind == 2:
        for i in range(n):
            out[i] = (out[i] + previous[i]) & 0xFF
    elif kind == 3:
        for i in range(n):
            left = out[i - bpp] if i >= bpp else 0
            out[i] = (out[i] + ((left + previous[i]) >> 1)) & 0xFF
    elif kind == 4:
        for i in range(n):
            a = out[i - bpp] if i >= bpp else 0
            b = previous[i]
            c = previous[i - bpp] if i >= bpp else 0
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            predictor = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            out[i] = (out[i] + predictor) & 0xFF
    else:
        raise ValueError(f"unknown PNG filter {kind}")
    return bytes(out)


async def _smoke() -> None:  # pragma: no cover - a manual check: python tests/_browser.py
    chromium = Chromium()
    try:
        async with chromium.page() as page:
            await page.open("data:text/html,<h1 style='color:red'>hi</h1>", width=400, height=300)
            started = time.monotonic()
            png = await page.screenshot()
            image = decode_png(png)
            print(len(png), image.width, image.height, len(image.colours()))
            print("decode", time.monotonic() - started)
    finally:
        chromium.stop()


if __name__ == "__main__":  # pragma: no cover
    asyncio.run(_smoke())
