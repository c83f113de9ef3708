"""Review mode has one current defect: whatever moves the highlight (J/K, `[`/`]`, a click
on a box, on a Regions-table row or on a chip, the queue's class filter), the verdict key
stores its verdict on the region the screen highlights, and on no other. Real DeepPCB
boards are inspected through the agent and the reference model service; every stored
verdict is read back through the API and compared with the highlighted region in the DOM.

Also the keys around it (zoom in review mode, H, ?, Escape in the comment, N asking once),
the marker's screen geometry at 400 % zoom, and axe-core on the review states."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx2
import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import shoot
from tests.e2e.test_accessibility import axe_source, violations
from tests.support import AgentServer
from tests.web.conftest import upload

__all__ = ["axe_source"]

pytestmark = [pytest.mark.e2e, pytest.mark.deeppcb]

# DeepPCB test boards on which the reference service finds ten defects of several classes.
BOARDS = (25, 27)
BLOCKING = ("critical", "serious", "moderate")


def regions(agent: AgentServer, img_id: str) -> dict[str, dict[str, Any]]:
    """The image's regions by viewer key ("class:region_id"), as the API answers them now
    (each with `region_unique_id` and its `review`)."""
    headers = {"X-API-Key": agent.api_key or ""}
    with httpx2.Client(base_url=agent.url, timeout=30, headers=headers) as c:
        answer = c.get(f"/api/images/{img_id}/regions")
    assert answer.status_code == 200, answer.text
    return {
        f"{group['class_name']}:{r['region_id']}": r
        for group in answer.json()["classes"]
        for r in group["regions"]
    }


def verdicts(agent: AgentServer, img_id: str) -> dict[str, str | None]:
    return {k: (r.get("review") or {}).get("verdict") for k, r in regions(agent, img_id).items()}


@pytest.fixture(scope="module")
def boards(agent: AgentServer, deeppcb: list[Path]) -> list[str]:
    """Two boards, inspected through the agent (ten defects each, several classes)."""
    return [upload(agent, deeppcb[i])["img_unique_id"] for i in BOARDS]


def highlighted(page: Page) -> str:
    """The key of the region the screen highlights, after checking that the box, the pin,
    the table row, the toolbar and the review panel all highlight the same one."""
    box = page.locator(".region-box.selected")
    expect(box).to_have_count(1)
    key = box.get_attribute("data-key") or ""
    expect(page.locator(".region-row.selected")).to_have_attribute("data-key", key)
    expect(page.locator(".region-pin.selected")).to_have_attribute("data-key", key)
    number = page.locator(".region-pin.selected").text_content() or ""
    total = page.locator(".region-box").count()
    expect(page.locator(".defect-position")).to_have_text(f"{number} / {total}")
    expect(page.locator(".review-current strong")).to_have_text(number)
    cls, region_id = key.split(":")
    expect(page.locator(".review-current")).to_contain_text(f"{cls} #{region_id}")
    expect(page.locator(".review-chip.current")).to_have_text(number)
    return key


def give(page: Page, agent: AgentServer, img_id: str, key: str, verdict: str) -> str:
    """Press `key` (R, F or U) and return the region whose stored verdict changed, after
    checking that exactly one did and that it is the one highlighted when it was pressed."""
    before = verdicts(agent, img_id)
    target = highlighted(page)
    uid = regions(agent, img_id)[target]["region_unique_id"]
    page.keyboard.press(key)
    expect(page.locator(f".review-chip[data-region-unique-id='{uid}']")).to_have_attribute(
        "data-verdict", verdict
    )
    saved(page)
    after = verdicts(agent, img_id)
    changed = [k for k in after if after[k] != before[k]]
    assert changed == [target], f"verdict {verdict} landed on {changed}, highlighted {target}"
    return target


def saved(page: Page) -> None:
    """Wait until every verdict given is stored (they show at once and are saved in the
    background, in order)."""
    expect(page.locator("body")).to_have_attribute("data-review-unsaved", "0")


def open_review(page: Page, agent: AgentServer, img_id: str, query: str = "") -> None:
    page.goto(f"{agent.url}/results/{img_id}?review=1{query}")
    expect(page.locator(".review-panel .review-current")).to_contain_text("Defect")
    expect(page.locator(".result-view .stage-loading")).to_be_hidden()


def test_every_way_of_moving_puts_the_verdict_on_the_highlighted_region(
    page: Page, agent: AgentServer, boards: list[str], screenshot_dir: Path
) -> None:
    img_id = boards[0]
    open_review(page, agent, img_id)
    keys = page.evaluate("window.aoiViewer.regions.map((r) => r.key)")
    assert len(keys) >= 6
    # The panel, the toolbar and the pins number the defects alike (the model's order).
    assert highlighted(page) == keys[0]
    expect(page.locator(".region-pin").nth(2)).to_have_text("3")

    # J / K.
    page.keyboard.press("j")
    page.keyboard.press("j")
    page.keyboard.press("k")
    assert highlighted(page) == keys[1]
    give(page, agent, img_id, "u", "unsure")

    # `]` / `[` (the viewer's keys) move the same selection (bug: the panel kept its own).
    page.keyboard.press("]")
    page.keyboard.press("]")
    page.keyboard.press("[")
    target = give(page, agent, img_id, "f", "false_call")
    assert target == keys[3]  # the verdict on keys[1] had moved the selection on to keys[2]

    # A click on a box (at the fitted size, every box is on screen).
    page.keyboard.press("0")
    box = page.locator(f".region-box[data-key='{keys[5]}']")
    box.click(force=True)
    assert highlighted(page) == keys[5]
    give(page, agent, img_id, "r", "real")

    # A click on a row of the Regions table (sorted by area: not the defect order).
    page.locator(".regions-table th[data-sort='area_pixels'] .sort-btn").click()
    current = highlighted(page)
    row = page.locator(f".region-row:not([data-key='{current}'])").first
    row_key = row.get_attribute("data-key") or ""
    row.click()
    assert highlighted(page) == row_key
    give(page, agent, img_id, "u", "unsure")

    # A click on a chip of the panel.
    page.locator(".review-chip").nth(0).click()
    assert highlighted(page) == keys[0]
    give(page, agent, img_id, "f", "false_call")

    # A verdict key pressed just before a move: the verdict stays on the defect highlighted
    # when the key went down, however fast the next key follows.
    target = highlighted(page)
    before = verdicts(agent, img_id)
    assert before[target] is None  # the false call moved on to a defect without a verdict
    page.keyboard.press("r")
    page.keyboard.press("]")
    page.keyboard.press("]")
    uid = regions(agent, img_id)[target]["region_unique_id"]
    expect(page.locator(f".review-chip[data-region-unique-id='{uid}']")).to_have_attribute(
        "data-verdict", "real"
    )
    saved(page)
    after = verdicts(agent, img_id)
    assert [k for k in after if after[k] != before[k]] == [target]
    assert highlighted(page) != target
    shoot(page, screenshot_dir, "review-selection")


def test_the_class_filter_steps_through_its_class_only(
    page: Page, agent: AgentServer, boards: list[str]
) -> None:
    img_id = boards[1]
    found = regions(agent, img_id)
    by_class: dict[str, list[str]] = {}
    for key in found:
        by_class.setdefault(key.split(":")[0], []).append(key)
    chosen = max(by_class, key=lambda c: len(by_class[c]))
    assert len(by_class[chosen]) >= 2
    assert len(by_class) >= 2, "the board needs another class to skip"
    open_review(page, agent, img_id, f"&class_name={chosen}")
    expect(page.locator(".board-progress")).to_contain_text(
        f"0 of {len(by_class[chosen])} {chosen} defects reviewed"
    )
    seen = []
    for move in ["j"] * len(by_class[chosen]) + ["]", "k", "["]:
        key = highlighted(page)
        assert key.startswith(f"{chosen}:"), f"{move} stepped onto {key}"
        seen.append(key)
        page.keyboard.press(move)
    assert set(seen) == set(by_class[chosen])
    target = give(page, agent, img_id, "u", "unsure")
    assert target.startswith(f"{chosen}:")
    # Every verdict stored so far is on the chosen class.
    stored = {k for k, v in verdicts(agent, img_id).items() if v}
    assert stored == {target}


def test_review_keys_zoom_hide_help_comment_and_leaving(
    page: Page, agent: AgentServer, boards: list[str]
) -> None:
    img_id = boards[1]
    open_review(page, agent, img_id)
    level = page.locator(".zoom-level")

    def percent() -> int:
        return int(level.inner_text().rstrip("%"))

    zoomed = percent()
    assert zoomed > 100  # review mode zooms to the defect
    page.keyboard.press("-")
    expect(level).not_to_have_text(f"{zoomed}%")
    assert percent() < zoomed
    page.keyboard.press("0")
    expect(level).to_have_text("100%")
    page.keyboard.press("+")
    expect(level).to_have_text("150%")

    # H hides every box and pin, and shows them again.
    page.keyboard.press("h")
    expect(page.locator(".stage-boxes")).to_be_hidden()
    expect(page.locator("[data-toggle-boxes]")).not_to_be_checked()
    page.keyboard.press("h")
    expect(page.locator(".region-box.selected")).to_be_visible()

    # ? shows the key map; verdict keys do nothing while it is open; Escape closes it.
    page.keyboard.press("?")
    keymap = page.locator(".review-keymap")
    expect(keymap).to_be_visible()
    expect(keymap).to_contain_text("hide or show every box")
    before = verdicts(agent, img_id)
    page.keyboard.press("r")
    page.keyboard.press("Escape")
    expect(keymap).to_be_hidden()
    assert verdicts(agent, img_id) == before

    # Escape in the comment field drops the comment: the next verdict goes without it.
    page.keyboard.press("c")
    page.keyboard.type("this must not be stored")
    page.keyboard.press("Escape")
    expect(page.locator("#review-comment")).to_have_value("")
    key = give(page, agent, img_id, "f", "false_call")
    assert (regions(agent, img_id)[key]["review"] or {}).get("comment") is None

    # N on a half-reviewed board asks once; the second N leaves it.
    page.keyboard.press("n")
    expect(page.locator(".review-status")).to_contain_text("no verdict yet")
    expect(page.locator(".review-status")).to_contain_text("N again")
    assert img_id in page.url
    page.keyboard.press("n")
    page.wait_for_url(lambda url: img_id not in url and "review=1" in url)


def test_the_marker_leaves_a_small_defect_visible_at_400_percent(
    page: Page, agent: AgentServer, boards: list[str], screenshot_dir: Path
) -> None:
    """At 400 % the selected box's outline is thin (a few screen pixels, as at 100 %), lies
    outside the region's box, and nothing (fill, glow) covers the defect."""
    img_id = boards[0]
    open_review(page, agent, img_id)
    found = regions(agent, img_id)
    smallest = min(found, key=lambda k: found[k]["area_pixels"])
    page.locator(
        f".review-chip[data-region-unique-id='{found[smallest]['region_unique_id']}']"
    ).click()
    assert highlighted(page) == smallest
    # 400 % of the fitted size, the defect in the middle of the viewport.
    page.evaluate(
        """(() => { const v = window.aoiViewer.view; const b = v.selection.current.bounding_box;
          v.zoom.scale = 4 * v.zoom.fit;
          v.zoom.tx = v.viewport.clientWidth / 2 - (b.x + b.width / 2) * v.zoom.scale;
          v.zoom.ty = v.viewport.clientHeight / 2 - (b.y + b.height / 2) * v.zoom.scale;
          v.applyTransform(); })()"""
    )
    expect(page.locator(".zoom-level")).to_have_text("400%")
    geometry = page.evaluate(
        """(() => {
          const v = window.aoiViewer.view;
          const b = v.selection.current.bounding_box;
          const rect = document.querySelector('.region-box.selected');
          const s = getComputedStyle(rect);
          const {scale, tx, ty} = v.zoom;
          return {
            stroke: parseFloat(rect.getAttribute('stroke-width')),
            fill: rect.getAttribute('fill'), filter: s.filter,
            x: +rect.getAttribute('x'), y: +rect.getAttribute('y'),
            w: +rect.getAttribute('width'), h: +rect.getAttribute('height'),
            bx: tx + b.x * scale, by: ty + b.y * scale, bw: b.width * scale, bh: b.height * scale,
          };
        })()"""
    )
    assert geometry["stroke"] <= 3
    assert geometry["fill"] == "none"
    assert geometry["filter"] == "none"
    half = geometry["stroke"] / 2
    # The stroke's inner edge is outside the region's box on every side.
    assert geometry["x"] + half <= geometry["bx"]
    assert geometry["y"] + half <= geometry["by"]
    assert geometry["x"] + geometry["w"] - half >= geometry["bx"] + geometry["bw"]
    assert geometry["y"] + geometry["h"] - half >= geometry["by"] + geometry["bh"]
    page.locator(".stage-viewport").screenshot(path=screenshot_dir / "review-marker-400.png")


