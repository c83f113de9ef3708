"""The customer's PRD "API Examples", run as written: root paths, the PRD's request forms,
and answers with (at least) the PRD's fields and types."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.support import AgentServer

# Example 1's answer, with the type each field has there.
PRD_UPLOAD_FIELDS = {
    "success": bool,
    "img_unique_id": str,
    "timestamp": str,
    "processing_time_seconds": float,
    "total_defects": int,
    "defect_classes": dict,
    "images": dict,
    "json_url": str,
}
PRD_LISTED_FIELDS = {
    "img_unique_id": str,
    "timestamp": str,
    "image_height": int,
    "image_width": int,
    "processing_time_seconds": float,
    "total_defects": int,
    "input_image_path": str,
}
PRD_REGION_FIELDS = {
    "region_id": int,
    "centroid": dict,
    "bounding_box": dict,
    "area_pixels": int,
    "perimeter": float,
    "circularity": float,
    "aspect_ratio": float,
}


def assert_fields(body: dict[str, Any], fields: dict[str, type]) -> None:
    """Every PRD field is present with the PRD's JSON type (ints count as numbers)."""
    for name, kind in fields.items():
        assert name in body, name
        expected = (int, float) if kind is float else kind
        assert isinstance(body[name], expected), (name, body[name])


@pytest.fixture(scope="module")
def example1(
    agent: AgentServer, deeppcb: list[Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """Example 1 sent with curl exactly as the PRD writes it (file renamed to its name)."""
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    folder = tmp_path_factory.mktemp("prd")
    shutil.copy(deeppcb[40], folder / "segformer_input.jpeg")
    done = subprocess.run(
        [
            curl,
            "-sS",
            "-X",
            "POST",
            f"{agent.url}/upload",
            "-H",
            "Content-Type: multipart/form-data",
            "-F",
            "image=@segformer_input.jpeg",
        ],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    body: dict[str, Any] = json.loads(done.stdout)
    return body


def test_example_1_single_upload(example1: dict[str, Any], client: httpx2.Client) -> None:
    assert_fields(example1, PRD_UPLOAD_FIELDS)
    assert example1["success"] is True
    assert datetime.fromisoformat(example1["timestamp"]).utcoffset() is not None
    assert example1["total_defects"] == sum(example1["defect_classes"].values())
    assert set(example1["images"]) == {"combined", "mask", "overlay"}
    for url in example1["images"].values():
        response = client.get(url)
        assert response.status_code == 200
        assert response.content.startswith(b"\x89PNG")
    analysis = client.get(example1["json_url"]).json()
    assert analysis == example1["result"]
    detail = client.get(f"/images/{example1['img_unique_id']}").json()
    assert detail["original_filename"] == "segformer_input.jpeg"
    assert detail["processing_time_seconds"] == example1["processing_time_seconds"]


def test_example_2_images_by_date_range(example1: dict[str, Any], client: httpx2.Client) -> None:
    day = example1["timestamp"][:10]
    response = client.get(f"/images?start_date={day}&end_date={day}&page=1&limit=10")
    assert response.status_code == 200
    body = response.json()
    assert {"total", "page", "limit", "images"} <= set(body)
    assert (body["page"], body["limit"]) == (1, 10)
    assert body["total"] >= 1
    listed = next(i for i in body["images"] if i["img_unique_id"] == example1["img_unique_id"])
    assert_fields(listed, PRD_LISTED_FIELDS)
    assert listed["total_defects"] == example1["total_defects"]
    assert listed["processing_time_seconds"] == example1["processing_time_seconds"]
    assert "segformer_input" in listed["input_image_path"]


def test_example_3_regions_of_an_image(example1: dict[str, Any], client: httpx2.Client) -> None:
    img_id = example1["img_unique_id"]
    response = client.get(f"/images/{img_id}/regions")
    assert response.status_code == 200
    body = response.json()
    assert body["img_unique_id"] == img_id
    assert body["total_regions"] == example1["total_defects"]
    assert {c["class_name"]: c["total_regions"] for c in body["classes"]} == example1[
        "defect_classes"
    ]
    for group in body["classes"]:
        assert_fields(group, {"class_name": str, "total_regions": int, "regions": list})
        for region in group["regions"]:
            assert_fields(region, PRD_REGION_FIELDS)
            assert set(region["centroid"]) == {"x", "y"}
            assert set(region["bounding_box"]) == {"x", "y", "width", "height"}


def test_fr4_paths_named_in_the_prd_answer_at_the_root(
    example1: dict[str, Any], client: httpx2.Client
) -> None:
    img_id = example1["img_unique_id"]
    for path in (
        f"/images/{img_id}/classes",
        f"/download/image/{img_id}/input",
        f"/download/json/{img_id}",
        "/query/defects?class_name=" + next(iter(example1["defect_classes"]), "spur"),
        "/health",
        "/stats",
    ):
        assert client.get(path).status_code == 200, path
