"""Headless Chromium for the web UI's tests: Debian's /usr/bin/chromium driven by Playwright's async API
(never `playwright install`: nothing is downloaded; scripts/test.sh installs the chromium package).

    async with running_browser() as browser:
        context = await browser.new_context(viewport=PHONE)     # fresh storage per context
        page = await context.new_page()
        problems = watch_console(page)                           # JS errors, CSP violations
        shots = Screenshots("test_name"); await shots.take(page, "results")
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from playwright.async_api import Browser, ConsoleMessage, Error, Page, ViewportSize, async_playwright

CHROMIUM = Path("/usr/bin/chromium")
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
DESKTOP: ViewportSize = {"width": 1280, "height": 860}
PHONE: ViewportSize = {"width": 375, "height": 740}  # an iPhone SE-sized screen
ROOT = Path(__file__).resolve().parents[2]


def artifacts_dir() -> Path:
    """Where screenshots go: ARCHIVIST_TEST_ARTIFACTS, else `.artifacts/` at the repository root."""
    return Path(os.environ.get("ARCHIVIST_TEST_ARTIFACTS") or ROOT / ".artifacts")


@asynccontextmanager
async def running_browser() -> AsyncIterator[Browser]:
    if not await asyncio.to_thread(CHROMIUM.exists):
        raise RuntimeError(f"{CHROMIUM} is missing: scripts/test.sh installs it (apt-get install chromium)")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=60_000
        )
        try:
            yield browser
        finally:
            await browser.close()


def watch_console(page: Page) -> list[str]:
    """The page's console errors (a Content-Security-Policy violation is one) and uncaught exceptions,
    collected as they happen; the test asserts on the list."""
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            problems.append(f"console: {message.text}")

    def on_error(error: Error) -> None:
        problems.append(f"uncaught: {error.message}")

    page.on("console", on_console)
    page.on("pageerror", on_error)
    return problems


class Screenshots:
    """One PNG per step, numbered in order: <artifacts>/<name>/01-<step>.png."""

    def __init__(self, name: str) -> None:
        self.dir = artifacts_dir() / re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
        self.dir.mkdir(parents=True, exist_ok=True)
        for old in self.dir.glob("*.png"):  # a re-run replaces its own screenshots
            old.unlink()
        self.count = 0

    async def take(self, page: Page, step: str, full_page: bool = True) -> Path:
        self.count += 1
        path = self.dir / f"{self.count:02d}-{step}.png"
        await page.screenshot(path=path, full_page=full_page, animations="disabled", caret="hide")
        return path
