"""Debian's headless Chromium driven by Playwright, for the dashboard test and screenshot.

Playwright's own browser download (`playwright install`) is never used: the system's
`chromium` (apt package; `.ci/run` installs it when missing) is launched through
`executable_path`, with everything that would reach the internet switched off.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

from playwright.async_api import Browser, Page, Request, async_playwright

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    """The system Chromium; a clear failure when it is not installed."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        raise RuntimeError("no chromium on PATH; install it: apt-get install chromium")
    return path


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            await browser.close()


class RequestLog:
    """Every URL a page asked for, to show that none left the machine."""

    def __init__(self, page: Page) -> None:
        self.urls: list[str] = []
        page.on("request", self._record)

    def _record(self, request: Request) -> None:
        self.urls.append(request.url)

    def hosts(self) -> set[str]:
        """The hosts asked, `data:` URLs (inline) left out."""
        return {urlsplit(url).hostname or "" for url in self.urls if not url.startswith("data:")}
