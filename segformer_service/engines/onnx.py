"""ONNX engine: serve a semantic-segmentation model with Hugging Face SegFormer's interface.

The model (``REFERENCE_SERVICE_ONNX_MODEL``) takes ``pixel_values`` ``(N, 3, H, W)``
``float32``, normalised per channel as ``(x / 255 - mean) / std``, and returns
``logits`` ``(N, C, H/4, W/4)`` (C classes, class 0 = background). It runs with
onnxruntime: the CUDA execution provider when it is installed, else the CPU.

Beside the model file the engine reads, when present:

* ``preprocessor_config.json`` (Hugging Face image processor): ``image_mean``,
  ``image_std``, ``size`` (``{"height", "width"}``), ``do_resize``,
  ``do_rescale``/``rescale_factor``, ``do_normalize``. Without it: ImageNet
  mean/std (SegFormer's default), no resizing unless the model's input has a
  fixed size.
* ``config.json`` (the model's config) or ``id2label.json``: ``id2label``, the
  name of each logit channel. Channel ``k`` becomes the service class of the
  same name; a channel whose name is not a service class, and channel 0 (the
  background), are not reported.

Steps for one image: RGB, resize to the model size (bilinear, Pillow) when the
processor asks for it, normalise, run, upsample the logits to the image size
(bilinear, like ``torch.nn.functional.interpolate(..., align_corners=False)``
in Hugging Face's post-processing), argmax per pixel.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray
from PIL import Image

from segformer_service.config import ServiceSettings
from segformer_service.engines.base import LabelMask, Segmentation

logger = logging.getLogger("segformer_service")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


def upsample_bilinear(logits: NDArray[np.float32], height: int, width: int) -> NDArray[np.float32]:
    """Resize ``(C, h, w)`` logits to ``(C, height, width)``, bilinear, half-pixel centres.

    Same sampling as ``torch.nn.functional.interpolate(mode="bilinear",
    align_corners=False)``: output pixel ``i`` samples input coordinate
    ``(i + 0.5) * h / height - 0.5``, clamped to the input.
    """
    _, h, w = logits.shape

    def axis(
        n_out: int, n_in: int
    ) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.float32]]:
        pos = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
        pos = np.clip(pos, 0, n_in - 1)
        lo = np.floor(pos).astype(np.intp)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, (pos - lo).astype(np.float32)

    y0, y1, fy = axis(height, h)
    x0, x1, fx = axis(width, w)
    rows = logits[:, y0, :] * (1 - fy)[None, :, None] + logits[:, y1, :] * fy[None, :, None]
    out = rows[:, :, x0] * (1 - fx)[None, None, :] + rows[:, :, x1] * fx[None, None, :]
    return out.astype(np.float32, copy=False)


class OnnxEngine:
    """A SegFormer-style ONNX model behind the engine interface (see the module docstring)."""

    name = "onnx"

    def __init__(self, settings: ServiceSettings) -> None:
        """Load the model and its processor/label files.

        Raises:
            ValueError: if no model is configured, the file is missing, or it lacks
                a ``pixel_values`` input or ``logits`` output.
        """
        if settings.onnx_model is None:
            raise ValueError("the onnx engine needs REFERENCE_SERVICE_ONNX_MODEL (an .onnx file)")
        path = Path(settings.onnx_model)
        if not path.is_file():
            raise ValueError(f"ONNX model {path} does not exist")
        self.model_path = path
        available = ort.get_available_providers()
        wanted = settings.onnx_providers or ["CUDAExecutionProvider", "CPUExecutionProvider"]
        providers = [p for p in wanted if p in available] or ["CPUExecutionProvider"]
        options = ort.SessionOptions()
        if settings.onnx_threads:
            options.intra_op_num_threads = settings.onnx_threads
        self._session = ort.InferenceSession(str(path), options, providers=providers)
        inputs = {i.name: i for i in self._session.get_inputs()}
        outputs = [o.name for o in self._session.get_outputs()]
        if "pixel_values" not in inputs or "logits" not in outputs:
            raise ValueError(
                f"ONNX model {path} must have input 'pixel_values' and output 'logits' "
                f"(has inputs {sorted(inputs)}, outputs {outputs})"
            )
        processor = _read_json(path.parent / "preprocessor_config.json")
        config = _read_json(path.parent / "config.json") or _read_json(
            path.parent / "id2label.json"
        )
        id2label = config.get("id2label", config)
        self.mean = np.asarray(processor.get("image_mean", IMAGENET_MEAN), dtype=np.float32)
        self.std = np.asarray(processor.get("image_std", IMAGENET_STD), dtype=np.float32)
        self.do_normalize = bool(processor.get("do_normalize", True))
        self.rescale = (
            float(processor.get("rescale_factor", 1 / 255))
            if processor.get("do_rescale", True)
            else 1.0
        )
        size = processor.get("size") if processor.get("do_resize", True) else None
        shape = inputs["pixel_values"].shape
        self.size: tuple[int, int] | None = None
        if isinstance(size, dict) and "height" in size and "width" in size:
            self.size = (int(size["height"]), int(size["width"]))
        elif isinstance(shape[2], int) and isinstance(shape[3], int):
            self.size = (shape[2], shape[3])
        ids = settings.class_id_by_name()
        n_channels = max((int(k) for k in id2label), default=-1) + 1
        self._channel_to_class = np.zeros(max(n_channels, 1), dtype=np.int32)
        for key, label in id2label.items():
            channel = int(key)
            if channel > 0 and str(label) in ids:
                self._channel_to_class[channel] = ids[str(label)]
        self.providers = self._session.get_providers()
        logger.info(
            "onnx engine: %s on %s, input size %s, %d labelled channels",
            path.name,
            self.providers,
            self.size or "as uploaded",
            int((self._channel_to_class > 0).sum()),
        )

    def preprocess(self, image: NDArray[np.uint8]) -> NDArray[np.float32]:
        """``(H, W)`` or ``(H, W, 3)`` ``uint8`` -> ``(1, 3, h, w)`` ``float32`` ``pixel_values``.

        Raises:
            ValueError: if ``image`` has neither shape.
        """
        if image.ndim == 2:
            rgb = np.repeat(image[:, :, None], 3, axis=2)
        elif image.ndim == 3 and image.shape[2] == 3:
            rgb = image
        else:
            raise ValueError(f"expected an (H, W) or (H, W, 3) image, got shape {image.shape}")
        if self.size is not None and rgb.shape[:2] != self.size:
            resized = Image.fromarray(rgb).resize(
                (self.size[1], self.size[0]), Image.Resampling.BILINEAR
            )
            rgb = np.asarray(resized)
        x = rgb.astype(np.float32) * self.rescale
        if self.do_normalize:
            x = (x - self.mean) / self.std
        return np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32)

    def logits(self, image: NDArray[np.uint8]) -> NDArray[np.float32]:
        """Raw model logits ``(C, h/4, w/4)`` for one image."""
        (out,) = self._session.run(["logits"], {"pixel_values": self.preprocess(image)})
        return np.asarray(out[0], dtype=np.float32)

    def channel_mask(self, image: NDArray[np.uint8]) -> NDArray[np.int64]:
        """``(H, W)`` argmax channel of the logits upsampled to the image size."""
        height, width = image.shape[:2]
        return np.argmax(upsample_bilinear(self.logits(image), height, width), axis=0)

    def segment(self, image: NDArray[np.uint8]) -> LabelMask:
        """``(H, W)`` ``int32`` label mask of service class ids (0 = background).

        Raises:
            ValueError: if the image is neither ``(H, W)`` nor ``(H, W, 3)``.
        """
        channels = self.channel_mask(image)
        lookup = self._channel_to_class
        return np.where(
            channels < lookup.size, lookup[np.minimum(channels, lookup.size - 1)], 0
        ).astype(np.int32)

    def segment_with_provenance(self, image: NDArray[np.uint8]) -> Segmentation:
        """The label mask with the model file name and execution provider."""
        return Segmentation(
            self.segment(image),
            self.name,
            {"model": self.model_path.name, "execution_provider": self.providers[0]},
        )
