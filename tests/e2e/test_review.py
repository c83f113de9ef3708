"""End-to-end review by keyboard only: three DeepPCB boards of ten defects or more (a
shipped sample and two turned copies of it) are inspected through the API (reference
model service), then a reviewer walks the queue in Chromium without touching the mouse —
verdicts, undo, dispositions, next board — and the dashboard's review figures move
accordingly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx2
import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import shoot
from tests.support import AgentServer, db_rows

pytestmark = [pytest.mark.e2e, pytest.mark.deeppcb]

# Sample 90100013 and two turned copies of it (tests.support.board_images), on which the
# reference service finds at least ten defects each (19).
TEN_DEFECT_BOARDS = (5, 11, 17)


@pytest.fixture(scope="module")
def batch(agent: AgentServer, deeppcb: list[Path]) -> dict[str, Any]:
    """The three boards inspected in one batch: its id and the boards' region counts."""
    files = [("images", (deeppcb[i].name, deeppcb[i].read_bytes())) for i in TEN_DEFECT_BOARDS]
    headers = {"X-API-Key": agent.api_key or ""}
    with httpx2.Client(base_url=agent.url, timeout=120, headers=headers) as c:
        answer = c.post("/api/upload/batch", params={"wait": "true"}, files=files)
        assert answer.status_code == 200, answer.text
        ids = [r["img_unique_id"] for r in answer.json()["results"]]
        counts = {i: c.get(f"/api/images/{i}/regions").json()["total_regions"] for i in ids}
    assert all(n >= 10 for n in counts.values()), counts
    return {"batch_id": answer.json()["batch_id"], "regions": counts}


def review_stats(page: Page, agent: AgentServer) -> dict[str, str]:
    page.goto(agent.url + "/dashboard")
    expect(page.locator("body")).to_have_attribute("data-review-figures", "ready")
    stats = page.locator("[data-review-stat]")
    return {
        stats.nth(i).get_attribute("data-review-stat") or "": stats.nth(i).inner_text()
        for i in range(stats.count())
    }


def tab_to(page: Page, selector: str, limit: int = 60) -> None:
    """Press Tab until `selector` has the focus (a keyboard user's way there)."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate(f"document.activeElement?.matches({selector!r})"):
            return
    raise AssertionError(f"{selector} is not reachable with Tab")


def wait_verdict(page: Page, index: int, verdict: str) -> None:
    expect(page.locator(f".review-chip[data-index='{index}']")).to_have_attribute(
        "data-verdict", verdict
    )


def test_a_batch_is_reviewed_by_keyboard_and_the_dashboard_follows(
    page: Page, agent: AgentServer, batch: dict[str, Any], database_url: str, screenshot_dir: Path
) -> None:
    before = review_stats(page, agent)
    assert before["Reviewed share"] == "0.0%"
    assert before["False-call rate"] == "–"

    page.goto(f"{agent.url}/review?batch_id={batch['batch_id']}")
    expect(page.locator(".queue-progress")).to_have_text("0 of 3 images reviewed")
    tab_to(page, "#review-begin")
    page.keyboard.press("Enter")
    expect(page.locator(".review-panel .review-current")).to_contain_text("Defect 1 of")

    # A visible focus ring on the panel's buttons.
    tab_to(page, ".review-panel [data-verdict='real']")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("", "none"), outline
    page.keyboard.press("Escape")

    false_calls = 0
    for board in range(3):
        expect(page.locator(".review-panel")).to_be_visible()
        img_id = page.locator(".result-view").get_attribute("data-img-id") or ""
        n = batch["regions"][img_id]
        expect(page.locator(".review-chip")).to_have_count(n)
        expect(page.locator(".region-box.selected")).to_have_count(1)
        if board == 0:
            # Undo with Z and with Ctrl+Z restores the verdict before.
            page.keyboard.press("u")
            wait_verdict(page, 0, "unsure")
            page.keyboard.press("z")
            wait_verdict(page, 0, "")
            page.keyboard.press("r")
            wait_verdict(page, 0, "real")
            page.keyboard.press("Control+z")
            wait_verdict(page, 0, "")
        for i in range(n):
            # Board 0: all false calls (it passes); the others: every third defect is real.
            real = board > 0 and i % 3 == 0
            page.keyboard.press("r" if real else "f")
            wait_verdict(page, i, "real" if real else "false_call")
            false_calls += not real
        expect(page.locator(".board-progress")).to_contain_text(f"{n} of {n} defects reviewed")
        page.keyboard.press("p" if board == 0 else ("2" if board == 1 else "s"))
        expect(page.locator(".board-progress")).to_contain_text("disposition:")
        expect(page.locator(".review-progress")).to_have_text(
            f"{board + 1} of 3 images reviewed (batch {batch['batch_id']})"
        )
        if board == 0:
            shoot(page, screenshot_dir, "review-board")
        if board == 0:
            page.evaluate("window.reviewPage = 'kept'")
        page.keyboard.press("n")
        if board < 2:
            page.wait_for_url(lambda url, old=img_id: "review=1" in url and old not in url)
            # The next board was preloaded and drawn in the same page (no page load).
            assert page.evaluate("window.reviewPage") == "kept"
            expect(page.locator(".result-view")).not_to_have_attribute("data-img-id", img_id)
    expect(page.locator(".review-status")).to_contain_text("Nothing left to review")

    total = sum(batch["regions"].values())
    rows = db_rows(database_url, "SELECT verdict, reviewer FROM region_verdicts")
    assert len(rows) == total
    assert {r[1] for r in rows} == {"e2e-admin"}
    assert sum(r[0] == "false_call" for r in rows) == false_calls
    dispositions = db_rows(database_url, "SELECT disposition FROM image_dispositions")
    assert sorted(d for (d,) in dispositions) == ["pass", "repair", "scrap"]
    # Four undo steps and their originals are in the history too.
    events = db_rows(database_url, "SELECT count(*) FROM review_events WHERE kind = 'verdict'")
    assert events == [(total + 4,)]

    after = review_stats(page, agent)
    assert after["Reviewed share"] == "100.0%"
    assert after["First-pass yield"] == "33.3%"
    assert after["False-call rate"] == f"{100 * false_calls / total:.1f}%"
    assert after["Dispositions"] == "1 / 1 / 1"
    expect(page.locator("#review-classes tbody tr[data-class]").first).to_be_visible()
    shoot(page, screenshot_dir, "review-dashboard")
