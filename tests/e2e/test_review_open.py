"""Review with API keys off (AUTH_MODE=off): the viewer asks the reviewer's name once,
keeps it in the browser and sends it with every verdict (X-Reviewer)."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import RecordedContext
from tests.support import AgentServer, db_rows
from tests.web.conftest import upload

pytestmark = [pytest.mark.e2e, pytest.mark.deeppcb]
# The shared `agent` fixture (tests/e2e/conftest.py) then runs with API keys off.
AGENT_AUTH_MODE = "off"


def test_the_reviewer_is_asked_once_and_named_on_each_verdict(
    browser: RecordedContext, agent: AgentServer, deeppcb: list[Path], database_url: str
) -> None:
    first, second = upload(agent, deeppcb[0]), upload(agent, deeppcb[1])
    page = browser.new_page()
    page.goto(f"{agent.url}/results/{first['img_unique_id']}?review=1")
    name = page.locator("#review-name-input")
    expect(name).to_be_focused()
    page.keyboard.type("王小明 QC")
    page.keyboard.press("Enter")
    expect(page.locator(".reviewer-name")).to_have_text("王小明 QC")
    page.keyboard.press("f")
    expect(page.locator(".review-chip[data-index='0']")).to_have_attribute(
        "data-verdict", "false_call"
    )
    # The next page (another board) knows the name already: no question asked.
    page.goto(f"{agent.url}/results/{second['img_unique_id']}?review=1")
    expect(page.locator(".review-panel .review-current")).to_contain_text("Defect 1 of")
    expect(page.locator(".review-name-form")).to_be_hidden()
    page.keyboard.press("c")
    page.keyboard.type("bridged pads, see photo")
    page.keyboard.press("Enter")
    page.keyboard.press("r")
    expect(page.locator(".review-chip[data-index='0']")).to_have_attribute("data-verdict", "real")
    # Shown at once, stored in the background: wait for the save.
    expect(page.locator("body")).to_have_attribute("data-review-unsaved", "0")
    rows = db_rows(
        database_url, "SELECT reviewer, verdict, comment FROM region_verdicts ORDER BY 2"
    )
    assert rows == [
        ("王小明 QC", "false_call", None),
        ("王小明 QC", "real", "bridged pads, see photo"),
    ]
