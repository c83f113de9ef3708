"""End-to-end: what a walk through the web UI with real scans found (issue 7 §6), each bug
with the check that would have caught it, and the find / see features: History search by
file name or id, file names on cards, previous/next image, pins on tiny defects, defect
keys, the minimap, TIFF and BMP inputs, phone width.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from PIL import Image as PILImage
from playwright.sync_api import Page, expect

from tests.e2e.conftest import TABLET, RecordedContext, shoot, sign_in, viewer_ready
from tests.support import AgentServer, wait_until
from tests.web.conftest import upload

pytestmark = [pytest.mark.e2e, pytest.mark.deeppcb]

PHONE = {"width": 390, "height": 844}
# The deepest elements that reach past the right edge of the window (what makes it scroll).
WIDER = """[...document.querySelectorAll('body *')].filter((e) => {
  const r = e.getBoundingClientRect();
  return r.right > innerWidth + 0.5 && r.width > 0
    && ![...e.children].some((c) => c.getBoundingClientRect().right > innerWidth + 0.5);
}).slice(0, 5).map((e) => `${e.tagName}.${e.className} right=${e.getBoundingClientRect().right}`)"""


def page_until(page: Page, expression: str, timeout_s: float = 10) -> Any:
    """Poll `expression` in the page until it is truthy (page.wait_for_function would
    evaluate a string with eval, which the agent's Content-Security-Policy refuses)."""
    return wait_until(lambda: page.evaluate(expression), timeout_s=timeout_s)


def converted(source: Path, folder: Path, name: str, fmt: str, crop: tuple[int, ...] = ()) -> Path:
    """`source` saved as `fmt` (optionally cropped to `crop` = left, top, right, bottom)."""
    target = folder / name
    with PILImage.open(source) as img:
        (img.crop(crop) if crop else img).save(target, fmt)
    return target


def test_dashboard_chart_tooltip_appears_on_hover(
    page: Page, agent: AgentServer, inspected: list[dict[str, Any]], screenshot_dir: Path
) -> None:
    """Bug: `Chart.defaults.animation = {duration}` wiped the easing; the first hover threw
    `this._fn is not a function` (a page error, which the browser fixture fails on) and no
    tooltip appeared."""
    page.goto(agent.url + "/dashboard")
    expect(page.locator("body")).to_have_attribute("data-dashboard", "ready")
    bar = page.evaluate(
        """() => {
          const chart = Chart.getChart('chart-classes');
          const el = chart.getDatasetMeta(0).data[0];
          const box = chart.canvas.getBoundingClientRect();
          return {x: box.left + el.x, y: box.top + (el.y + el.base) / 2,
                  label: chart.data.labels[0]};
        }"""
    )
    page.mouse.move(bar["x"] - 40, bar["y"] - 40)
    page.mouse.move(bar["x"], bar["y"], steps=5)
    page_until(page, "Chart.getChart('chart-classes').tooltip.opacity === 1")
    title = page.evaluate("Chart.getChart('chart-classes').tooltip.title")
    assert title == [bar["label"]]
    page.wait_for_timeout(400)  # the hover's colour animation (250 ms)
    heights = page.evaluate(
        "Chart.getChart('chart-classes').getDatasetMeta(0).data.map((e) => e.base - e.y)"
    )
    assert all(h > 0 for h in heights), heights  # the bars are still drawn
    # Not full-page: resizing the viewport for it would redraw the charts from zero.
    page.screenshot(path=screenshot_dir / "20-dashboard-tooltip.png")


def test_history_thumbnails_show_the_whole_board(
    page: Page,
    agent: AgentServer,
    inspected: list[dict[str, Any]],
    deeppcb: list[Path],
    tmp_path: Path,
    screenshot_dir: Path,
) -> None:
    """Bug: `object-fit: cover` in a box of other proportions cut 10-16 % off each side.
    A wide board shows that a thumbnail's box has the image's own proportions."""
    wide = converted(deeppcb[5], tmp_path, "wide-board.png", "PNG", (0, 120, 640, 520))
    upload(agent, wide)
    page.goto(agent.url + "/history")
    thumbs = page.locator(".thumb-card img.thumb")
    expect(thumbs.first).to_be_visible()
    page_until(
        page,
        "[...document.querySelectorAll('img.thumb')].every((i) => i.complete && i.naturalWidth)",
    )
    ratios = page.evaluate(
        """() => [...document.querySelectorAll('img.thumb')].map((i) => ({
            box: i.clientWidth / i.clientHeight, image: i.naturalWidth / i.naturalHeight,
            fit: getComputedStyle(i).objectFit}))"""
    )
    assert any(abs(r["image"] - 1.6) < 0.02 for r in ratios), ratios
    for r in ratios:
        assert r["box"] == pytest.approx(r["image"], rel=0.02), ratios
        assert r["fit"] != "cover"
    shoot(page, screenshot_dir, "21-history-thumbnails")


def test_history_search_file_names_and_previous_next_image(
    page: Page, agent: AgentServer, inspected: list[dict[str, Any]], deeppcb: list[Path]
) -> None:
    page.goto(agent.url + "/history")
    cards = page.locator(".thumb-card")
    expect(cards.first).to_be_visible()
    # Cards name the file the image came from, then its id.
    for answer, image in zip(inspected, deeppcb[:3], strict=True):
        card = page.locator(f".thumb-card[data-img-id='{answer['img_unique_id']}']")
        expect(card.locator(".file-name")).to_have_text(image.name)
        expect(card).to_contain_text(answer["img_unique_id"])

    # Search by the start of a file name (any case), then by an image id.
    target = inspected[1]
    page.fill("#f-q", deeppcb[1].stem.upper())
    page.press("#f-q", "Enter")
    expect(page).to_have_url(re.compile(f"q={deeppcb[1].stem.upper()}"))
    expect(cards).to_have_count(1)
    expect(cards.first).to_have_attribute("data-img-id", target["img_unique_id"])
    page.fill("#f-q", target["img_unique_id"][:15])
    page.press("#f-q", "Enter")
    expect(page.locator(f".thumb-card[data-img-id='{target['img_unique_id']}']")).to_be_visible()
    page.fill("#f-q", "no-such-board")
    page.press("#f-q", "Enter")
    expect(page.locator("#gallery")).to_contain_text("No image matches these filters.")

    # The model version the model service reported filters the gallery (two versions can
    # be compared on the same boards).
    page.fill("#f-q", "")
    page.fill("#f-model", "no-such-version")
    page.press("#f-model", "Enter")
    expect(page).to_have_url(re.compile("model_version=no-such-version"))
    expect(page.locator("#gallery")).to_contain_text("No image matches these filters.")
    version = page.evaluate(
        f"fetch('/api/images/{target['img_unique_id']}').then((r) => r.json())"
        ".then((d) => d.provenance.model_version)"
    )
    assert version, "the reference service reports its version"
    page.fill("#f-model", version)
    page.press("#f-model", "Enter")
    expect(page.locator(f".thumb-card[data-img-id='{target['img_unique_id']}']")).to_be_visible()

    # Previous / next image walk the gallery the History page showed (newest first).
    page.click("#f-reset")
    expect(page).not_to_have_url(re.compile("q="))
    expect(cards.nth(2)).to_be_visible()
    order = [cards.nth(i).get_attribute("data-img-id") for i in range(cards.count())]
    page.click(f".thumb-card[data-img-id='{order[1]}']")
    expect(page.locator(".image-position")).to_contain_text(f"2 of {len(order)}")
    page.click("[data-image-step='1']")
    expect(page).to_have_url(agent.url + f"/results/{order[2]}")
    page.click("[data-image-step='-1']")
    expect(page).to_have_url(agent.url + f"/results/{order[1]}")
    page.click("[data-image-step='-1']")
    expect(page).to_have_url(agent.url + f"/results/{order[0]}")
    expect(page.locator("[data-image-step='-1']")).to_be_disabled()


@pytest.mark.parametrize(("fmt", "suffix"), [("TIFF", "tif"), ("BMP", "bmp")])
def test_tiff_and_bmp_inputs_show_in_the_input_tab(
    page: Page,
    agent: AgentServer,
    deeppcb: list[Path],
    tmp_path: Path,
    screenshot_dir: Path,
    fmt: str,
    suffix: str,
) -> None:
    """Bug: a TIFF input showed a broken image, `NaN%` and "not JSON" in the Input tab
    (browsers cannot show TIFF; the viewer now asks for a PNG rendition)."""
    board = converted(deeppcb[44], tmp_path, f"board-44.{suffix}", fmt)
    page.goto(agent.url + "/")
    page.set_input_files("#file-input", board)
    expect(page.locator("#upload-state")).to_have_attribute("data-state", "done")
    expect(page.locator("[data-tab='input']")).to_have_attribute("aria-selected", "true")
    viewer_ready(page)
    expect(page.locator(".stage-image")).to_have_attribute("src", re.compile("format=png"))
    size = page.evaluate(
        "(() => { const i = document.querySelector('.stage-image');"
        " return [i.naturalWidth, i.naturalHeight]; })()"
    )
    assert size == [640, 640]
    expect(page.locator(".zoom-level")).to_have_text(re.compile(r"^\d+%$"))
    expect(page.locator(".result-view")).not_to_contain_text("not JSON")
    expect(page.locator(".result-view")).not_to_contain_text("NaN")
    shoot(page, screenshot_dir, f"22-{suffix}-input-tab")


@pytest.mark.parametrize("screen", ["tablet", "phone"])
def test_no_page_scrolls_sideways(
    browser: RecordedContext,
    agent: AgentServer,
    inspected: list[dict[str, Any]],
    screenshot_dir: Path,
    screen: str,
) -> None:
    """No page scrolls sideways on a tablet in portrait or on a 390 px phone (bug: the
    viewer did on the phone)."""
    size = {"tablet": TABLET, "phone": PHONE}[screen]
    page = browser.new_page()
    page.set_viewport_size(size)
    page.goto(agent.url + "/signin")
    overflow = page.evaluate("document.documentElement.scrollWidth - innerWidth")
    assert overflow <= 0, f"the sign-in page scrolls sideways by {overflow} px"
    sign_in(page, agent)
    paths = {
        "upload": "/",
        "batch": "/batch",
        "history": "/history",
        "history-failed": "/history?status=failed",
        "viewer": f"/results/{inspected[0]['img_unique_id']}",
        "dashboard": "/dashboard",
    }
    for name, path in paths.items():
        page.goto(agent.url + path)
        page.wait_for_load_state("networkidle")
        overflow = page.evaluate("document.documentElement.scrollWidth - innerWidth")
        shoot(page, screenshot_dir, f"23-{screen}-{name}")
        assert overflow <= 0, (
            f"{name} scrolls sideways on a {screen} ({size['width']} px) by {overflow} px:"
            f" {page.evaluate(WIDER)}"
        )


def test_viewer_pins_defect_keys_and_minimap(
    page: Page, agent: AgentServer, inspected: list[dict[str, Any]], screenshot_dir: Path
) -> None:
    answer = max(inspected, key=lambda a: a["total_defects"])
    total = answer["total_defects"]
    page.goto(agent.url + f"/results/{answer['img_unique_id']}")
    viewer_ready(page)
    # At the fitted size a ~9 px DeepPCB defect is under 12 screen pixels: it has a pin.
    page_until(
        page,
        """(() => {
          const v = window.aoiViewer.view;
          const tiny = v.rows.filter((r) => Math.max(r.bounding_box.width,
            r.bounding_box.height) * v.zoom.scale < 12).length;
          return tiny > 0 && v.zoom.scale === v.zoom.fit
            && document.querySelectorAll('.region-pin:not([hidden])').length === tiny;
        })()""",
    )
    shoot(page, screenshot_dir, "24-viewer-pins")

    # `]` and `[` step through the defects, zoomed to and highlighted.
    position = page.locator(".defect-position")
    expect(position).to_have_text(f"– / {total}")
    page.keyboard.press("]")
    expect(position).to_have_text(f"1 / {total}")
    first = page.evaluate("window.aoiViewer.regions[0].key")
    expect(page.locator(f".region-box[data-key='{first}']")).to_have_class(re.compile("selected"))
    expect(page.locator(f".region-row[data-key='{first}']")).to_have_class(re.compile("selected"))
    box = page.locator(f".region-box[data-key='{first}']").bounding_box()
    assert box
    assert max(box["width"], box["height"]) >= 40  # zoomed to be seen
    page.keyboard.press(".")
    expect(position).to_have_text(f"2 / {total}")
    page.keyboard.press("[")
    expect(position).to_have_text(f"1 / {total}")
    page.keyboard.press(",")
    expect(position).to_have_text(f"{total} / {total}")  # wraps round
    page.evaluate("window.aoiViewer.selectRegion(0)")
    expect(position).to_have_text(f"1 / {total}")

    # Zoomed in: a minimap with a frame around the part on screen; hidden at the fit.
    minimap = page.locator(".minimap")
    expect(minimap).to_be_visible()
    frame = page.locator(".minimap-view").bounding_box()
    whole = minimap.bounding_box()
    assert frame
    assert whole
    assert frame["width"] < whole["width"]
    shoot(page, screenshot_dir, "25-viewer-zoomed-minimap")
    page.click("[data-zoom='fit']")
    expect(minimap).to_be_hidden()


def test_viewer_tabs_follow_the_arrow_keys(
    page: Page, agent: AgentServer, inspected: list[dict[str, Any]]
) -> None:
    page.goto(agent.url + f"/results/{inspected[0]['img_unique_id']}")
    viewer_ready(page)
    page.focus("[data-tab='input']")
    page.keyboard.press("ArrowRight")
    combined = page.locator("[data-tab='combined']")
    expect(combined).to_have_attribute("aria-selected", "true")
    expect(combined).to_be_focused()
    expect(page.locator(".stage-image")).to_have_attribute("src", re.compile("/combined"))
    page.keyboard.press("End")
    expect(page.locator("[data-tab='overlay']")).to_be_focused()
    page.keyboard.press("ArrowRight")  # wraps round
    expect(page.locator("[data-tab='input']")).to_have_attribute("aria-selected", "true")
    expect(page.locator("[role='tabpanel']")).to_have_attribute(
        "aria-labelledby", page.locator("[data-tab='input']").get_attribute("id") or ""
    )
    # Only the selected tab is in the Tab order.
    tabindexes = page.evaluate(
        "[...document.querySelectorAll('[role=tab]')].map((t) => t.tabIndex)"
    )
    assert sorted(tabindexes) == [-1, -1, -1, 0]


def test_batch_drop_zone_works_from_the_keyboard(
    page: Page, agent: AgentServer, deeppcb: list[Path], screenshot_dir: Path
) -> None:
    """Bug: the Batch drop zone ignored Enter and hid its focus ring."""
    page.goto(agent.url + "/batch")
    zone = page.locator("#drop-zone")
    for _ in range(30):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "drop-zone":
            break
    expect(zone).to_be_focused()
    ring = page.evaluate(
        "(() => { const s = getComputedStyle(document.getElementById('drop-zone'));"
        " return [s.outlineStyle, parseFloat(s.outlineWidth)]; })()"
    )
    assert ring[0] != "none", ring
    assert ring[1] >= 2, ring
    shoot(page, screenshot_dir, "26-batch-drop-zone-focus")
    # What the page does on Enter/Space is open its file input (`input.click()`); whether
    # headless Chromium then raises its chooser depends on the browser (after some other
    # pages in the same run it does not), so the test counts the input's activations and
    # gives the files to that input.
    page.evaluate(
        "window.__opened = 0; document.getElementById('files-input')"
        ".addEventListener('click', () => { window.__opened += 1; })"
    )
    page.keyboard.press("Enter")
    page_until(page, "window.__opened === 1")
    page.set_input_files("#files-input", deeppcb[50:52])
    expect(page.locator("tr.queue-row")).to_have_count(2)
    zone.focus()
    page.keyboard.press("Space")
    page_until(page, "window.__opened === 2")
    page.set_input_files("#files-input", deeppcb[52])
    expect(page.locator("tr.queue-row")).to_have_count(3)
