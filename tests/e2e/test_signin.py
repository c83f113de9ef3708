"""End-to-end: signing in and out of the web UI with an API key, and Swagger UI under the
Content-Security-Policy (the `browser` fixture fails a test on any CSP violation)."""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import RecordedContext, shoot
from tests.support import AgentServer

pytestmark = [pytest.mark.e2e]


def test_sign_in_refuses_a_wrong_key_then_signs_in_and_out(
    browser: RecordedContext, agent: AgentServer, screenshot_dir: Path
) -> None:
    page = browser.new_page()
    page.goto(agent.url + "/history?class_name=open")
    expect(page).to_have_url(agent.url + "/signin?next=/history%3Fclass_name%3Dopen")
    shoot(page, screenshot_dir, "10-signin")

    page.fill("#api-key", "aoi_00000000_" + "x" * 43)
    page.click("#signin-form button[type=submit]")
    expect(page.locator("#signin-error")).to_contain_text("not valid")

    page.fill("#api-key", agent.api_key or "")
    page.click("#signin-form button[type=submit]")
    expect(page).to_have_url(agent.url + "/history?class_name=open")
    expect(page.locator("#signed-in-as")).to_have_text("key: e2e-admin")
    cookie = next(c for c in browser.context.cookies() if c["name"] == "aoi_session")
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert agent.api_key not in cookie["value"]
    shoot(page, screenshot_dir, "11-signed-in-history")

    page.click("#signout-form button[type=submit]")
    expect(page).to_have_url(agent.url + "/signin")
    page.goto(agent.url + "/dashboard")
    expect(page).to_have_url(agent.url + "/signin?next=/dashboard")
    # A copy of the cookie taken before signing out opens nothing any more.
    copied = httpx2.get(agent.url + "/api/images", cookies={"aoi_session": cookie["value"]})
    assert copied.status_code == 401


def test_swagger_ui_renders_under_the_policy(
    browser: RecordedContext, agent: AgentServer, screenshot_dir: Path
) -> None:
    page = browser.new_page()
    page.goto(agent.url + "/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("AOI Inference Agent")
    expect(page.locator(".swagger-ui .auth-wrapper .authorize")).to_be_visible()
    shoot(page, screenshot_dir, "12-swagger-docs")
