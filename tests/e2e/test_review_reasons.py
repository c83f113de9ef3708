"""Reason codes in review mode: Shift+digit picks a code of the reason list (the default
REVIEW_REASONS: dust, oxidation, registration, marking) and the stored reason lands on the
region the screen highlights, through the agent, the reference model service and
PostgreSQL; the key map and the panel list the keys; undo restores the reason before; the
Dashboard's false-call Pareto by reason counts it; axe-core finds nothing blocking."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import shoot
from tests.e2e.test_accessibility import axe_source, violations
from tests.e2e.test_review_selection import BLOCKING, highlighted, open_review, regions
from tests.support import AgentServer
from tests.web.conftest import upload

__all__ = ["axe_source"]

pytestmark = [pytest.mark.e2e, pytest.mark.deeppcb]

BOARD = 25  # ten defects of several classes


@pytest.fixture(scope="module")
def board(agent: AgentServer, deeppcb: list[Path]) -> str:
    return upload(agent, deeppcb[BOARD])["img_unique_id"]


def reviews(agent: AgentServer, img_id: str) -> dict[str, tuple[Any, Any]]:
    """(verdict, reason) per region key, as the API answers them now."""
    return {
        k: ((r["review"] or {}).get("verdict"), (r["review"] or {}).get("reason"))
        for k, r in regions(agent, img_id).items()
    }


def changed(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    return [k for k in after if after[k] != before[k]]


def test_a_reason_key_stores_the_reason_on_the_highlighted_region(
    page: Page, agent: AgentServer, board: str, axe_source: str, screenshot_dir: Path
) -> None:
    page.emulate_media(reduced_motion="reduce")
    open_review(page, agent, board)
    panel = page.locator(".review-reasons")
    expect(panel.locator("button[data-reason]")).to_have_count(4)
    expect(panel.locator("button[data-reason='dust']")).to_contain_text("⇧1")

    # Shift+1 on a defect without a verdict arms "dust" for the next verdict; F stores both.
    first = highlighted(page)
    before = reviews(agent, board)
    page.keyboard.press("Shift+Digit1")
    expect(page.locator(".review-reason-now")).to_have_attribute("data-armed", "dust")
    assert reviews(agent, board) == before  # nothing stored yet
    uid = regions(agent, board)[first]["region_unique_id"]
    page.keyboard.press("f")
    expect(page.locator(f".review-chip[data-region-unique-id='{uid}']")).to_have_attribute(
        "data-verdict", "false_call"
    )
    after = reviews(agent, board)
    assert changed(before, after) == [first]
    assert after[first] == ("false_call", "dust")
    expect(page.locator(".review-reason-now")).to_have_attribute("data-armed", "")

    # R on the next defect (no reason armed: none stored), then back to it with K: Shift+2
    # stores "oxidation" on that real verdict at once, on it and no other region.
    second = highlighted(page)
    assert second != first
    page.keyboard.press("r")
    expect(page.locator(".review-status")).to_contain_text("Real")
    assert reviews(agent, board)[second] == ("real", None)
    page.keyboard.press("k")
    assert highlighted(page) == second
    before = reviews(agent, board)
    page.keyboard.press("Shift+Digit2")
    expect(page.locator(".review-reason-now")).to_have_attribute("data-current-reason", "oxidation")
    after = reviews(agent, board)
    assert changed(before, after) == [second]
    assert after[second] == ("real", "oxidation")
    expect(panel.locator("button[data-reason='oxidation']")).to_have_attribute(
        "aria-pressed", "true"
    )
    shoot(page, screenshot_dir, "review-reasons")
    found = violations(page, axe_source, BLOCKING)

    # Undo gives the verdict back its reason before (none).
    page.keyboard.press("z")
    expect(page.locator(".review-reason-now")).to_have_attribute("data-current-reason", "")
    assert reviews(agent, board)[second] == ("real", None)
    assert reviews(agent, board)[first] == ("false_call", "dust")

    # The key map lists the reason keys.
    page.keyboard.press("?")
    keymap = page.locator(".review-keymap")
    expect(keymap).to_be_visible()
    expect(keymap.locator(".review-reason-key").first).to_contain_text("Shift+1")
    expect(keymap.locator(".review-reason-key").first).to_contain_text("dust")
    found += violations(page, axe_source, BLOCKING)
    page.keyboard.press("Escape")

    # The Dashboard's Pareto by reason counts the false call.
    page.goto(f"{agent.url}/dashboard")
    expect(page.locator("body[data-false-call-reasons='ready']")).to_have_count(1)
    row = page.locator("#false-call-reasons-table tr[data-reason='dust']")
    expect(row.locator("[data-false-calls]")).to_have_text("1")
    found += violations(page, axe_source, BLOCKING)
    assert found == []
