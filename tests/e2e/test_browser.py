"""End-to-end: Debian's Chromium, headless, drives every page of the web UI against the
agent and the reference model service over real HTTP, with DeepPCB images.

Screenshots of each page go to $AOI_SCREENSHOT_DIR (default test-artifacts/screenshots).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx2
import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import shoot
from tests.support import AgentServer, db_rows

pytestmark = [pytest.mark.e2e, pytest.mark.deeppcb]

# Records every status a batch row shows, so the test sees the live changes, not only the end.
WATCH_ROWS = """() => {
  window.__rowStates = {};
  const record = (tr) => {
    const key = tr.querySelector('.filename')?.textContent;
    if (!key || !tr.dataset.state) return;
    const seen = (window.__rowStates[key] ||= []);
    if (seen[seen.length - 1] !== tr.dataset.state) seen.push(tr.dataset.state);
  };
  new MutationObserver((mutations) => {
    for (const m of mutations) {
      const tr = m.target.closest ? m.target.closest('tr.queue-row') : null;
      if (tr) record(tr);
      m.addedNodes.forEach((n) => n.matches && n.matches('tr.queue-row') && record(n));
    }
  }).observe(document.querySelector('#queue tbody'),
             {subtree: true, childList: true, attributes: true, attributeFilter: ['data-state']});
}"""


def regions_of(database_url: str, img_unique_id: str) -> dict[str, int]:
    rows = db_rows(
        database_url,
        "SELECT class_name, total_regions FROM classes WHERE img_unique_id = %s",
        img_unique_id,
    )
    return {name: int(n) for name, n in rows}


def test_upload_one_image_and_see_its_result(
    page: Page, agent: AgentServer, deeppcb: list[Path], database_url: str, screenshot_dir: Path
) -> None:
    page.goto(agent.url + "/")
    # The client-side check refuses a file that is not an image, with a readable message.
    page.set_input_files(
        "#file-input", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"hi"}]
    )
    expect(page.locator("#upload-error .alert")).to_contain_text(
        '"notes.txt" is not a JPEG, PNG, TIFF or BMP image'
    )

    image = deeppcb[10]
    page.set_input_files("#file-input", image)
    expect(page.locator("#upload-state")).to_have_attribute("data-state", "done")
    expect(page.locator("#upload-progress")).to_have_attribute("aria-valuenow", "100")
    view = page.locator(".result-view")
    expect(view).to_be_visible()
    img_id = view.get_attribute("data-img-id")
    assert img_id
    classes = regions_of(database_url, img_id)
    total = sum(classes.values())
    expect(view.locator(".total-defects")).to_have_text(f"{total} defect{'s' * (total != 1)}")
    expect(view.locator(".region-box")).to_have_count(total)
    expect(view.locator(".regions-table tbody tr.region-row")).to_have_count(total)
    for name, count in classes.items():
        expect(view.locator(f".result-summary .class-badge[data-class='{name}']")).to_have_text(
            f"{name}: {count}"
        )
    for kind in ("input", "combined", "mask", "overlay", "json"):
        href = view.locator(f"[data-download='{kind}']").get_attribute("href")
        assert href
        assert page.request.get(agent.url + href).status == 200
    expect(page.locator(".stage-loading")).to_be_hidden()
    shoot(page, screenshot_dir, "01-upload-result")


def test_batch_of_five_shows_live_progress_to_the_end(
    page: Page, agent: AgentServer, deeppcb: list[Path], database_url: str, screenshot_dir: Path
) -> None:
    images = deeppcb[20:25]
    page.goto(agent.url + "/batch")
    page.set_input_files("#files-input", images)
    expect(page.locator("tr.queue-row")).to_have_count(5)
    expect(page.locator("#start-batch")).to_have_text("Start batch (5 images)")
    page.evaluate(WATCH_ROWS)
    page.click("#start-batch")
    expect(page.locator("#summary")).to_have_attribute("data-done", "true", timeout=120_000)
    shoot(page, screenshot_dir, "02-batch-finished")

    expect(page.locator("tr.queue-row[data-state='done']")).to_have_count(5)
    expect(page.locator(".count-succeeded")).to_have_text("5")
    expect(page.locator(".count-failed")).to_have_text("0")
    seen: dict[str, list[str]] = page.evaluate("window.__rowStates")
    assert set(seen) == {i.name for i in images}
    for name, states in seen.items():
        assert states[-1] == "done", (name, states)
        assert "uploading" in states, (name, states)
        # Between upload and done the row showed where it was in the agent's queue.
        assert {"queued", "running"} & set(states), (name, states)

    batch_id = re.search(r"batch=([^&]+)", page.url)
    assert batch_id, page.url
    (total_defects,) = db_rows(
        database_url,
        "SELECT coalesce(sum(c.total_regions), 0) FROM classes c"
        " JOIN inspections i USING (img_unique_id) WHERE i.batch_id = %s",
        batch_id.group(1),
    )[0]
    expect(page.locator("#summary-classes")).to_contain_text(f"{total_defects} defects by class")
    zip_href = page.locator(".zip-btn").get_attribute("href")
    assert zip_href == f"/api/download/batch/{batch_id.group(1)}"
    response = page.request.get(agent.url + zip_href)
    assert response.status == 200
    assert response.body()[:2] == b"PK"
    # One click exports the batch's regions as CSV (the signed-in session is enough).
    with page.expect_download() as csv_download:
        page.click(".export-csv-btn")
    lines = Path(csv_download.value.path()).read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("region_unique_id,img_unique_id,original_filename,")
    assert len(lines) - 1 == total_defects
    coco_href = page.locator(".export-coco-btn").get_attribute("href")
    assert coco_href == f"/api/export/coco.json?batch_id={batch_id.group(1)}"

    # Leaving and coming back shows the batch as it stands.
    page.goto(agent.url + "/history")
    page.go_back()
    expect(page.locator("tr.queue-row[data-state='done']")).to_have_count(5)
    expect(page.locator("#summary")).to_have_attribute("data-done", "true")


def test_history_filters_by_class(
    page: Page,
    agent: AgentServer,
    inspected: list[dict[str, Any]],
    database_url: str,
    screenshot_dir: Path,
) -> None:
    page.goto(agent.url + "/history")
    expect(page.locator(".thumb-card").first).to_be_visible()
    (images,) = db_rows(database_url, "SELECT count(*) FROM images")[0]
    expect(page.locator("#history-total")).to_contain_text(f"{images} image")
    shoot(page, screenshot_dir, "03-history")

    # The class found in the fewest images makes the filter visibly narrow the gallery.
    name, with_class = db_rows(
        database_url,
        "SELECT class_name, count(DISTINCT img_unique_id) FROM classes"
        " GROUP BY class_name ORDER BY 2, 1 LIMIT 1",
    )[0]
    page.select_option("#f-class", name)
    expect(page).to_have_url(re.compile(f"class_name={name}"))
    expect(page.locator("#history-total")).to_contain_text(f"{with_class} image")
    cards = page.locator(".thumb-card")
    expect(cards).to_have_count(min(with_class, 24))
    for i in range(cards.count()):
        expect(cards.nth(i).locator(f".class-badge[data-class='{name}']")).to_be_visible()
    # Thumbnails are the small server-side JPEGs, never the full image.
    src = cards.first.locator("img").get_attribute("src")
    assert src
    assert "/thumbnail?size=256" in src
    shoot(page, screenshot_dir, "04-history-filtered")
    # The COCO export takes the same filters: one category, the class's regions.
    with page.expect_download() as coco_download:
        page.click("#export-coco")
    coco = json.loads(Path(coco_download.value.path()).read_text(encoding="utf-8"))
    assert [c["name"] for c in coco["categories"]] == [name]
    (regions,) = db_rows(
        database_url, "SELECT sum(total_regions) FROM classes WHERE class_name = %s", name
    )[0]
    assert len(coco["annotations"]) == regions

    page.select_option("#f-class", "")
    expect(page.locator("#history-total")).to_contain_text(f"{images} image")


def test_viewer_hover_click_zoom_and_toggle(
    page: Page,
    agent: AgentServer,
    inspected: list[dict[str, Any]],
    database_url: str,
    screenshot_dir: Path,
) -> None:
    answer = max(inspected, key=lambda a: a["total_defects"])
    page.goto(agent.url + "/history")
    page.click(f".thumb-card[data-img-id='{answer['img_unique_id']}']")
    expect(page).to_have_url(agent.url + f"/results/{answer['img_unique_id']}")
    # The viewer names the model that produced the result (provenance).
    expect(page.locator(".model-line")).to_contain_text("Model: reference-classical")
    boxes = page.locator(".region-box")
    expect(boxes).to_have_count(answer["total_defects"])
    expect(page.locator(".stage-loading")).to_be_hidden()

    box = boxes.first
    name = box.get_attribute("data-class")
    box.hover(force=True)
    tooltip = page.locator(".region-tooltip")
    expect(tooltip).to_be_visible()
    expect(tooltip).to_contain_text(f"{name} #")
    expect(tooltip).to_contain_text("Circularity")
    shoot(page, screenshot_dir, "05-viewer-hover")

    # Sorting by area puts the largest region first when clicked twice.
    header = page.locator(".regions-table th[data-sort='area_pixels']")
    header.click()
    header.click()
    expect(header).to_have_attribute("aria-sort", "descending")
    areas = [
        int(a) for a in page.locator(".regions-table tbody tr td:nth-child(3)").all_inner_texts()
    ]
    assert areas == sorted(areas, reverse=True)

    row = page.locator(".region-row").nth(1)
    key = row.get_attribute("data-key")
    zoom_before = page.locator(".zoom-level").inner_text()
    row.click()
    expect(row).to_have_class(re.compile(r"\bselected\b"))
    expect(page.locator(f".region-box[data-key='{key}']")).to_have_class(re.compile("selected"))
    assert page.locator(".zoom-level").inner_text() != zoom_before
    shoot(page, screenshot_dir, "06-viewer-row-selected")

    # A class toggle hides that class's boxes; tabs switch the image under the boxes.
    page.locator(f"label.class-toggle[data-class='{name}']").click()
    for i in range(boxes.count()):
        if boxes.nth(i).get_attribute("data-class") == name:
            expect(boxes.nth(i)).to_be_hidden()
    page.click("[data-tab='mask']")
    expect(page.locator(".stage-image")).to_have_attribute("src", re.compile("/mask\\?inline"))
    expect(page.locator(".stage-loading")).to_be_hidden()
    page.click("[data-zoom='fit']")
    shoot(page, screenshot_dir, "07-viewer-mask")


def test_viewer_deletes_after_confirmation(
    page: Page, agent: AgentServer, deeppcb: list[Path], database_url: str
) -> None:
    from tests.web.conftest import upload

    img_id = upload(agent, deeppcb[40])["img_unique_id"]
    page.goto(agent.url + f"/results/{img_id}")
    page.click(".delete-btn")
    dialog = page.locator(".modal.show")
    expect(dialog).to_contain_text(img_id)
    dialog.locator(".confirm-delete").click()
    expect(page.locator("#viewer .alert-success")).to_contain_text(f"{img_id} was deleted")
    assert db_rows(database_url, "SELECT 1 FROM images WHERE img_unique_id = %s", img_id) == []
    # A deleted or unknown id shows the API's message, not raw JSON.
    page.goto(agent.url + f"/results/{img_id}")
    expect(page.locator("#viewer .alert-danger")).to_contain_text(
        f"Not found: no inspection result with id {img_id}"
    )


def test_dashboard_charts_render_with_data(
    page: Page,
    agent: AgentServer,
    inspected: list[dict[str, Any]],
    database_url: str,
    screenshot_dir: Path,
) -> None:
    page.goto(agent.url + "/dashboard")
    expect(page.locator("body")).to_have_attribute("data-dashboard", "ready")
    (images,) = db_rows(database_url, "SELECT count(*) FROM images")[0]
    (regions,) = db_rows(database_url, "SELECT count(*) FROM regions")[0]
    expect(page.locator("[data-stat='Images']")).to_have_text(str(images))
    expect(page.locator("[data-stat='Defect regions']")).to_have_text(str(regions))

    bars = page.evaluate("Chart.getChart('chart-classes').data.datasets[0].data")
    assert sum(bars) == regions
    pareto = page.evaluate("Chart.getChart('chart-pareto').data.datasets[1].data")
    assert pareto[-1] == 100
    per_day = page.evaluate(
        "Chart.getChart('chart-days').data.datasets.find((d) => d.label === 'All defects').data"
    )
    assert per_day[-1] == regions
    assert sum(per_day) == regions
    expect(page.locator("#heatmap")).to_have_attribute("data-total-regions", str(regions))
    coloured = page.evaluate(
        """() => {
          const c = document.getElementById('heatmap');
          const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
          let n = 0;
          for (let i = 0; i < d.length; i += 4) if (d[i + 2] < 200) n += 1;
          return n;
        }"""
    )
    assert coloured > 0, "the heat map has no coloured cell"
    shoot(page, screenshot_dir, "08-dashboard")

    name = inspected[0]["result"]["classes"] and next(iter(inspected[0]["defect_classes"]))
    page.select_option("#heat-class", name)
    (of_class,) = db_rows(
        database_url,
        "SELECT count(*) FROM regions r JOIN classes c USING (class_unique_id)"
        " WHERE c.class_name = %s",
        name,
    )[0]
    expect(page.locator("#heatmap")).to_have_attribute("data-total-regions", str(of_class))

    # A model version no inspection names empties every figure; the reported one keeps them.
    page.fill("#d-model", "no-such-version")
    page.click("#range button[type=submit]")
    expect(page.locator("[data-stat='Defect regions']")).to_have_text("0")
    (version,) = db_rows(database_url, "SELECT max(model_version) FROM inspections")[0]
    assert version, "the reference service reports its version"
    page.fill("#d-model", version)
    page.click("#range button[type=submit]")
    expect(page.locator("[data-stat='Defect regions']")).to_have_text(str(regions))


def test_history_filters_and_badges_by_review_state(
    page: Page, agent: AgentServer, inspected: list[dict[str, Any]], screenshot_dir: Path
) -> None:
    """A board with one false call out of several defects, dispositioned `repair`: History's
    Review filter finds it, its card says "1/N reviewed", "1 false call" and "repair",
    and the export links carry the filter. The verdicts are withdrawn at the end."""
    board = max(inspected, key=lambda a: a["total_defects"])
    img_id = board["img_unique_id"]
    headers = {"X-API-Key": agent.api_key or "", "X-Reviewer": "e2e"}
    with httpx2.Client(base_url=agent.url, timeout=60, headers=headers) as c:
        regions = c.get(f"/api/images/{img_id}/regions").json()
        region = regions["classes"][0]["regions"][0]["region_unique_id"]
        n = regions["total_regions"]
        assert n >= 2
        put = c.put(f"/api/regions/{region}/verdict", json={"verdict": "false_call"})
        assert put.status_code == 200, put.text
        put = c.put(f"/api/images/{img_id}/disposition", json={"disposition": "repair"})
        assert put.status_code == 200, put.text
        try:
            page.goto(agent.url + "/history")
            expect(page.locator(".thumb-card").first).to_be_visible()
            page.select_option("#f-review", "has_false_calls")
            expect(page).to_have_url(re.compile("review_state=has_false_calls"))
            expect(page.locator("#history-total")).to_contain_text("1 image")
            card = page.locator(f'.thumb-card[data-img-id="{img_id}"]')
            expect(card.locator(".review-badge")).to_have_text(f"1/{n} reviewed")
            expect(card.locator(".false-call-badge")).to_have_text("1 false call")
            expect(card.locator(".disposition-badge")).to_have_text("repair")
            href = page.locator("#export-csv").get_attribute("href") or ""
            assert "review_state=has_false_calls" in href
            shoot(page, screenshot_dir, "history-review-badges")
            page.select_option("#f-review", "reviewed")
            expect(page.locator("#history-total")).to_contain_text("0 images")
            page.select_option("#f-review", "")
            page.select_option("#f-disposition", "repair")
            expect(page).to_have_url(re.compile("disposition=repair"))
            expect(page.locator(".thumb-card")).to_have_count(1)
        finally:
            c.put(f"/api/regions/{region}/verdict", json={"verdict": None})
            c.put(f"/api/images/{img_id}/disposition", json={"disposition": None})
