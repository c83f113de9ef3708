"""The inspection workflow: decode an upload, segment it, analyse and render the result.

Everything here is synchronous and CPU-bound; the HTTP layer runs it in a thread.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import time
from importlib import metadata

import numpy as np
from numpy.typing import NDArray
from PIL import Image, UnidentifiedImageError

from segformer_service.analysis import analyse_label_mask
from segformer_service.config import ServiceSettings
from segformer_service.engines import SegmentationEngine, create_engine, segment_with_provenance
from segformer_service.errors import InvalidImage
from segformer_service.render import render_pngs
from segformer_service.schemas import (
    ImageShape,
    InspectionResult,
    ResultImages,
    UploadResponse,
)

_GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}


def decode_image(data: bytes, max_pixels: int) -> NDArray[np.uint8]:
    """Decode image bytes (any format Pillow reads: JPEG, PNG, TIFF, BMP, ...).

    Returns:
        ``(H, W)`` ``uint8`` for grey images, ``(H, W, 3)`` ``uint8`` RGB otherwise
        (alpha dropped; the first frame of a multi-frame file).

    Raises:
        InvalidImage: if ``data`` is empty or not a decodable image, or the image has
            more than ``max_pixels`` pixels (decompression-bomb guard, checked on the
            header before the pixels are decoded).
    """
    if not data:
        raise InvalidImage("the uploaded file is empty")
    try:
        with Image.open(io.BytesIO(data)) as probe:
            probe.verify()
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            if width * height > max_pixels:
                raise InvalidImage(
                    f"image of {width} x {height} pixels exceeds the limit of {max_pixels} pixels"
                )
            img.load()
            if img.mode in ("L", "RGB"):  # no converted copy (200 MB at 50 Mpx RGB)
                return np.asarray(img, dtype=np.uint8)
            converted = img.convert("L" if img.mode in _GREY_MODES else "RGB")
            return np.asarray(converted, dtype=np.uint8)
    except InvalidImage:
        raise
    except UnidentifiedImageError as exc:
        raise InvalidImage("the uploaded file is not a recognised image format") from exc
    except (Image.DecompressionBombError, OSError, SyntaxError, ValueError) as exc:
        raise InvalidImage(f"the uploaded image cannot be decoded: {exc}") from exc


def model_version(settings: ServiceSettings) -> str:
    """``{package version}+{settings digest}``: the first 12 hex digits of the SHA-256 of
    the settings that shape results (engine, classes and its thresholds; not the size
    limits), so two answers with the same version came from the same model."""
    shaping = settings.model_dump(
        mode="json", exclude={"max_upload_size_mb", "max_image_pixels", "max_concurrent_inferences"}
    )
    digest = hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:12]
    try:
        package = metadata.version("aoi-inference-agent")
    except metadata.PackageNotFoundError:
        package = "0"
    return f"{package}+{digest}"


def _b64(png: bytes) -> str:
    return base64.b64encode(png).decode("ascii")


class InspectionService:
    """Holds one engine and turns uploaded bytes into the contract's answer."""

    def __init__(self, settings: ServiceSettings, engine: SegmentationEngine | None = None) -> None:
        """Build the service; the engine defaults to ``create_engine(settings)``.

        Raises:
            ValueError: if ``settings.engine`` names no registered engine.
        """
        self.settings = settings
        self.engine = engine if engine is not None else create_engine(settings)
        self._names = settings.class_name_by_id()
        self._colors = {cid: settings.color_of(name) for cid, name in self._names.items()}
        self.model_name = f"reference-{self.engine.name}"
        self.model_version = model_version(settings)

    def inspect(self, data: bytes, filename: str) -> UploadResponse:
        """Decode, segment, analyse and render one image.

        ``processing_time_seconds`` is the wall time of those four steps, seconds.

        Raises:
            InvalidImage: see :func:`decode_image`.
        """
        started = time.perf_counter()
        image = decode_image(data, self.settings.max_image_pixels)
        segmentation = segment_with_provenance(self.engine, image)
        label_mask = segmentation.label_mask
        classes = analyse_label_mask(label_mask, self._names)
        pngs = render_pngs(image, label_mask, self._colors)
        elapsed = round(time.perf_counter() - started, 4)
        height, width = image.shape[:2]
        result = InspectionResult.model_validate(
            {
                "image_shape": ImageShape(height=height, width=width),
                "processing_time_seconds": elapsed,
                "engine": segmentation.engine,
                "provenance": segmentation.provenance or None,
                "classes": classes,
            }
        )
        return UploadResponse(
            filename=filename,
            model_name=self.model_name,
            model_version=self.model_version,
            processing_time_seconds=elapsed,
            result_json=result,
            images=ResultImages(**{key: _b64(png) for key, png in pngs.items()}),
        )
