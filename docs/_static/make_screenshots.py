"""Regenerate report-1280.png and report-390.png: the tests' sample report, rendered by
r9s_async and photographed by the tests' headless Chromium (run from the repository root:
``.venv/bin/python docs/_static/make_screenshots.py``)."""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent / "tests"))

from _browser import Chromium  # noqa: E402
from _report_sample import sample_report  # noqa: E402

from r9s_async._html_report import render_html  # noqa: E402

VIEWPORTS = ((1280, 900, False), (390, 844, True))


async def main() -> None:
    chromium = Chromium()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            report = Path(tmp) / "report.html"
            report.write_text(render_html(sample_report()), encoding="utf-8")
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
