"""Regenerate report-1280.png and report-390.png: the report ``r9s-usage demo`` writes (90 fake
days priced with the example price table), photographed by the tests' headless Chromium (run
from the repository root: ``.venv/bin/python docs/_static/make_screenshots.py``)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent / "tests"))

from _browser import Chromium  # noqa: E402

VIEWPORTS = ((1280, 900, False), (390, 844, True))


async def main() -> None:
    chromium = Chromium()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            report = Path(tmp) / "report.html"
            demo = [sys.executable, "-m", "r9s_async", "demo", "--html", str(report)]
            await asyncio.to_thread(
                subprocess.run, demo, check=True, stdin=subprocess.DEVNULL, capture_output=True
            )
            async with chromium.page() as page:
                for width, height, mobile in VIEWPORTS:
                    await page.open(report.as_uri(), width=width, height=height, mobile=mobile)
                    target = HERE / f"report-{width}.png"
                    target.write_bytes(await page.screenshot())
                    print(f"{target} ({target.stat().st_size:,} bytes)")
    finally:
        chromium.stop()


if __name__ == "__main__":
    asyncio.run(main())
