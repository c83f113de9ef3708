"""End-to-end: failed inspections are visible in History and can be retried from there;
the Batch page says when a batch waits for the model service.

The model service is the reference one behind a proxy that is stopped for the outage
(connections refused) and started again (`ModelServiceProxy`): the reference service
cannot fail on demand.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from playwright.sync_api import Page, expect

from app.services.model_service.reference import ReferenceService
from tests.conftest import agent_settings
from tests.e2e.conftest import RecordedContext, shoot
from tests.support import AgentServer, ModelServiceProxy, db_rows, serve_agent

pytestmark = [pytest.mark.e2e, pytest.mark.deeppcb]


@pytest.fixture
def outage(reference_service: ReferenceService) -> Iterator[ModelServiceProxy]:
    proxy = ModelServiceProxy(reference_service.url)
    yield proxy
    proxy.stop()


@pytest.fixture
def agent_in_outage(
    tmp_path: Path, database_url: str, outage: ModelServiceProxy
) -> Iterator[AgentServer]:
    settings = agent_settings(
        tmp_path, database_url, outage.url, segformer_max_retries=1, batch_retry_backoff_base_s=60
    )
    with serve_agent(settings) as server:
        yield server


@pytest.fixture
def page(browser: RecordedContext, agent_in_outage: AgentServer) -> Page:
    """A fresh page on the agent in outage (on loopback, so no key is needed). It replaces
    the signed-in page of the e2e conftest, whose own agent would share this database and
    its queue, and take this agent's jobs without having its files."""
    return browser.new_page()


def test_history_shows_a_failed_inspection_and_retries_it(
    page: Page,
    agent_in_outage: AgentServer,
    outage: ModelServiceProxy,
    database_url: str,
    deeppcb: list[Path],
    screenshot_dir: Path,
) -> None:
    with httpx2.Client(base_url=agent_in_outage.url, timeout=60) as c:
        failed = c.post("/api/upload", files={"image": ("board-7.jpg", deeppcb[7].read_bytes())})
        other = c.post("/api/upload", files={"image": ("board-11.jpg", deeppcb[11].read_bytes())})
    assert failed.status_code == other.status_code == 503
    img_unique_id = failed.json()["img_unique_id"]
    other_id = other.json()["img_unique_id"]

    page.goto(agent_in_outage.url + "/history")
    expect(page.locator("#history-total")).to_contain_text("0 images")
    page.select_option("#f-status", "failed")
    card = page.locator(f'.state-card[data-img-id="{img_unique_id}"]')
    expect(card).to_be_visible()
    expect(page.locator("#history-total")).to_contain_text("2 failed images")
    expect(card).to_contain_text("board-7.jpg")
    expect(card.locator(".row-error")).to_contain_text("unreachable")
    expect(page.locator("#f-class")).to_be_disabled()
    assert "status=failed" in page.url
    shoot(page, screenshot_dir, "09-history-failed")

    outage.start()
    card.get_by_role("button", name="Retry").click()
    expect(card.locator(".retry-result")).to_contain_text("Inspected:")
    # The card and the count no longer call it failed.
    expect(card.locator(".status-badge")).to_have_text("succeeded")
    expect(page.locator("#history-total")).to_contain_text("1 failed image ·")
    expect(card.get_by_role("link", name="View result")).to_have_attribute(
        "href", f"/results/{img_unique_id}"
    )
    assert db_rows(
        database_url, "SELECT status FROM inspections WHERE img_unique_id = %s", img_unique_id
    ) == [("succeeded",)]
    page.select_option("#f-status", "")
    expect(page.locator(f'[data-img-id="{img_unique_id}"]')).to_be_visible()

    # The result page of a failed inspection says so and retries it too.
    page.goto(f"{agent_in_outage.url}/results/{other_id}")
    panel = page.locator('.state-panel[data-status="failed"]')
    expect(panel).to_contain_text("board-11.jpg")
    expect(panel.locator(".row-error")).to_contain_text("unreachable")
    panel.get_by_role("button", name="Retry").click()
    expect(page.locator(".state-panel")).to_have_count(0)
    expect(page.get_by_text("Defect summary")).to_be_visible()


