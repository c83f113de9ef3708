"""Segmentation engine interface and the registry that picks an engine by name.

An engine turns one PCB image into a *label mask*: an ``(H, W)`` integer array
whose value at each pixel is the class id of the defect class the pixel belongs
to, ``0`` for background (no defect). Class ids come from
:class:`~segformer_service.config.ServiceSettings` (``class_ids``).

To add an engine (for example a SegFormer ONNX model), write a class with a
``name`` attribute and a ``segment`` method and register a factory::

    register_engine("segformer_onnx", lambda settings: SegformerOnnxEngine(settings))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from segformer_service.config import ServiceSettings

_BAND_PIXELS = 1 << 20
"""Pixels per band of rows in :func:`as_grey` (bounds its float32 scratch memory)."""

LabelMask = NDArray[np.int32]
"""``(H, W)`` array of class ids, 0 = background."""


@runtime_checkable
class SegmentationEngine(Protocol):
    """A defect-segmentation engine."""

    name: str

    def segment(self, image: NDArray[np.uint8]) -> LabelMask:
        """Segment defects in one image.

        Args:
            image: ``(H, W)`` grey or ``(H, W, 3)`` RGB image, ``uint8``.

        Returns:
            ``(H, W)`` ``int32`` label mask of class ids, ``0`` = background.

        Raises:
            ValueError: if ``image`` does not have one of the two shapes above.
        """
        ...


@dataclass
class Segmentation:
    """A label mask with the provenance of the engine that made it.

    ``engine`` names the engine that produced ``label_mask`` (for example
    ``classical`` when the ``template`` engine fell back to it); ``provenance``
    holds engine-specific facts for the answer's ``provenance`` object (template
    file name, registration offset, match score, fallback reason, model file).
    """

    label_mask: LabelMask
    engine: str
    provenance: dict[str, Any] = field(default_factory=dict)


def segment_with_provenance(engine: SegmentationEngine, image: NDArray[np.uint8]) -> Segmentation:
    """Run ``engine`` on ``image``; engines without provenance get an empty one.

    An engine may offer ``segment_with_provenance(image) -> Segmentation``
    besides ``segment``; this helper calls it when present.

    Raises:
        ValueError: if ``image`` is neither ``(H, W)`` nor ``(H, W, 3)``.
    """
    detailed = getattr(engine, "segment_with_provenance", None)
    if callable(detailed):
        result: Segmentation = detailed(image)
        return result
    return Segmentation(engine.segment(image), engine.name)


EngineFactory = Callable[[ServiceSettings], SegmentationEngine]

_REGISTRY: dict[str, EngineFactory] = {}


def register_engine(name: str, factory: EngineFactory) -> None:
    """Register ``factory`` under ``name`` (a later registration replaces an earlier one)."""
    _REGISTRY[name] = factory


def available_engines() -> list[str]:
    """Names of the registered engines, sorted."""
    return sorted(_REGISTRY)


def create_engine(settings: ServiceSettings) -> SegmentationEngine:
    """Build the engine named by ``settings.engine``.

    Raises:
        ValueError: if no engine of that name is registered.
    """
    try:
        factory = _REGISTRY[settings.engine]
    except KeyError:
        known = ", ".join(available_engines()) or "none"
        raise ValueError(
            f"unknown segmentation engine {settings.engine!r} (available: {known})"
        ) from None
    return factory(settings)


def as_grey(image: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """Return ``image`` as an ``(H, W)`` ``uint8`` grey image.

    RGB is converted with the ITU-R BT.601 luma weights (0.299, 0.587, 0.114).

    Raises:
        ValueError: if ``image`` is neither ``(H, W)`` nor ``(H, W, 3)``.
    """
    if image.ndim == 2:
        return image.astype(np.uint8, copy=False)
    if image.ndim == 3 and image.shape[2] == 3:
        # Converted in bands of rows: a whole-image float32 copy is 12 bytes per pixel
        # (600 MB for 50 Mpx); a band of ~1 Mpx costs 12 MB. Each pixel's arithmetic is
        # the same, so the result is the same bytes.
        weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
        grey = np.empty(image.shape[:2], dtype=np.uint8)
        rows = max(1, _BAND_PIXELS // max(1, image.shape[1]))
        for top in range(0, image.shape[0], rows):
            luma = image[top : top + rows].astype(np.float32) @ weights
            grey[top : top + rows] = np.clip(np.rint(luma), 0, 255)
        return grey
    raise ValueError(f"expected an (H, W) or (H, W, 3) image, got shape {image.shape}")
