"""The review mode's layout in Chromium at a laptop (1366×768), a large screen (1920×1080)
and a phone (390×844): the image and the one-line review panel are inside the window
without scrolling, the image is larger on the large screen, and on the phone the panel is
a verdict bar fixed at the bottom whose buttons stay in sight after scrolling and whose
taps do not scroll the page back. axe-core finds nothing critical, serious or moderate at
any size. Screenshots of the three sizes go to the test artifacts ($AOI_SCREENSHOT_DIR,
else test-artifacts/screenshots, git-ignored).

Also the saves behind the optimistic verdicts: a verdict shows at once and is stored in
order; when the agent cannot be reached the panel says so, keeps the verdict and Retry
stores it on the region it was given to. A real DeepPCB board with its DeepPCB template as
golden image, inspected through the agent and the reference model service."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx2
import pytest
from PIL import Image as PILImage
from playwright.sync_api import Page, expect

from tests.e2e.test_accessibility import axe_source, violations
from tests.support import AgentServer, template_of
from tests.web.conftest import upload

__all__ = ["axe_source"]

pytestmark = [pytest.mark.e2e, pytest.mark.deeppcb]

BOARD = 25  # ten defects of several classes
BLOCKING = ("critical", "serious", "moderate")
SIZES = {"1366x768": (1366, 768), "1920x1080": (1920, 1080), "390x844": (390, 844)}


@pytest.fixture(scope="module")
def board(agent: AgentServer, deeppcb: list[Path]) -> str:
    """A DeepPCB board inspected through the agent, its template added as golden image."""
    path = deeppcb[BOARD]
    with httpx2.Client(
        base_url=agent.url, timeout=60, headers={"X-API-Key": agent.api_key or ""}
    ) as c:
        added = c.put("/api/golden/layout-golden", files={"image": (path.name, template_of(path))})
        assert added.status_code in (200, 201), added.text
    return str(upload(agent, path)["img_unique_id"])


def box(page: Page, selector: str) -> dict[str, float]:
    found = page.locator(selector).bounding_box()
    assert found is not None, f"{selector} is not laid out"
    return found


def inside_window(page: Page, selector: str) -> dict[str, float]:
    """The element's box, after checking that it lies wholly inside the window."""
    b = box(page, selector)
    width, height = page.evaluate("[innerWidth, innerHeight]")
    assert b["x"] >= 0, (selector, b)
    assert b["y"] >= 0, (selector, b)
    assert b["x"] + b["width"] <= width + 0.5, (selector, b, width)
    assert b["y"] + b["height"] <= height + 0.5, (selector, b, height)
    return b


def image_on_screen(page: Page) -> dict[str, float]:
    """The displayed image's box (its fitted size) in screen pixels."""
    return page.evaluate(
        """(() => { const v = window.aoiViewer.view; const {scale} = v.zoom;
          return {width: v.width * scale, height: v.height * scale}; })()"""
    )


def open_review(page: Page, agent: AgentServer, img_id: str) -> None:
    page.goto(f"{agent.url}/results/{img_id}?review=1")
    expect(page.locator(".review-panel .review-current")).to_contain_text("Defect")
    expect(page.locator(".result-view .stage-loading")).to_be_hidden()
    expect(page.locator(".golden-compare")).to_have_attribute("data-state", "drawn")
    page.keyboard.press("0")  # the whole board, fitted, as a reviewer first sees it


