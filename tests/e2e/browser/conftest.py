"""Browser tests: Playwright for Python driving Debian's Chromium against the real app.

The app (the suite's ``app``, on each backend) is served by a real Uvicorn server on a free
port in the test's event loop; Chromium runs headless from ``/usr/bin/chromium`` (``.ci/run``
installs the ``chromium`` package; nothing is downloaded). Without it, or without the
``playwright`` package, these tests are skipped with the reason.

Each step's screenshot goes to ``test-results/browser/<test>/`` under the repository (set
``HILOS_TEST_RESULTS`` to put ``browser/`` elsewhere); the run's summary lists the folders.
Run only these tests with ``make browser``.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.serving import serving

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[3]
RESULTS = Path(os.environ.get("HILOS_TEST_RESULTS") or REPO / "test-results") / "browser"
# Generous for a busy 2-core machine: a step that is right happens in milliseconds.
STEP_TIMEOUT_MS = 15_000

_shot_folders: list[Path] = []


def _skip_reason() -> str | None:
    if not CHROMIUM.exists():
        return f"browser tests skipped: no Chromium at {CHROMIUM} (apt-get install chromium)"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "browser tests skipped: no playwright package (pip install -e '.[dev]')"
    return None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    reason = _skip_reason()
    if reason is None:
        return
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.skip(reason=reason))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _shot_folders:
        terminalreporter.write_sep("-", "browser screenshots")
        for folder in _shot_folders:
            terminalreporter.write_line(str(folder))


@pytest.fixture(scope="session")
async def chromium() -> AsyncIterator[Browser]:
    from playwright.async_api import async_playwright, expect

    expect.set_options(timeout=STEP_TIMEOUT_MS)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def live(app: Any) -> AsyncIterator[str]:
    """The app behind a real server; yields its base URL."""
    async with serving(app) as base:
        yield base


@pytest.fixture
async def page(chromium: Browser, live: str) -> AsyncIterator[Page]:
    """A fresh browser window (its own cookies), in Spanish, on a laptop-sized screen."""
    context = await chromium.new_context(
        base_url=live, locale="es-ES", viewport={"width": 1280, "height": 860}
    )
    context.set_default_timeout(STEP_TIMEOUT_MS)
    window = await context.new_page()
    try:
        yield window
    finally:
        # Close the page's event stream before the server stops.
        await context.close()


class Screenshots:
    """Numbered screenshots of one test's steps, in its own folder."""

    def __init__(self, folder: Path, page: Page) -> None:
        self.folder = folder
        self.page = page
        self.taken: list[Path] = []

    async def take(self, step: str, page: Page | None = None) -> Path:
        """Save ``page`` (the test's page unless told) as the next step's screenshot."""
        path = self.folder / f"{len(self.taken) + 1:02d}-{step}.png"
        await (page or self.page).screenshot(path=str(path), full_page=True)
        self.taken.append(path)
        return path


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[_failed] = report.failed
    return report


_failed = pytest.StashKey[bool]()


@pytest.fixture
async def shots(request: pytest.FixtureRequest, page: Page) -> AsyncIterator[Screenshots]:
    """The test's screenshots; a failing test also leaves the page as it was at the end."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name).strip("-")
    folder = RESULTS / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    _shot_folders.append(folder)
    screenshots = Screenshots(folder, page)
    yield screenshots
    if request.node.stash.get(_failed, False):
        await screenshots.take("failed")
