"""End-to-end: History's "Export training set (ZIP)" button (Debian's Chromium, headless,
signed in): it carries the page's filters, and one click downloads a ZIP whose manifest
records those filters and lists exactly the files in it, with their SHA-256."""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import shoot
from tests.support import AgentServer, db_rows

pytestmark = [pytest.mark.e2e, pytest.mark.deeppcb]


def test_history_exports_the_training_set_of_its_filters(
    page: Page,
    agent: AgentServer,
    inspected: list[dict[str, Any]],
    database_url: str,
    screenshot_dir: Path,
) -> None:
    board = max(inspected, key=lambda a: a["total_defects"])
    headers = {"X-API-Key": agent.api_key or "", "X-Reviewer": "e2e"}
    with httpx2.Client(base_url=agent.url, timeout=60, headers=headers) as c:
        regions = c.get(f"/api/images/{board['img_unique_id']}/regions").json()
        region = regions["classes"][0]["regions"][0]
        put = c.put(f"/api/regions/{region['region_unique_id']}/verdict", json={"verdict": "real"})
        assert put.status_code == 200, put.text
    name = regions["classes"][0]["class_name"]
    (images,) = db_rows(database_url, "SELECT count(*) FROM images")[0]

    page.goto(agent.url + "/history")
    expect(page.locator(".thumb-card").first).to_be_visible()
    page.select_option("#f-class", name)
    expect(page).to_have_url(re.compile(f"class_name={name}"))
    button = page.locator("#export-dataset")
    expect(button).to_be_visible()
    href = button.get_attribute("href") or ""
    assert urlsplit(href).path == "/api/export/dataset.zip"
    assert parse_qs(urlsplit(href).query) == {"class_name": [name]}
    shoot(page, screenshot_dir, "history-export-dataset")

    with page.expect_download() as download:
        button.click()
    assert re.fullmatch(r"dataset_\d{8}_\d{6}\.zip", download.value.suggested_filename)
    with zipfile.ZipFile(download.value.path()) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        listed = {f["path"]: f["sha256"] for f in manifest["files"]}
        present = set(archive.namelist()) - {"manifest.json"}
        assert set(listed) == present
        for path in present:
            assert hashlib.sha256(archive.read(path)).hexdigest() == listed[path], path
        cocos = [json.loads(archive.read(p)) for p in present if p.startswith("annotations/")]
    assert manifest["format"] == "aoi-dataset/1"
    assert manifest["query"] == f"/api/export/dataset.zip?class_name={name}"
    # Like the COCO export: the images of the image-level filters, defect-free ones
    # included, and only the regions of the class (the reviewed one a positive).
    assert sum(c["images"] for c in manifest["counts"].values()) == images
    annotated = {
        category["name"]
        for coco in cocos
        for annotation in coco["annotations"]
        for category in coco["categories"]
        if category["id"] == annotation["category_id"]
    }
    assert annotated == {name}
    confirmed = [a for coco in cocos for a in coco["annotations"] if a["iscrowd"] == 0]
    assert len(confirmed) == 1