def test_batch_page_says_it_waits_for_the_model_service(
    page: Page, agent_in_outage: AgentServer, deeppcb: list[Path], screenshot_dir: Path
) -> None:
    with httpx2.Client(base_url=agent_in_outage.url, timeout=60) as c:
        batch = c.post(
            "/api/upload/batch",
            files=[("images", (p.name, p.read_bytes())) for p in deeppcb[8:10]],
        ).json()
    page.goto(f"{agent_in_outage.url}/batch?batch={batch['batch_id']}")
    expect(page.locator("#summary-state")).to_contain_text(
        "waiting for model service, next attempt at", timeout=30_000
    )
    expect(page.locator("tr.queue-row").first).to_contain_text("waiting for model service")
    shoot(page, screenshot_dir, "10-batch-waiting")
    # The summary and the rows give the next attempt in the same (the browser's) time.
    summary = page.locator("#summary-state").inner_text()
    assert "UTC" not in summary
    rows = page.locator("tr.queue-row").all_inner_texts()
    at = re.search(r"next attempt at (.+?) \(", summary)
    assert at is not None, summary
    assert any(f"next attempt at {at.group(1)} (" in row for row in rows), (summary, rows)

    # "Try again now" sends the batch's retry though no image has failed yet.
    button = page.get_by_role("button", name="Try again now")
    with page.expect_response(f"**/api/batches/{batch['batch_id']}/retry") as sent:
        button.click()
    assert sent.value.request.method == "POST"
    assert sent.value.status == 202
    assert sorted(sent.value.json()["retried"]) == sorted(
        a["img_unique_id"] for a in batch["accepted"]
    )


@pytest.fixture
def agent_failing_fast(
    tmp_path: Path, database_url: str, outage: ModelServiceProxy
) -> Iterator[AgentServer]:
    """An agent whose batch images fail at once when the model service is down (no
    automatic retry window), so the Batch page shows a failed row with a Retry button."""
    settings = agent_settings(
        tmp_path, database_url, outage.url, segformer_max_retries=1, batch_retry_window_s=0
    )
    with serve_agent(settings) as server:
        yield server


# Records, on every change of a batch row or of the summary, the row's status and detail and
# the summary's state, so a test sees what the page said while a retry ran.
WATCH_RETRY = """() => {
  window.__seen = [];
  const note = () => {
    const tr = document.querySelector('tr.queue-row');
    window.__seen.push({
      state: tr ? tr.dataset.state : null,
      detail: tr ? (tr.querySelector('.row-error')?.textContent || '') : '',
      summary: document.getElementById('summary-state').textContent,
    });
  };
  new MutationObserver(note).observe(document.querySelector('main'),
    {subtree: true, childList: true, characterData: true, attributes: true});
}"""


def test_batch_row_shows_the_real_attempt_while_a_retry_runs(
    browser: RecordedContext,
    agent_failing_fast: AgentServer,
    outage: ModelServiceProxy,
    deeppcb: list[Path],
    screenshot_dir: Path,
) -> None:
    """Bug: the row said "attempt 1" while the agent ran its third, and the summary said
    "finished" while a retry ran."""
    page = browser.new_page()
    with httpx2.Client(base_url=agent_failing_fast.url, timeout=60) as c:
        batch = c.post(
            "/api/upload/batch", files=[("images", ("board-12.jpg", deeppcb[12].read_bytes()))]
        ).json()
    page.goto(f"{agent_failing_fast.url}/batch?batch={batch['batch_id']}")
    row = page.locator("tr.queue-row")
    expect(row).to_have_attribute("data-state", "failed", timeout=30_000)
    expect(page.locator("#summary-state")).to_have_text("finished")
    page.evaluate(WATCH_RETRY)

    def attempts() -> int:
        """The agent's own count (a new connection each time: an idle one may be closed)."""
        with httpx2.Client(base_url=agent_failing_fast.url, timeout=30) as c:
            status = c.get(f"/api/batches/{batch['batch_id']}").json()
        return int(status["items"][0]["attempts"])

    tried = attempts()
    # The next attempt: the service answers, slowly, 503.
    outage.delay_s = 4
    outage.unavailable = True
    outage.start()
    row.get_by_role("button", name="Retry").click()
    expect(row.locator(".row-error")).to_contain_text(f"attempt {tried + 1}")
    expect(page.locator("#summary-state")).not_to_have_text("finished")
    shoot(page, screenshot_dir, "11-batch-retry-running")
    expect(row).to_have_attribute("data-state", "failed", timeout=30_000)
    tried = attempts()
    expect(row.locator(".row-error")).to_contain_text(f"after {tried} attempts")

    # The next one succeeds, slowly.
    outage.unavailable = False
    row.get_by_role("button", name="Retry").click()
    expect(row.locator(".row-error")).to_contain_text(f"attempt {tried + 1}")
    expect(row).to_have_attribute("data-state", "done", timeout=60_000)
    expect(page.locator("#summary-state")).to_have_text("finished")
    seen = page.evaluate("window.__seen")
    running = [s for s in seen if s["state"] == "running"]
    assert running, seen
    assert all(s["summary"] != "finished" for s in running), running
    assert not any("attempt 1" in s["detail"] for s in running), running
    assert attempts() == tried + 1
