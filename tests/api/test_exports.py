"""GET /api/export/regions.csv and /api/export/coco.json, against real inspections."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import httpx2
import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from segformer_service.config import DEFAULT_CLASS_COLORS
from segformer_service.render import hex_to_rgb
from tests.support import AgentServer, wait_until

FORMULA_NAME = "=HYPERLINK(1).png"


@pytest.fixture(scope="module")
def inspected(agent: AgentServer, deeppcb: list[Path]) -> dict[str, Any]:
    """A batch of four DeepPCB boards and one single upload whose name is a formula."""
    with httpx2.Client(base_url=agent.url, timeout=60) as c:
        files = [("images", (p.name, p.read_bytes())) for p in deeppcb[30:34]]
        batch = c.post("/api/upload/batch", files=files).json()
        wait_until(lambda: c.get(f"/api/batches/{batch['batch_id']}").json()["done"])
        single = c.post("/api/upload", files={"image": (FORMULA_NAME, deeppcb[35].read_bytes())})
        assert single.status_code == 200, single.text
    return {"batch": batch, "single": single.json()}


def _all_defects(client: httpx2.Client, **params: object) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    page = 1
    while True:
        answer = client.get("/api/query/defects", params={**params, "page": page, "limit": 100})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        rows += body["regions"]
        if len(rows) >= body["total"]:
            return rows
        page += 1


def _csv(client: httpx2.Client, **params: object) -> list[dict[str, str]]:
    response = client.get("/api/export/regions.csv", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    return list(csv.DictReader(io.StringIO(response.text)))


@pytest.mark.parametrize(
    "params",
    [{}, {"min_area": 30}, {"max_area": 20}, {"date_range": "2000-01-01..2000-01-02"}, "class"],
)
def test_regions_csv_holds_exactly_the_regions_of_the_defect_query(
    client: httpx2.Client, inspected: dict[str, Any], params: dict[str, object] | str
) -> None:
    if params == "class":
        some = next(iter(inspected["single"]["defect_classes"]))
        params = {"class_name": some.upper()}
    assert isinstance(params, dict)
    queried = _all_defects(client, **params)
    exported = _csv(client, **params)
    assert [int(r["region_unique_id"]) for r in exported] == [
        q["region_unique_id"] for q in queried
    ]
    for row, found in zip(exported, queried, strict=True):
        assert row["img_unique_id"] == found["img_unique_id"]
        assert row["class_name"] == found["class_name"]
        assert int(row["area_pixels"]) == found["area_pixels"]
        assert int(row["bbox_x"]) == found["bounding_box"]["x"]
        assert float(row["circularity"]) == pytest.approx(found["circularity"])
        assert row["verdict"] == row["disposition"] == ""  # reserved for review results


def test_regions_csv_filters_by_batch_and_names_the_files_safely(
    client: httpx2.Client, inspected: dict[str, Any]
) -> None:
    batch = inspected["batch"]
    rows = _csv(client, batch_id=batch["batch_id"])
    names = {a["img_unique_id"]: a["filename"] for a in batch["accepted"]}
    assert rows, "the DeepPCB boards have defects"
    assert {r["img_unique_id"] for r in rows} <= set(names)
    assert all(r["original_filename"] == names[r["img_unique_id"]] for r in rows)
    assert all(r["batch_id"] == batch["batch_id"] for r in rows)
    single = _csv(client, img_unique_id=inspected["single"]["img_unique_id"])
    assert single, "the single board has defects"
    # A file name a spreadsheet would run as a formula is written as text.
    assert {r["original_filename"] for r in single} == {"'" + FORMULA_NAME}
    assert all(r["batch_id"] == "" for r in single)


def test_exports_answer_head_and_refuse_bad_filters(client: httpx2.Client) -> None:
    for path in ("/api/export/regions.csv", "/api/export/coco.json"):
        head = client.head(path)
        assert head.status_code == 200
        assert head.content == b""
        assert "attachment" in head.headers["content-disposition"]
        bad = client.get(path, params={"batch_id": "../etc"})
        assert bad.status_code == 422
        assert bad.json()["error"]
    reversed_range = client.get(
        "/api/export/coco.json", params={"date_range": "2026-02-02..2026-02-01"}
    )
    assert reversed_range.status_code == 422


def _coco(client: httpx2.Client, tmp_path: Path, **params: object) -> tuple[COCO, dict[str, Any]]:
    response = client.get("/api/export/coco.json", params=params)
    assert response.status_code == 200, response.text
    path = tmp_path / "coco.json"
    path.write_bytes(response.content)
    return COCO(str(path)), json.loads(response.content)


def test_coco_of_a_batch_loads_and_its_masks_are_the_stored_masks(
    client: httpx2.Client,
    inspected: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    batch = inspected["batch"]
    coco, raw = _coco(client, tmp_path, batch_id=batch["batch_id"])
    capsys.readouterr()  # pycocotools prints its progress
    assert {i["img_unique_id"] for i in raw["images"]} == {
        a["img_unique_id"] for a in batch["accepted"]
    }
    assert all(a["segmentation_from"] == "mask" for a in raw["annotations"])
    assert all(a["verdict"] is None for a in raw["annotations"])
    names = {c["id"]: c["name"] for c in raw["categories"]}
    for image in raw["images"]:
        img_id = image["img_unique_id"]
        # The input's path inside the batch ZIP: `{original name without extension}_{id}/`.
        stem = Path(image["original_filename"]).stem
        assert image["file_name"].startswith(f"{stem}_{img_id}/input.")
        stored = client.get(f"/api/download/image/{img_id}/mask")
        rgb = np.asarray(Image.open(io.BytesIO(stored.content)).convert("RGB"))
        assert rgb.shape[:2] == (image["height"], image["width"])
        annotations = coco.loadAnns(coco.getAnnIds(imgIds=[image["id"]]))
        stored_regions = client.get(f"/api/images/{img_id}/regions").json()
        assert len(annotations) == sum(len(c["regions"]) for c in stored_regions["classes"])
        painted = np.zeros(rgb.shape[:2], dtype=bool)
        for category_id, name in names.items():
            anns = [a for a in annotations if a["category_id"] == category_id]
            decoded = np.zeros(rgb.shape[:2], dtype=bool)
            for ann in anns:
                one = coco.annToMask(ann).astype(bool)
                assert int(one.sum()) == ann["area"]
                assert not (decoded & one).any(), "regions of a class do not overlap"
                decoded |= one
            colour = np.array(hex_to_rgb(DEFAULT_CLASS_COLORS[name]), dtype=np.uint8)
            in_mask = (rgb == colour).all(axis=2)
            np.testing.assert_array_equal(decoded, in_mask, err_msg=f"{img_id} {name}")
            painted |= in_mask
        # Every coloured pixel of the mask belongs to some class's annotations.
        np.testing.assert_array_equal(painted, rgb.any(axis=2))


def test_coco_filters_like_the_defect_query(
    client: httpx2.Client,
    inspected: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    some = next(iter(inspected["single"]["defect_classes"]))
    _, raw = _coco(client, tmp_path, class_name=some, min_area=20)
    capsys.readouterr()
    queried = _all_defects(client, class_name=some, min_area=20)
    assert [c["name"] for c in raw["categories"]] == [some]
    assert sorted(a["region_unique_id"] for a in raw["annotations"]) == sorted(
        q["region_unique_id"] for q in queried
    )
    # Images are those of the image filters (none here): defect-free ones stay as negatives.
    assert len(raw["images"]) == 5
    _, none = _coco(client, tmp_path, date_range="2000-01-01..2000-01-02")
    assert none["images"] == none["annotations"] == none["categories"] == []