def test_axe_finds_nothing_on_the_review_states(
    page: Page, agent: AgentServer, boards: list[str], axe_source: str
) -> None:
    found: dict[str, list[str]] = {}
    # Bootstrap drops its colour transitions under reduced motion: axe then measures the
    # buttons' final colours, not a fade caught half-way (as test_accessibility does).
    page.emulate_media(reduced_motion="reduce")
    open_review(page, agent, boards[0])
    found["review"] = violations(page, axe_source, BLOCKING)
    page.keyboard.press("?")
    expect(page.locator(".review-keymap")).to_be_visible()
    found["review, key map"] = violations(page, axe_source, BLOCKING)
    page.keyboard.press("Escape")
    page.keyboard.press("n")
    expect(page.locator(".review-status")).to_contain_text("N again")
    found["review, leaving asked"] = violations(page, axe_source, BLOCKING)
    cls = page.evaluate("window.aoiViewer.regions[0].class_name")
    open_review(page, agent, boards[0], f"&class_name={cls}")
    found["review, class filter"] = violations(page, axe_source, BLOCKING)
    page.goto(f"{agent.url}/review")
    expect(page.locator(".queue-progress")).to_be_visible()
    found["review queue"] = violations(page, axe_source, BLOCKING)
    blocking = {state: v for state, v in found.items() if v}
    assert blocking == {}, "\n".join(f"{s}: {v}" for s, v in blocking.items())