def test_review_layout_at_three_sizes(
    page: Page, agent: AgentServer, board: str, axe_source: str, screenshot_dir: Path
) -> None:
    page.emulate_media(reduced_motion="reduce")
    fitted: dict[str, dict[str, Any]] = {}
    found: dict[str, list[str]] = {}
    folder = screenshot_dir
    folder.mkdir(parents=True, exist_ok=True)
    for name, (width, height) in SIZES.items():
        page.set_viewport_size({"width": width, "height": height})
        open_review(page, agent, board)
        assert page.evaluate("scrollY") == 0
        # The image's viewport and the panel's buttons, without scrolling.
        inside_window(page, ".stage-viewport")
        inside_window(page, ".review-panel")
        for button in ("[data-verdict='real']", "[data-disposition='pass']", ".review-next-image"):
            inside_window(page, f".review-panel {button}")
        fitted[name] = image_on_screen(page)
        if name != "390x844":
            # The panel is one line: its buttons and chips in one row, no taller than two
            # lines of small text.
            panel = box(page, ".review-panel")
            assert panel["height"] <= 64, (name, panel)
            tops = {
                round(box(page, f".review-panel {s}")["y"])
                for s in ("[data-move='-1']", "[data-verdict='real']", ".review-next-image")
            }
            assert len(tops) == 1, (name, tops)
        found[name] = violations(page, axe_source, BLOCKING)
        shot = folder / f"review-{name}.png"
        page.screenshot(path=shot)
        # 256 colours are plenty for the UI and the binary DeepPCB boards: a small PNG.
        with PILImage.open(shot) as full:
            small = full.convert("RGB").quantize(colors=256)
        small.save(shot, optimize=True)

    assert fitted["1920x1080"]["height"] > fitted["1366x768"]["height"] * 1.3, fitted
    assert fitted["1366x768"]["height"] >= 400, fitted  # not the top third of the board
    blocking = {size: v for size, v in found.items() if v}
    assert blocking == {}, "\n".join(f"{s}: {v}" for s, v in blocking.items())


def fully_shown(page: Page, selector: str) -> dict[str, float]:
    """The element's box, after checking that it is inside the window and that nothing
    covers or clips it: the topmost element at its centre and near its corners is it."""
    b = inside_window(page, selector)
    covered = page.evaluate(
        """([sel, b]) => { const el = document.querySelector(sel);
          const pts = [[0.5, 0.5], [0.1, 0.2], [0.9, 0.2], [0.1, 0.8], [0.9, 0.8]];
          return pts.filter(([fx, fy]) => { const at = document.elementFromPoint(
            b.x + fx * b.width, b.y + fy * b.height); return !(at && el.contains(at)); }); }""",
        [selector, b],
    )
    assert covered == [], (selector, b, covered)
    return b


def test_every_reason_is_reachable_at_1366x768(
    page: Page, agent: AgentServer, board: str, axe_source: str
) -> None:
    """The reason codes (default REVIEW_REASONS: four) did not fit the one-line panel at a
    laptop's size: the line's ellipsis cut them off. The picker is one button in the line
    whose list opens over the image: every code is wholly visible, unclipped and clickable,
    the panel stays one line and the image does not move."""
    page.set_viewport_size({"width": 1366, "height": 768})
    open_review(page, agent, board)
    codes = page.eval_on_selector_all(
        ".review-reasons button[data-reason]", "els => els.map(e => e.dataset.reason)"
    )
    assert codes == ["dust", "oxidation", "registration", "marking"]
    toggle = fully_shown(page, ".review-reason-toggle")
    panel = box(page, ".review-panel")
    assert panel["height"] <= 64, panel
    assert round(toggle["y"]) == round(box(page, ".review-panel [data-verdict='real']")["y"])
    image_before = box(page, ".stage-viewport")
    page.click(".review-reason-toggle")
    expect(page.locator(".review-reason-toggle")).to_have_attribute("aria-expanded", "true")
    for i, code in enumerate(codes):
        button = f".review-reason-menu button[data-reason='{code}']"
        shown = fully_shown(page, button)
        assert shown["height"] >= 16, (code, shown)  # readable, not squeezed
        expect(page.locator(button)).to_have_text(f"⇧{i + 1} {code}")
    assert box(page, ".stage-viewport") == image_before
    assert page.evaluate("scrollY") == 0
    blocking = violations(page, axe_source, BLOCKING)
    assert blocking == [], blocking
    # A click picks the reason (on the current real / false-call verdict, else armed for
    # the next R or F), closes the list and the button shows it; Escape closes it too.
    page.click(".review-reason-menu button[data-reason='registration']")
    expect(page.locator(".review-reason-menu")).to_be_hidden()
    expect(page.locator(".review-reason-menu button[aria-pressed='true']")).to_have_attribute(
        "data-reason", "registration"
    )
    expect(page.locator(".review-reason-toggle")).to_contain_text("registration")
    page.click(".review-reason-toggle")
    expect(page.locator(".review-reason-menu")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator(".review-reason-menu")).to_be_hidden()
    expect(page.locator(".review-reason-toggle")).to_be_focused()


