"""End-to-end accessibility: axe-core (from npm, test-only: `tests/e2e/package.json`,
installed with `npm ci` in tests/e2e) reports no critical, serious or moderate violation
on every page and state the browser tests visit (review mode, the batch queue before
Start and the viewer's dialogs included); the focus comes back to the Delete button when
its dialog closes; every control is reached with the Tab key
and shows a focus ring.

axe is put into the page with `page.evaluate` (a DevTools call, which the agent's strict
Content-Security-Policy does not govern), so the pages are tested under their real policy.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import RecordedContext, sign_in, viewer_ready
from tests.support import REPO_ROOT, AgentServer, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.deeppcb]

AXE = REPO_ROOT / "tests/e2e/node_modules/axe-core/axe.min.js"
BLOCKING = ("critical", "serious", "moderate")


@pytest.fixture(scope="module")
def axe_source() -> str:
    if not AXE.is_file():
        pytest.skip(f"{AXE} missing: run `npm ci` in tests/e2e (see tests/e2e/package.json)")
    return AXE.read_text(encoding="utf-8")


def violations(page: Page, axe_source: str, impacts: tuple[str, ...] = BLOCKING) -> list[str]:
    """The axe violations of the page as it is now with one of `impacts` (by default the
    critical, serious and moderate ones), one line each."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(axe_source)
    found: list[dict[str, Any]] = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
    )
    return [
        f"{v['impact']} {v['id']}: {v['help']} at "
        + "; ".join(" ".join(n["target"]) for n in v["nodes"][:4])
        for v in found
        if v["impact"] in impacts
    ]


@pytest.fixture(scope="module")
def batch_id(agent: AgentServer, deeppcb: list[Path]) -> str:
    """A finished batch of two images."""
    headers = {"X-API-Key": agent.api_key or ""}
    with httpx2.Client(base_url=agent.url, timeout=60, headers=headers) as c:
        files = [("images", (p.name, p.read_bytes())) for p in deeppcb[60:62]]
        answer = c.post("/api/upload/batch", files=files).json()
        wait_until(lambda: c.get(f"/api/batches/{answer['batch_id']}").json()["done"])
    return str(answer["batch_id"])


def test_axe_finds_nothing_critical_serious_or_moderate(
    browser: RecordedContext,
    agent: AgentServer,
    inspected: list[dict[str, Any]],
    batch_id: str,
    deeppcb: list[Path],
    axe_source: str,
) -> None:
    page = browser.new_page()
    # Bootstrap drops its colour transitions under reduced motion: axe then measures the
    # final colours, not a button's background half-way through its 0.15 s fade.
    page.emulate_media(reduced_motion="reduce")
    found: dict[str, list[str]] = {}

    def check(state: str) -> None:
        found[state] = violations(page, axe_source)

    page.goto(agent.url + "/signin")
    check("sign-in")
    sign_in(page, agent)
    check("upload")
    page.set_input_files("#file-input", deeppcb[3])
    expect(page.locator("#upload-state")).to_have_attribute("data-state", "done")
    viewer_ready(page)
    check("upload with its result")

    page.goto(agent.url + "/batch")
    check("batch")
    # Enough files for the queue to scroll (its box must then be reachable by keyboard).
    page.set_input_files("#files-input", deeppcb[70:100])
    expect(page.locator("tr.queue-row")).to_have_count(30)
    assert page.evaluate(
        "() => { const e = document.querySelector('.queue-scroll');"
        " return e.scrollHeight > e.clientHeight; }"
    ), "the queue should overflow its box"
    check("batch queue before Start")
    page.goto(agent.url + f"/batch?batch={batch_id}")
    expect(page.locator("#summary")).to_have_attribute("data-done", "true")
    check("batch finished")

    page.goto(agent.url + "/history")
    expect(page.locator(".thumb-card").first).to_be_visible()
    check("history")
    page.goto(agent.url + "/history?status=failed")
    expect(page.locator("#history-total")).to_contain_text("failed")
    check("history, failed only")

    answer = max(inspected, key=lambda a: a["total_defects"])
    page.goto(agent.url + f"/results/{answer['img_unique_id']}")
    viewer_ready(page)
    check("viewer")
    page.keyboard.press("]")
    expect(page.locator(".minimap")).to_be_visible()
    # The zoom to the defect glides; hover again until the box has stopped under the mouse.
    tooltip = page.locator(".region-tooltip")
    for _ in range(20):
        page.locator(".region-box.selected").hover(force=True)
        if tooltip.is_visible():
            break
        page.wait_for_timeout(250)
    expect(tooltip).to_be_visible()
    check("viewer zoomed on a defect, tooltip shown")
    page.click("[data-tab='mask']")
    viewer_ready(page)
    check("viewer, mask tab")
    page.click(".delete-btn")
    expect(page.locator(".modal.show")).to_be_visible()
    # After Bootstrap's fade-in (contrast is measured on the final colours).
    page.wait_for_timeout(600)
    check("viewer, delete dialog")
    page.keyboard.press("Escape")
    expect(page.locator(".modal.show")).to_have_count(0)
    # The focus is back on the button that opened the dialog, not lost on <body>.
    expect(page.locator(".delete-btn")).to_be_focused()

    page.goto(agent.url + f"/results/{answer['img_unique_id']}?review=1")
    viewer_ready(page)
    expect(page.locator(".review-panel")).to_be_visible()
    check("viewer in review mode")
    page.keyboard.press("f")
    expect(page.locator(".review-chip").first).to_have_attribute("data-verdict", "false_call")
    page.keyboard.press("?")
    expect(page.locator(".review-keymap")).to_be_visible()
    check("review mode, key map")
    page.keyboard.press("Escape")
    page.goto(agent.url + f"/review?batch_id={batch_id}")
    expect(page.locator(".queue-progress")).to_be_visible()
    check("review queue")
    page.goto(agent.url + "/history?review_state=has_false_calls")
    expect(page.locator(".false-call-badge").first).to_be_visible()
    check("history with review badges")

    page.goto(agent.url + "/dashboard")
    expect(page.locator("body")).to_have_attribute("data-dashboard", "ready")
    check("dashboard")

    blocking = {state: v for state, v in found.items() if v}
    assert blocking == {}, "\n".join(f"{s}: {v}" for s, v in blocking.items())
    assert len(found) == 17


