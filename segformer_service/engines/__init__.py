"""Segmentation engines; importing this package registers the built-in ones."""

from segformer_service.engines.base import (
    LabelMask,
    SegmentationEngine,
    available_engines,
    create_engine,
    register_engine,
)
from segformer_service.engines.classical import ClassicalEngine

register_engine("classical", ClassicalEngine)

__all__ = [
    "ClassicalEngine",
    "LabelMask",
    "SegmentationEngine",
    "available_engines",
    "create_engine",
    "register_engine",
]