def test_the_phone_verdict_bar_stays_and_taps_do_not_scroll(
    page: Page, agent: AgentServer, board: str
) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    open_review(page, agent, board)
    bar = inside_window(page, ".review-panel")
    assert bar["y"] + bar["height"] == pytest.approx(844, abs=1)
    assert page.evaluate("getComputedStyle(document.querySelector('.review-panel')).position") == (
        "fixed"
    )
    # Scrolled down to the golden crops and the Regions table: the bar is still there.
    page.evaluate("window.scrollTo(0, document.scrollingElement.scrollHeight)")
    scrolled = page.evaluate("scrollY")
    assert scrolled > 200
    after = inside_window(page, ".review-panel")
    assert after["y"] == pytest.approx(bar["y"], abs=1)
    # The page's end is not hidden under the bar.
    last = box(page, ".regions-scroll")
    assert last["y"] + last["height"] <= after["y"] + 1
    # A tap on a verdict stores it and moves on without scrolling the page back.
    first = page.locator(".review-chip.current").get_attribute("data-index")
    page.locator(".review-panel [data-verdict='false_call']").click()  # a tap, by mouse
    expect(page.locator(f".review-chip[data-index='{first}']")).to_have_attribute(
        "data-verdict", "false_call"
    )
    expect(page.locator(".review-chip.current")).not_to_have_attribute("data-index", first or "")
    page.wait_for_timeout(400)  # a smooth scroll would have started by now
    # Not scrolled back up to the image (Chromium's scroll anchoring may move it down a
    # line when text above the anchor grows).
    assert page.evaluate("scrollY") >= scrolled
    inside_window(page, ".review-panel")
    expect(page.locator("body")).to_have_attribute("data-review-unsaved", "0")


def test_a_failed_save_is_kept_and_retried_on_its_region(
    page: Page, agent: AgentServer, board: str
) -> None:
    """The agent's answer to the verdict PUT is replaced by a network failure (Playwright's
    request routing: a real agent cannot fail on demand) until Retry."""
    open_review(page, agent, board)
    before = stored_verdicts(agent, board)
    target = page.locator(".review-chip.current")
    uid = target.get_attribute("data-region-unique-id") or ""
    failing = {"on": True}

    def route(request_route: Any) -> None:
        if failing["on"]:
            request_route.abort("connectionrefused")
        else:
            request_route.continue_()

    page.route("**/api/regions/*/verdict", route)
    page.keyboard.press("u")
    chip = page.locator(f".review-chip[data-region-unique-id='{uid}']")
    expect(chip).to_have_attribute("data-verdict", "unsure")  # shown at once
    error = page.locator(".review-save-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("Not saved")
    expect(page.locator("body")).to_have_attribute("data-review-save-failed", "true")
    # A second verdict waits behind the failed one (order is kept).
    page.keyboard.press("r")
    expect(page.locator("body")).to_have_attribute("data-review-unsaved", "2")
    failing["on"] = False
    page.locator(".review-save-retry").click()
    expect(page.locator("body")).to_have_attribute("data-review-unsaved", "0")
    expect(error).to_be_hidden()
    stored = stored_verdicts(agent, board)
    assert stored[uid] == "unsure"
    changed = sorted(str(v) for k, v in stored.items() if v != before[k])
    assert changed == ["real", "unsure"]


def stored_verdicts(agent: AgentServer, img_id: str) -> dict[str, str | None]:
    """The stored verdict of each region of the board, by region_unique_id."""
    headers = {"X-API-Key": agent.api_key or ""}
    with httpx2.Client(base_url=agent.url, timeout=30, headers=headers) as c:
        answer = c.get(f"/api/images/{img_id}/regions").json()
    return {
        str(r["region_unique_id"]): (r.get("review") or {}).get("verdict")
        for g in answer["classes"]
        for r in g["regions"]
    }
