"""The blind second review in Chromium: a board first reviewed through the API by one
reviewer is audited in the viewer's audit mode by another, who sees no first verdict
(no verdict colour, chip or label), nor in the ordinary viewer, and whose key press is
stored apart from the first verdict; the Dashboard then shows both reviewers' figures and
their kappa."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from playwright.sync_api import Page, expect

from app.services.model_service.reference import ReferenceService
from tests.conftest import agent_settings
from tests.e2e.conftest import RecordedContext, viewer_ready
from tests.support import AgentServer, db_rows, serve_agent, wait_until
from tests.web.conftest import upload

pytestmark = [pytest.mark.e2e, pytest.mark.deeppcb]


@pytest.fixture(scope="module")
def agent(
    tmp_path_factory: pytest.TempPathFactory, database_url: str, reference_service: ReferenceService
) -> Iterator[AgentServer]:
    """The agent with keys off (reviewers named by X-Reviewer) and every completely
    reviewed board queued for a second review (REVIEW_AUDIT_RATE=1)."""
    settings = agent_settings(
        tmp_path_factory.mktemp("data"),
        database_url,
        reference_service.url,
        auth_mode="off",
        review_audit_rate=1.0,
    )
    with serve_agent(settings) as server:
        yield server


def test_the_auditor_sees_no_first_verdict_and_stores_a_second_one(
    browser: RecordedContext, agent: AgentServer, deeppcb: list[Path], database_url: str
) -> None:
    board = upload(agent, deeppcb[5])["img_unique_id"]
    with httpx2.Client(base_url=agent.url, timeout=60) as c:
        regions = c.get(f"/api/images/{board}/regions").json()
        ids = sorted(r["region_unique_id"] for g in regions["classes"] for r in g["regions"])
        for region in ids:
            answer = c.put(
                f"/api/regions/{region}/verdict",
                json={"verdict": "false_call"},
                headers={"X-Reviewer": "qc-anna"},
            )
            assert answer.status_code == 200, answer.text
    page = browser.new_page()
    page.goto(agent.url + "/review?audit=1")
    page.evaluate("localStorage.setItem('aoi.reviewer', 'qc-ben')")
    page.reload()
    expect(page.locator(".queue-progress")).to_have_text("Audit: 1 board open to you")
    page.click("#review-begin")
    page.wait_for_url(f"**/results/{board}?review=1&audit=1")
    viewer_ready(page)
    panel = page.locator(".review-panel")
    expect(panel.locator("h2").first).to_have_text("Audit: blind second review")
    expect(panel.locator(".review-chip")).to_have_count(len(ids))
    # Blind: no chip, box or label carries the first reviewer's false calls.
    expect(panel.locator(".review-chip[data-verdict='false_call']")).to_have_count(0)
    expect(page.locator(".verdict-false_call")).to_have_count(0)
    expect(panel.locator(".review-current")).to_contain_text("no verdict yet")
    page.keyboard.press("r")
    expect(panel.locator(".review-chip[data-index='0']")).to_have_attribute("data-verdict", "real")
    # Shown at once, stored in the background: wait for the save.
    expect(page.locator("body")).to_have_attribute("data-review-unsaved", "0")
    assert db_rows(
        database_url, "SELECT region_unique_id, verdict, reviewer FROM audit_verdicts"
    ) == [(ids[0], "real", "qc-ben")]
    first = db_rows(database_url, "SELECT DISTINCT verdict, reviewer FROM region_verdicts")
    assert first == [("false_call", "qc-anna")]

    # Outside audit mode too (the bug: the ordinary viewer read the first verdicts from
    # GET /api/images/{id}/regions): the auditor's ordinary viewer shows none of them.
    page.goto(f"{agent.url}/results/{board}?review=1")
    viewer_ready(page)
    expect(panel.locator(".review-chip")).to_have_count(len(ids))
    expect(panel.locator(".review-chip[data-verdict='false_call']")).to_have_count(0)
    expect(page.locator(".verdict-false_call")).to_have_count(0)
    # The first reviewer still sees hers.
    page.evaluate("localStorage.setItem('aoi.reviewer', 'qc-anna')")
    page.reload()
    viewer_ready(page)
    expect(panel.locator(".review-chip[data-verdict='false_call']")).to_have_count(len(ids))

    page.goto(agent.url + "/dashboard")
    expect(page.locator("body")).to_have_attribute("data-reviewer-figures", "ready")
    expect(page.locator("#reviewer-speed tr[data-reviewer='qc-anna']")).to_have_count(1)
    # One audited region, first false_call vs second real: p_o = 0, p_e = 0, kappa 0.
    expect(page.locator("#reviewer-agreement [data-kappa]").first).to_have_text("0.00")
    expect(page.locator("#audit-note")).to_contain_text("0 of 1 queued boards audited")


def _history(page: Page, agent: AgentServer, query: str) -> None:
    """Open History with `query` and wait until its gallery has loaded."""
    page.goto(f"{agent.url}/history?{query}")
    expect(page.locator("#gallery")).not_to_have_attribute("aria-busy", "true")


def test_history_names_the_reader_so_an_auditor_finds_the_board_unreviewed(
    browser: RecordedContext, agent: AgentServer, deeppcb: list[Path]
) -> None:
    """With keys off the History page sends the review mode's reviewer name (X-Reviewer):
    the board Ben may audit lists for him as unreviewed, never under `has_false_calls` or
    its disposition, and the CSV exported from the page carries no first verdict of it."""
    board = upload(agent, deeppcb[6])["img_unique_id"]
    anna = {"X-Reviewer": "qc-anna"}
    with httpx2.Client(base_url=agent.url, timeout=60) as c:
        regions = c.get(f"/api/images/{board}/regions").json()
        ids = sorted(r["region_unique_id"] for g in regions["classes"] for r in g["regions"])
        for region in ids:
            body = {"verdict": "false_call"}
            put = c.put(f"/api/regions/{region}/verdict", json=body, headers=anna)
            assert put.status_code == 200, put.text
        put = c.put(f"/api/images/{board}/disposition", json={"disposition": "scrap"}, headers=anna)
        assert put.status_code == 200, put.text
    card = f".thumb-card[data-img-id='{board}']"
    page = browser.new_page()
    # No name given: nothing is hidden (the reader is unknown).
    _history(page, agent, "review_state=has_false_calls")
    expect(page.locator(card)).to_have_count(1)
    page.evaluate("localStorage.setItem('aoi.reviewer', 'qc-ben')")
    with page.expect_request("**/api/images?*") as asked:
        _history(page, agent, "review_state=has_false_calls")
    assert asked.value.headers.get("x-reviewer") == "qc-ben"
    expect(page.locator(card)).to_have_count(0)
    _history(page, agent, "disposition=scrap")
    expect(page.locator(card)).to_have_count(0)
    _history(page, agent, "review_state=unreviewed")
    expect(page.locator(card)).to_have_count(1)
    expect(page.locator(f"{card} .review-badge")).to_have_text(f"0/{len(ids)} reviewed")
    expect(page.locator(f"{card} .false-call-badge, {card} .disposition-badge")).to_have_count(0)

    with page.expect_download() as saved:
        page.click("#export-csv")
    rows = list(csv.DictReader(io.StringIO(Path(saved.value.path()).read_text("utf-8"))))
    mine = [r for r in rows if r["img_unique_id"] == board]
    assert len(mine) == len(ids)
    assert {(r["verdict"], r["disposition"]) for r in mine} == {("", "")}


def test_n_in_audit_mode_swaps_in_the_next_board_without_a_page_load(
    browser: RecordedContext, agent: AgentServer, deeppcb: list[Path], database_url: str
) -> None:
    """Audit mode preloads the next board open to the auditor as review mode does: `N`
    (twice on a board with defects left: it asks once) shows it in the same page, still
    blind, and a verdict key there stores a second verdict on that board."""
    anna = {"X-Reviewer": "qc-anna"}
    ben = {"X-Reviewer": "qc-ben"}
    with httpx2.Client(base_url=agent.url, timeout=60) as c:
        for path in deeppcb[7:9]:
            board = upload(agent, path)["img_unique_id"]
            regions = c.get(f"/api/images/{board}/regions").json()
            for g in regions["classes"]:
                for r in g["regions"]:
                    body = {"verdict": "false_call"}
                    put = c.put(
                        f"/api/regions/{r['region_unique_id']}/verdict", json=body, headers=anna
                    )
                    assert put.status_code == 200, put.text
        first = c.get("/api/review/audit/next", headers=ben).json()["img_unique_id"]
        after = c.get("/api/review/audit/next", params={"after": first}, headers=ben).json()[
            "img_unique_id"
        ]
    assert first
    assert after not in (None, first)
    page = browser.new_page()
    page.goto(agent.url + "/review?audit=1")
    page.evaluate("localStorage.setItem('aoi.reviewer', 'qc-ben')")
    page.goto(f"{agent.url}/results/{first}?review=1&audit=1")
    viewer_ready(page)
    panel = page.locator(".review-panel")
    expect(panel.locator(".review-progress")).to_contain_text("to audit open to you")
    page.evaluate("window.auditPage = 'kept'")
    # The next board's answers and input image are fetched while this one is audited.
    preloaded = f"review:preload-end:{after}"
    assert wait_until(
        lambda: page.evaluate("(name) => performance.getEntriesByName(name).length", preloaded),
        timeout_s=30,
    )
    page.keyboard.press("n")
    expect(page.locator(".review-status")).to_contain_text("Press N again to leave")
    page.keyboard.press("n")
    page.wait_for_url(f"**/results/{after}?review=1&audit=1")
    viewer_ready(page)
    assert page.evaluate("window.auditPage") == "kept"  # no page load
    expect(panel.locator("h2").first).to_have_text("Audit: blind second review")
    expect(panel.locator(".review-chip[data-verdict='false_call']")).to_have_count(0)
    expect(page.locator(".verdict-false_call")).to_have_count(0)
    uid = panel.locator(".review-chip.current").get_attribute("data-region-unique-id")
    page.keyboard.press("u")
    expect(page.locator("body")).to_have_attribute("data-review-unsaved", "0")
    stored = db_rows(
        database_url,
        "SELECT img_unique_id, verdict, reviewer FROM audit_verdicts WHERE region_unique_id = %s",
        int(uid or 0),
    )
    assert stored == [(after, "unsure", "qc-ben")]
