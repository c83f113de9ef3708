"""Fixtures of the browser tests: Debian's Chromium driven by Playwright, headless, with a
fresh profile; every request the pages make is recorded so a test can prove that nothing
left the machine, and every Content-Security-Policy violation so a test can prove the UI
works under the policy. The agent requires API keys (AUTH_MODE=required) and every page
signs in through the sign-in page first. Skips when /usr/bin/chromium or the playwright
package is missing."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from app.services.model_service.reference import ReferenceService
from tests.conftest import agent_settings
from tests.support import REPO_ROOT, AgentServer, create_api_key, serve_agent
from tests.web.conftest import inspected, upload

__all__ = ["inspected", "upload"]

CHROMIUM = Path(os.environ.get("AOI_CHROMIUM", "/usr/bin/chromium"))
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOCAL_HOSTS = {"127.0.0.1"}
LAPTOP = {"width": 1366, "height": 768}
TABLET = {"width": 820, "height": 1180}

pytest.importorskip(
    "playwright.sync_api", reason="the playwright package is not installed (pip install playwright)"
)
if not CHROMIUM.is_file():
    pytest.skip(
        f"{CHROMIUM} not found: install Chromium from Debian (apt-get install chromium)",
        allow_module_level=True,
    )

from playwright.sync_api import (  # noqa: E402
    BrowserContext,
    Page,
    Playwright,
    expect,
    sync_playwright,
)

# Playwright's assertions wait 5 s by default. On a loaded 2-core CI machine the first
# inspection of a module (the reference service warming its engine) or a page's first
# paint can take longer, which made assertions fail that a user would see pass a moment
# later. A failing assertion now takes 20 s to report instead of 5 s.
expect.set_options(timeout=20_000)


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    """Where screenshots go: $AOI_SCREENSHOT_DIR, else test-artifacts/screenshots (git-ignored)."""
    folder = Path(os.environ.get("AOI_SCREENSHOT_DIR", REPO_ROOT / "test-artifacts/screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    """The Playwright driver (no browser download: the system Chromium is launched).

    Module-scoped: the sync API keeps an event loop running in the main thread while it
    is open, which would stop the asyncio tests of later modules from starting theirs.
    """
    with sync_playwright() as driver:
        yield driver


class RecordedContext:
    """A browser context with its requests and page errors recorded."""

    def __init__(self, context: BrowserContext) -> None:
        self.context = context
        self.requests: list[str] = []
        self.page_errors: list[str] = []
        self.csp_violations: list[str] = []
        context.on("request", lambda request: self.requests.append(request.url))

    def new_page(self) -> Page:
        """A page whose uncaught JS errors and CSP violations are recorded."""
        page = self.context.new_page()
        page.on("pageerror", lambda error: self.page_errors.append(str(error)))
        page.on(
            "console",
            lambda message: (
                "Content Security Policy" in message.text
                and self.csp_violations.append(message.text)
            ),
        )
        return page

    def external_requests(self) -> list[str]:
        """Requests to anything but the loopback agent (data: and blob: URLs are local)."""
        return [
            url
            for url in self.requests
            if urlsplit(url).scheme not in ("data", "blob")
            and urlsplit(url).hostname not in LOCAL_HOSTS
        ]


@pytest.fixture
def browser(
    playwright: Playwright, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RecordedContext]:
    """Headless Chromium on a fresh profile at a laptop's screen size. After the test,
    asserts that no request left 127.0.0.1 and no page threw an uncaught error."""
    context = playwright.chromium.launch_persistent_context(
        tmp_path_factory.mktemp("chromium-profile"),
        executable_path=str(CHROMIUM),
        headless=True,
        args=LAUNCH_ARGS,
        viewport=LAPTOP,
        accept_downloads=True,
    )
    context.set_default_timeout(30_000)
    recorded = RecordedContext(context)
    try:
        yield recorded
    finally:
        context.close()
    assert recorded.requests, "the browser made no request at all"
    assert recorded.external_requests() == []
    assert recorded.page_errors == []
    assert recorded.csp_violations == []


@pytest.fixture(scope="module")
def agent(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    database_url: str,
    reference_service: ReferenceService,
) -> Iterator[AgentServer]:
    """The agent with API keys required; `agent.api_key` is an admin key. A test module
    that sets `AGENT_AUTH_MODE = "off"` gets it with keys off (and no key)."""
    auth_mode = getattr(request.module, "AGENT_AUTH_MODE", "required")
    settings = agent_settings(
        tmp_path_factory.mktemp("data"), database_url, reference_service.url, auth_mode=auth_mode
    )
    with serve_agent(settings) as server:
        if auth_mode == "required":
            server.api_key = create_api_key(database_url, "e2e-admin", "admin")
        yield server


def sign_in(page: Page, agent: AgentServer) -> None:
    """Sign in through the sign-in page with the agent's admin key."""
    page.goto(agent.url + "/")
    assert "/signin" in page.url, "the UI did not ask to sign in"
    page.fill("#api-key", agent.api_key or "")
    page.click("#signin-form button[type=submit]")
    page.wait_for_url(agent.url + "/")


@pytest.fixture
def page(browser: RecordedContext, agent: AgentServer) -> Page:
    """A fresh page of the recorded browser, signed in."""
    page = browser.new_page()
    sign_in(page, agent)
    return page


def shoot(page: Page, folder: Path, name: str, **options: Any) -> Path:
    """Save a full-page screenshot `name`.png into `folder`."""
    path = folder / f"{name}.png"
    page.screenshot(path=path, full_page=True, **options)
    return path


def viewer_ready(page: Page) -> None:
    """Wait until the result viewer is drawn and its image has loaded (the loading note
    exists only once the viewer is drawn, so it is looked for first)."""
    from playwright.sync_api import expect

    expect(page.locator(".result-view .stage-loading")).to_have_count(1)
    expect(page.locator(".result-view .stage-loading")).to_be_hidden()