def test_the_queue_filters_are_pickers(
    page: Page, agent: AgentServer, boards: list[str], deeppcb: list[Path]
) -> None:
    """The class and batch fields offer what there is (no free text that silently finds
    nothing, e.g. "pinhole" for pin_hole, or a mistyped batch id)."""
    image = deeppcb[40]
    with httpx2.Client(
        base_url=agent.url, timeout=120, headers={"X-API-Key": agent.api_key or ""}
    ) as c:
        answer = c.post(
            "/api/upload/batch",
            params={"wait": "true"},
            files=[("images", (image.name, image.read_bytes()))],
        )
    assert answer.status_code == 200, answer.text
    batch_id = answer.json()["batch_id"]
    page.goto(f"{agent.url}/review")
    picker = page.locator("#r-class")
    expect(picker).to_have_js_property("tagName", "SELECT")
    expect(picker.locator("option[value='pin_hole']")).to_have_count(1)
    assert "pinhole" not in picker.locator("option").all_inner_texts()
    batches = page.locator("#r-batch")
    expect(batches).to_have_js_property("tagName", "SELECT")
    expect(batches.locator(f"option[value='{batch_id}']")).to_contain_text("1 image")
    batches.select_option(batch_id)
    page.locator("#review-filters button[type=submit]").click()
    expect(page.locator(".queue-progress")).to_have_text("0 of 1 images reviewed")
    cls = next(iter(regions(agent, boards[0]))).split(":")[0]
    picker.select_option(cls)
    batches.select_option("")
    page.locator("#review-filters button[type=submit]").click()
    expect(page.locator(".queue-progress")).to_have_text(re.compile(r"\d+ of \d+ images reviewed"))
