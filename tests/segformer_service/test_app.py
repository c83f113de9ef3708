"""HTTP contract of the reference model service, over real HTTP (docs/model-service-contract.md)."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import httpx2
import pytest
from PIL import Image

from segformer_service.config import DEFAULT_CLASS_NAMES

SAMPLE_ID = "00041201"
"""A DeepPCB image whose annotated spurious copper (177 279 217 311) and pin-hole
(408 411 459 439) the classical engine finds."""

TIMEOUT = httpx2.Timeout(30.0)


def _post(url: str, files: dict[str, Any] | None = None) -> httpx2.Response:
    with httpx2.Client(base_url=url, timeout=TIMEOUT) as client:
        return client.post("/upload", files=files)


def _png(b64: str) -> Image.Image:
    img = Image.open(io.BytesIO(base64.b64decode(b64, validate=True)))
    assert img.format == "PNG"
    return img


@pytest.fixture(scope="module")
def sample_answer(service_url: str, deeppcb: Path) -> dict[str, Any]:
    path = deeppcb / "images" / f"{SAMPLE_ID}.jpg"
    response = _post(service_url, {"image": (path.name, path.read_bytes(), "image/jpeg")})
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def test_health_reports_engine_and_classes(service_url: str) -> None:
    response = httpx2.get(f"{service_url}/health", timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "engine": "classical",
        "classes": list(DEFAULT_CLASS_NAMES),
    }


@pytest.mark.deeppcb
def test_upload_answer_has_contract_layout(sample_answer: dict[str, Any]) -> None:
    assert set(sample_answer) == {
        "success",
        "filename",
        "model_name",
        "model_version",
        "processing_time_seconds",
        "result_json",
        "images",
    }
    assert sample_answer["success"] is True
    assert sample_answer["filename"] == f"{SAMPLE_ID}.jpg"
    assert 0 < sample_answer["processing_time_seconds"] < 30
    result = sample_answer["result_json"]
    assert result["image_shape"] == {"height": 640, "width": 640}
    assert result["engine"] == "classical"
    assert result["processing_time_seconds"] == sample_answer["processing_time_seconds"]
    assert set(sample_answer["images"]) == {"combined", "mask", "overlay"}


@pytest.mark.deeppcb
def test_upload_class_summaries_are_consistent(sample_answer: dict[str, Any]) -> None:
    classes = sample_answer["result_json"]["classes"]
    assert classes, "the sample image has annotated defects the engine finds"
    expected_ids = dict(zip(DEFAULT_CLASS_NAMES, range(1, 7), strict=True))
    for name, summary in classes.items():
        assert summary["class_id"] == expected_ids[name]
        regions = summary["regions"]
        assert summary["total_regions"] == len(regions) > 0
        assert summary["total_area_pixels"] == sum(r["area_pixels"] for r in regions)
        assert [r["region_id"] for r in regions] == list(range(1, len(regions) + 1))
        for region in regions:
            assert set(region) == {
                "region_id",
                "centroid",
                "bounding_box",
                "area_pixels",
                "perimeter",
                "major_axis",
                "minor_axis",
                "circularity",
                "aspect_ratio",
            }
            box = region["bounding_box"]
            assert 0 <= box["x"] <= region["centroid"]["x"] <= box["x"] + box["width"] <= 640
            assert 0 <= box["y"] <= region["centroid"]["y"] <= box["y"] + box["height"] <= 640


@pytest.mark.deeppcb
@pytest.mark.parametrize(
    ("class_name", "annotation"),
    [("spurious_copper", (177, 279, 217, 311)), ("pin_hole", (408, 411, 459, 439))],
)
def test_upload_finds_annotated_defect(
    sample_answer: dict[str, Any], class_name: str, annotation: tuple[int, int, int, int]
) -> None:
    x1, y1, x2, y2 = annotation
    regions = sample_answer["result_json"]["classes"][class_name]["regions"]
    inside = [
        r for r in regions if x1 <= r["centroid"]["x"] <= x2 and y1 <= r["centroid"]["y"] <= y2
    ]
    assert len(inside) == 1
    box = inside[0]["bounding_box"]
    assert x1 <= box["x"]
    assert box["x"] + box["width"] <= x2 + 1
    assert y1 <= box["y"]
    assert box["y"] + box["height"] <= y2 + 1


@pytest.mark.deeppcb
def test_upload_images_decode_with_right_sizes(sample_answer: dict[str, Any]) -> None:
    images = sample_answer["images"]
    mask, overlay, combined = (_png(images[k]) for k in ("mask", "overlay", "combined"))
    assert mask.size == (640, 640)
    assert overlay.size == (640, 640)
    assert combined.size == (1280, 640)
    # The spurious-copper region is painted in its class colour in the mask.
    assert mask.convert("RGB").getpixel((197, 295)) == (0x43, 0x63, 0xD8)
    assert mask.convert("RGB").getpixel((5, 5)) == (0, 0, 0)


@pytest.mark.deeppcb
def test_upload_accepts_png_and_rgb(service_url: str, deeppcb: Path) -> None:
    with Image.open(deeppcb / "images" / f"{SAMPLE_ID}.jpg") as img:
        buffer = io.BytesIO()
        img.convert("RGB").crop((0, 0, 320, 200)).save(buffer, format="PNG")
    response = _post(service_url, {"image": ("crop.png", buffer.getvalue(), "image/png")})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["result_json"]["image_shape"] == {"height": 200, "width": 320}
    assert _png(answer["images"]["combined"]).size == (640, 200)


def test_upload_of_text_named_png_is_400(service_url: str) -> None:
    response = _post(service_url, {"image": ("board.png", b"this is not an image", "image/png")})
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid image"
    assert "not a recognised image" in body["detail"]


def test_upload_of_empty_file_is_400(service_url: str) -> None:
    response = _post(service_url, {"image": ("empty.jpg", b"", "image/jpeg")})
    assert response.status_code == 400
    assert response.json() == {"error": "invalid image", "detail": "the uploaded file is empty"}


@pytest.mark.deeppcb
def test_upload_of_truncated_jpeg_is_400(service_url: str, deeppcb: Path) -> None:
    data = (deeppcb / "images" / f"{SAMPLE_ID}.jpg").read_bytes()
    response = _post(service_url, {"image": ("cut.jpg", data[: len(data) // 2], "image/jpeg")})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid image"


def test_upload_without_image_field_is_422(service_url: str) -> None:
    response = _post(service_url, {"file": ("x.jpg", b"abc", "image/jpeg")})
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "invalid request"
    assert any("image" in item["loc"] for item in body["detail"])


@pytest.mark.deeppcb
def test_upload_over_size_limit_is_413(small_limit_service_url: str, deeppcb: Path) -> None:
    data = (deeppcb / "images" / f"{SAMPLE_ID}.jpg").read_bytes()
    assert len(data) > 0.01 * 1024 * 1024
    response = _post(small_limit_service_url, {"image": ("big.jpg", data, "image/jpeg")})
    assert response.status_code == 413
    assert response.json()["error"] == "upload too large"


def test_upload_under_size_limit_is_accepted(small_limit_service_url: str) -> None:
    buffer = io.BytesIO()
    Image.new("L", (64, 48), 255).save(buffer, format="PNG")
    response = _post(small_limit_service_url, {"image": ("blank.png", buffer.getvalue())})
    assert response.status_code == 200, response.text
    assert response.json()["result_json"]["classes"] == {}