# Every element the Tab key should reach: visible, enabled, not taken out of the order.
FOCUSABLE = """() => [...document.querySelectorAll(
    'a[href], button, input, select, textarea, [tabindex]')].filter((e) => {
  if (e.disabled || e.tabIndex < 0 || e.closest('[hidden], .d-none, [inert]')) return false;
  const r = e.getBoundingClientRect();
  const hiddenInput = e.matches('input.visually-hidden');  // its label shows the focus
  return (r.width > 0 && r.height > 0) || hiddenInput;
}).length"""

# Whether the focused element (or, for a visually hidden checkbox, its label) shows a ring.
RING = """() => {
  const e = document.activeElement;
  const shown = e.matches('input.visually-hidden') ? e.closest('label') || e : e;
  const s = getComputedStyle(shown);
  const outline = s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 1;
  const shadow = s.boxShadow && s.boxShadow !== 'none';
  return {ok: outline || shadow, what: `${shown.tagName}#${shown.id}.${shown.className}`,
          key: e.dataset.key || e.dataset.tab || e.id || e.textContent.trim().slice(0, 30)};
}"""


def tab_through(page: Page, limit: int = 400) -> tuple[int, list[str]]:
    """Press Tab until the focus comes back round; returns (elements reached, those with
    no visible focus ring)."""
    # Bootstrap drops its focus-ring transitions under reduced motion: measure final rings.
    page.emulate_media(reduced_motion="reduce")
    page.evaluate("document.activeElement && document.activeElement.blur()")
    seen: list[str] = []
    no_ring: list[str] = []
    first: Any = None
    for _ in range(limit):
        page.keyboard.press("Tab")
        ring = page.evaluate(RING)
        marker = page.evaluate(
            "() => { const e = document.activeElement;"
            " if (!e.dataset.tabProbe) e.dataset.tabProbe = String(Math.random());"
            " return e === document.body ? null : e.dataset.tabProbe; }"
        )
        if marker is None:
            continue
        if marker == first:
            break
        first = first or marker
        seen.append(marker)
        if not ring["ok"]:
            no_ring.append(ring["what"])
    return len(set(seen)), no_ring


@pytest.mark.parametrize(
    ("name", "path", "ready"),
    [
        ("upload", lambda _: "/", lambda page: None),
        ("batch", lambda _: "/batch", lambda page: None),
        (
            "history",
            lambda _: "/history",
            lambda page: expect(page.locator(".thumb-card").first).to_be_visible(),
        ),
        (
            "viewer",
            lambda inspected: f"/results/{inspected[0]['img_unique_id']}",
            viewer_ready,
        ),
        (
            "dashboard",
            lambda _: "/dashboard",
            lambda page: expect(page.locator("body")).to_have_attribute("data-dashboard", "ready"),
        ),
    ],
)
def test_every_control_is_reached_by_tab_with_a_focus_ring(
    page: Page,
    agent: AgentServer,
    inspected: list[dict[str, Any]],
    name: str,
    path: Callable[[list[dict[str, Any]]], str],
    ready: Callable[[Page], None],
) -> None:
    page.goto(agent.url + path(inspected))
    ready(page)
    expected = page.evaluate(FOCUSABLE)
    reached, no_ring = tab_through(page)
    assert reached == expected, f"{name}: Tab reached {reached} of {expected} controls"
    assert no_ring == [], f"{name}: no visible focus ring on {no_ring}"
