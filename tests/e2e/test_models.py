"""The Models page in Chromium with real parts: the agent (API keys required) inspects real
boards with the reference service's classical engine and shadows every one to a second
reference service running the golden-board engine, over real HTTP. The page lists both
versions, compares them per class, lists the disagreements, opens the viewer with both
answers overlaid, judges a region only the shadow has, and axe finds nothing critical,
serious or moderate on either page."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from playwright.sync_api import expect

from app.services.model_service.reference import (
    ReferenceService,
)
from tests.conftest import agent_settings
from tests.e2e.conftest import RecordedContext, sign_in, viewer_ready
from tests.e2e.test_accessibility import AXE, violations
from tests.support import (
    AgentServer,
    create_api_key,
    db_rows,
    sample_images,
    serve_agent,
    wait_until,
)

pytestmark = [pytest.mark.e2e]


@pytest.fixture(scope="module")
def axe_source() -> str:
    if not AXE.is_file():
        pytest.skip(f"{AXE} missing: run `npm ci` in tests/e2e (see tests/e2e/package.json)")
    return AXE.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def agent(
    tmp_path_factory: pytest.TempPathFactory,
    database_url: str,
    reference_service: ReferenceService,
    template_service: ReferenceService,
) -> Iterator[AgentServer]:
    """The agent with keys required and every inspection shadowed."""
    settings = agent_settings(
        tmp_path_factory.mktemp("data"),
        database_url,
        reference_service.url,
        auth_mode="required",
        shadow_service_urls=[template_service.url],
        shadow_sample_rate=1.0,
    )
    with serve_agent(settings) as server:
        server.api_key = create_api_key(database_url, "e2e-admin", "admin")
        yield server


@pytest.fixture(scope="module")
def shadowed(agent: AgentServer) -> list[dict[str, Any]]:
    """Three sample boards inspected, each with its shadow answer stored."""
    headers = {"X-API-Key": agent.api_key or ""}
    answers = []
    with httpx2.Client(base_url=agent.url, timeout=60, headers=headers) as client:
        for board in sample_images()[:3]:
            response = client.post("/api/upload", files={"image": (board.name, board.read_bytes())})
            assert response.status_code == 200, response.text
            answers.append(response.json())
    db = agent.settings.database_url or ""
    wait_until(lambda: db_rows(db, "SELECT count(*) FROM model_answers")[0][0] == 3)
    return answers


def test_models_page_compares_and_opens_the_overlay(
    browser: RecordedContext, agent: AgentServer, shadowed: list[dict[str, Any]], axe_source: str
) -> None:
    page = browser.new_page()
    page.emulate_media(reduced_motion="reduce")
    sign_in(page, agent)
    page.goto(agent.url + "/models")
    table = page.locator("#models-table")
    expect(table).to_contain_text("reference-classical")
    expect(table).to_contain_text("reference-template")
    expect(page.locator('#main-nav a[href="/models"]')).to_have_attribute("aria-current", "page")
    # The defaults: A = the primary version, B = the shadow's.
    page.click("#compare-form button[type=submit]")
    expect(page.locator("#compare-table tbody tr").first).to_be_visible()
    expect(page.locator("#compare-table thead")).to_contain_text("Overlapping A/B")
    expect(page.locator("#compare-result")).to_contain_text("3 images answered by both")
    assert violations(page, axe_source) == []
    review = page.locator("#review-disagreements")
    if review.count():
        assert "disagreement=" in (review.get_attribute("href") or "")
    links = page.locator("#disagreements a")
    assert links.count() >= 1, "the two engines agree on every sample board"
    href = links.first.get_attribute("href") or ""
    assert "?compare=" in href
    links.first.click()
    viewer_ready(page)
    panel = page.locator(".answer-panel")
    expect(panel).to_contain_text("reference-template")
    assert page.locator(".answer-box").count() >= 1
    only = panel.locator("button[data-verdict=false_call]")
    # The classical and template engines disagree on these boards the same way each run.
    assert only.count() >= 1, "no region only the shadow has on the first disagreement"
    # A false call with a reason: kept on the region and in the board's review history.
    region = only.first.get_attribute("data-region") or ""
    panel.locator(f'select.answer-reason[data-region="{region}"]').select_option("dust")
    only.first.click()
    pressed = f'button[data-verdict=false_call][data-region="{region}"][aria-pressed=true]'
    expect(panel.locator(pressed)).to_be_visible()
    expect(panel.locator(f'select.answer-reason[data-region="{region}"]')).to_have_value("dust")
    db = agent.settings.database_url or ""
    assert db_rows(
        db,
        "SELECT verdict, reason FROM answer_regions WHERE answer_region_id = %s",
        int(region),
    ) == [("false_call", "dust")]
    assert db_rows(
        db,
        "SELECT kind, value, reason FROM review_events WHERE answer_region_id = %s",
        int(region),
    ) == [("verdict", "false_call", "dust")]
    # Another reason for the judged region is stored at once.
    panel.locator(f'select.answer-reason[data-region="{region}"]').select_option("oxidation")
    wait_until(
        lambda: (
            db_rows(
                db, "SELECT reason FROM answer_regions WHERE answer_region_id = %s", int(region)
            )
            == [("oxidation",)]
        )
    )
    assert violations(page, axe_source) == []
