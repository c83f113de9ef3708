"""End-to-end: the Board page, reached from the viewer's serial link and from History's
serial search, shows every inspection of the board with its first-pass outcome."""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import viewer_ready
from tests.support import AgentServer

pytestmark = [pytest.mark.e2e, pytest.mark.deeppcb]


def test_board_page_from_the_viewer_and_from_history(
    page: Page, agent: AgentServer, deeppcb: list[Path]
) -> None:
    serial = "SN-E2E-77"
    ids = []
    with httpx2.Client(base_url=agent.url, timeout=60) as c:
        for image in deeppcb[40:42]:
            response = c.post(
                "/api/upload",
                files={"image": (image.name, image.read_bytes())},
                data={"board_serial": serial, "product": "CTRL-E2E", "side": "bottom"},
                headers={"X-API-Key": agent.api_key or ""},
            )
            assert response.status_code == 200, response.text
            ids.append(response.json()["img_unique_id"])

    page.goto(f"{agent.url}/results/{ids[0]}")
    viewer_ready(page)
    expect(page.locator(".board-context")).to_contain_text("product CTRL-E2E")
    page.locator(".board-link").click()
    expect(page).to_have_url(f"{agent.url}/board/{serial}")
    rows = page.locator(".board-inspection")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("first pass")
    expect(rows.nth(1)).to_contain_text("re-inspection 1")
    expect(rows.nth(0).locator(".outcome")).to_have_attribute("data-outcome", "fail")

    page.goto(f"{agent.url}/history")
    page.fill("#f-serial", serial)
    page.locator("#board-search button[type=submit]").click()
    expect(page).to_have_url(f"{agent.url}/board/{serial}")
    expect(page.locator(".board-inspection")).to_have_count(2)
    page.locator(".board-inspection a").first.click()
    expect(page).to_have_url(f"{agent.url}/results/{ids[0]}")
