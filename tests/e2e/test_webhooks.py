"""The Webhooks page in Chromium (/admin/webhooks): the endpoints, one endpoint's
deliveries with every attempt, the Redeliver button sending the event again with the same
`webhook-id` to a real receiver on loopback; axe-core finds nothing critical, serious or
moderate on it."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest
from playwright.sync_api import Page, expect
from standardwebhooks import Webhook

from tests.e2e.conftest import shoot
from tests.e2e.test_accessibility import axe_source, violations
from tests.services.webhooks.receiver import Receiver
from tests.support import AgentServer, sample_images, wait_until

__all__ = ["axe_source"]

pytestmark = [pytest.mark.e2e]


def test_the_webhooks_page_lists_deliveries_and_redelivers(
    page: Page, agent: AgentServer, axe_source: str, screenshot_dir: Any
) -> None:
    receiver = Receiver().up()
    headers = {"X-API-Key": agent.api_key or ""}
    with httpx2.Client(base_url=agent.url, headers=headers, timeout=120) as c:
        created = c.post(
            "/api/webhooks",
            json={"url": receiver.url, "events": ["inspection.completed"], "description": "MES"},
        )
        assert created.status_code == 201, created.text
        endpoint = created.json()
        board = sample_images()[5]
        upload = c.post("/api/upload", files={"image": (board.name, board.read_bytes())})
        assert upload.status_code == 200, upload.text
    wait_until(lambda: len(receiver.taken()) == 1, timeout_s=30)

    page.emulate_media(reduced_motion="reduce")
    page.goto(agent.url + "/admin/webhooks")
    row = page.locator(f'tr.endpoint-row[data-endpoint-id="{endpoint["id"]}"]')
    expect(row).to_contain_text(receiver.url)
    expect(row).to_contain_text("inspection.completed")
    assert violations(page, axe_source) == []

    row.locator("button.show-deliveries").click()
    delivery = page.locator("tr.delivery-row").first
    expect(delivery).to_have_attribute("data-status", "delivered")
    delivery.locator("details summary").click()
    expect(delivery).to_contain_text("HTTP 204")
    assert violations(page, axe_source) == []
    shoot(page, screenshot_dir, "webhooks")

    delivery.locator("button.redeliver").click()
    expect(page.locator("#page-alerts")).to_contain_text("queued again")
    wait_until(lambda: len(receiver.taken()) == 2, timeout_s=30)
    receiver.down()
    first, again = receiver.taken()
    assert first.headers["webhook-id"] == again.headers["webhook-id"]
    assert Webhook(endpoint["secret"]).verify(again.body, again.headers)["type"] == (
        "inspection.completed"
    )
