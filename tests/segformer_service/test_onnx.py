"""The onnx engine with a tiny random-weight SegFormer exported on this machine.

``segformer_service/tools/export_onnx.py`` builds the model from a
``transformers.SegformerConfig`` (no download) and exports it with
``torch.onnx``; the engine's masks are compared with PyTorch's own argmax.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2
import numpy as np
import pytest
import torch
from PIL import Image

from segformer_service.config import ServiceSettings
from segformer_service.engines import create_engine
from segformer_service.engines.onnx import OnnxEngine, upsample_bilinear
from segformer_service.tools.export_onnx import DEEPPCB_LABELS, build_model, export

SIZE = 64


@pytest.fixture(scope="module")
def tiny_model() -> Any:
    return build_model("tiny", seed=0)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model: Any) -> Path:
    folder = tmp_path_factory.mktemp("tiny_segformer")
    export(tiny_model, folder, SIZE)
    return folder


def _engine(model_dir: Path, **overrides: Any) -> OnnxEngine:
    engine = create_engine(
        ServiceSettings(engine="onnx", onnx_model=model_dir / "model.onnx", **overrides)
    )
    assert isinstance(engine, OnnxEngine)
    return engine


def _torch_argmax(model: Any, pixel_values: np.ndarray, height: int, width: int) -> np.ndarray:
    """PyTorch reference: logits upsampled like Hugging Face's post-processing, then argmax."""
    with torch.no_grad():
        logits = model(pixel_values=torch.from_numpy(pixel_values)).logits
        up = torch.nn.functional.interpolate(
            logits, size=(height, width), mode="bilinear", align_corners=False
        )
    result: np.ndarray = up.argmax(dim=1)[0].numpy()
    return result


@pytest.mark.parametrize("shape", [(SIZE, SIZE, 3), (96, 80, 3), (SIZE, SIZE)])
def test_mask_equals_pytorch_argmax(
    model_dir: Path, tiny_model: Any, shape: tuple[int, ...]
) -> None:
    image = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    engine = _engine(model_dir)
    pixel_values = engine.preprocess(image)
    assert pixel_values.shape == (1, 3, SIZE, SIZE)
    expected = _torch_argmax(tiny_model, pixel_values, shape[0], shape[1])
    channels = engine.channel_mask(image)
    assert channels.shape == shape[:2]
    assert (channels == expected).mean() >= 0.999  # float32 ties at most
    assert len(np.unique(expected)) > 1  # a random model still predicts several classes


def test_channels_become_service_classes_by_name(model_dir: Path) -> None:
    image = np.random.default_rng(3).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    engine = _engine(model_dir)
    channels = engine.channel_mask(image)
    ids = ServiceSettings().class_id_by_name()
    expected = np.zeros_like(channels)
    for channel, name in enumerate(DEEPPCB_LABELS):
        if channel:
            expected[channels == channel] = ids[name]
    assert (engine.segment(image) == expected).all()
    # Renamed service classes: only the channels whose label matches are reported.
    renamed = _engine(model_dir, class_names=["short", "pin_hole"], class_ids=[7, 9])
    mask = renamed.segment(image)
    assert set(np.unique(mask)) <= {0, 7, 9}
    assert ((mask == 7) == (channels == DEEPPCB_LABELS.index("short"))).all()


def test_preprocessing_follows_preprocessor_config(model_dir: Path, tmp_path: Path) -> None:
    for name in ("model.onnx", "config.json"):
        (tmp_path / name).write_bytes((model_dir / name).read_bytes())
    processor = {"do_resize": False, "image_mean": [0.5] * 3, "image_std": [0.25] * 3}
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(processor))
    engine = _engine(tmp_path)
    image = np.full((32, 48), 255, dtype=np.uint8)
    pixel_values = engine.preprocess(image)
    assert pixel_values.shape == (1, 3, 32, 48)  # no resize: the model is size-agnostic
    assert np.allclose(pixel_values, (1.0 - 0.5) / 0.25)
    assert engine.segment(image).shape == (32, 48)


def test_upsampling_matches_torch_interpolate() -> None:
    logits = np.random.default_rng(5).normal(size=(3, 7, 9)).astype(np.float32)
    ours = upsample_bilinear(logits, 30, 41)
    theirs = torch.nn.functional.interpolate(
        torch.from_numpy(logits)[None], size=(30, 41), mode="bilinear", align_corners=False
    )[0].numpy()
    assert np.allclose(ours, theirs, atol=1e-5)


def test_bad_model_settings_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="REFERENCE_SERVICE_ONNX_MODEL"):
        create_engine(ServiceSettings(engine="onnx"))
    with pytest.raises(ValueError, match="does not exist"):
        create_engine(ServiceSettings(engine="onnx", onnx_model=tmp_path / "none.onnx"))


def test_http_answer_from_the_onnx_engine(
    start_service: Any, model_dir: Path, tmp_path: Path
) -> None:
    url = start_service(
        {
            "REFERENCE_SERVICE_ENGINE": "onnx",
            "REFERENCE_SERVICE_ONNX_MODEL": str(model_dir / "model.onnx"),
        }
    )
    image = tmp_path / "board.png"
    Image.fromarray(np.random.default_rng(9).integers(0, 256, (80, 80, 3), dtype=np.uint8)).save(
        image
    )
    with httpx2.Client(base_url=url, timeout=30.0) as client:
        assert client.get("/health").json()["engine"] == "onnx"
        answer = client.post("/upload", files={"image": ("board.png", image.read_bytes())}).json()
    result = answer["result_json"]
    assert result["engine"] == "onnx"
    assert result["provenance"]["model"] == "model.onnx"
    assert result["provenance"]["execution_provider"] == "CPUExecutionProvider"
    assert result["image_shape"] == {"height": 80, "width": 80}
    assert result["classes"]  # a random model labels some pixels
