"""Segmentation engines; importing this package registers the built-in ones.

``classical`` (single image), ``template`` (golden-board comparison) and ``onnx``
(a SegFormer-style ONNX model; onnxruntime is imported only when it is built).
"""

from segformer_service.config import ServiceSettings
from segformer_service.engines.base import (
    LabelMask,
    Segmentation,
    SegmentationEngine,
    available_engines,
    create_engine,
    register_engine,
    segment_with_provenance,
)
from segformer_service.engines.classical import ClassicalEngine
from segformer_service.engines.template import TemplateEngine


def _onnx_engine(settings: ServiceSettings) -> SegmentationEngine:
    from segformer_service.engines.onnx import OnnxEngine

    return OnnxEngine(settings)


register_engine("classical", ClassicalEngine)
register_engine("template", TemplateEngine)
register_engine("onnx", _onnx_engine)

__all__ = [
    "ClassicalEngine",
    "LabelMask",
    "Segmentation",
    "SegmentationEngine",
    "TemplateEngine",
    "available_engines",
    "create_engine",
    "register_engine",
    "segment_with_provenance",
]
