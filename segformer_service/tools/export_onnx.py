"""Export a Hugging Face SegFormer to ONNX for the reference service's ``onnx`` engine.

Needs ``torch`` and ``transformers`` (test/export dependencies only; the service
itself needs only onnxruntime). Two sources:

* ``--model DIR``: a trained model saved with ``save_pretrained`` (the customer's
  own weights; nothing is downloaded: the folder must hold ``config.json`` and
  the weights).
* ``--tiny`` / ``--mit-b0``: a SegFormer built from a ``SegformerConfig`` with
  random weights (tiny hidden sizes for tests; MiT-b0 sizes for speed figures).

The output folder gets ``model.onnx`` (input ``pixel_values`` ``(N, 3, H, W)``
float32, output ``logits`` ``(N, C, H/4, W/4)``, batch/height/width dynamic),
``config.json`` (with ``id2label``) and ``preprocessor_config.json`` (mean, std,
size), i.e. everything the engine reads.

Usage::

    python -m segformer_service.tools.export_onnx --tiny --out models/tiny
    python -m segformer_service.tools.export_onnx --model path/to/trained --size 512 \\
        --out models/mine
    REFERENCE_SERVICE_ENGINE=onnx REFERENCE_SERVICE_ONNX_MODEL=models/mine/model.onnx \\
        python -m segformer_service
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path
from typing import Any

DEEPPCB_LABELS = (
    "background",
    "open",
    "short",
    "mousebite",
    "spur",
    "spurious_copper",
    "pin_hole",
)
"""Channel names of the built (random-weight) models: background + the six DeepPCB classes."""

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def build_model(kind: str, seed: int = 0) -> Any:
    """A ``SegformerForSemanticSegmentation`` with random weights, in eval mode.

    Args:
        kind: ``"tiny"`` (2 stages, hidden sizes 8/16: a few thousand parameters)
            or ``"mit-b0"`` (SegFormer-B0's encoder sizes, 256-channel decoder).
        seed: torch random seed for the weights.
    """
    import torch
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    torch.manual_seed(seed)
    labels = {i: name for i, name in enumerate(DEEPPCB_LABELS)}
    common: dict[str, Any] = {
        "id2label": labels,
        "label2id": {v: k for k, v in labels.items()},
        "num_labels": len(labels),
    }
    if kind == "tiny":
        config = SegformerConfig(
            num_encoder_blocks=2,
            depths=[1, 1],
            sr_ratios=[4, 2],
            hidden_sizes=[8, 16],
            patch_sizes=[7, 3],
            strides=[4, 2],
            num_attention_heads=[1, 1],
            mlp_ratios=[2, 2],
            decoder_hidden_size=16,
            **common,
        )
    elif kind == "mit-b0":
        config = SegformerConfig(decoder_hidden_size=256, **common)  # defaults = MiT-b0
    else:
        raise ValueError(f"unknown model kind {kind!r}")
    return SegformerForSemanticSegmentation(config).eval()


class _LogitsOnly:
    """Wraps a SegFormer so that ``forward(pixel_values)`` returns only the logits."""

    def __new__(cls, model: Any) -> Any:
        import torch

        class Wrapper(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
                return self.model(pixel_values=pixel_values).logits

        return Wrapper().eval()


def export(model: Any, out_dir: Path, size: int, opset: int = 17) -> Path:
    """Write ``model.onnx``, ``config.json`` and ``preprocessor_config.json`` into ``out_dir``.

    Uses ``torch.onnx.export`` (TorchScript exporter, ``dynamo=False``) with
    dynamic batch, height and width.

    Returns:
        the path of ``model.onnx``.
    """
    import torch

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "model.onnx"
    dummy = torch.zeros(1, 3, size, size, dtype=torch.float32)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _LogitsOnly(model),
            (dummy,),
            str(path),
            input_names=["pixel_values"],
            output_names=["logits"],
            dynamic_axes={
                "pixel_values": {0: "batch", 2: "height", 3: "width"},
                "logits": {0: "batch", 2: "height_4", 3: "width_4"},
            },
            opset_version=opset,
            dynamo=False,
        )
    config = model.config.to_dict()
    (out_dir / "config.json").write_text(json.dumps(config, indent=2, default=str), "utf-8")
    processor = {
        "image_processor_type": "SegformerImageProcessor",
        "do_resize": True,
        "size": {"height": size, "width": size},
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": IMAGENET_MEAN,
        "image_std": IMAGENET_STD,
    }
    (out_dir / "preprocessor_config.json").write_text(json.dumps(processor, indent=2), "utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and export; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m segformer_service.tools.export_onnx")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", type=Path, help="folder of a save_pretrained SegFormer")
    source.add_argument("--tiny", action="store_true", help="tiny random-weight SegFormer")
    source.add_argument("--mit-b0", action="store_true", help="MiT-b0-sized random weights")
    parser.add_argument("--size", type=int, default=None, help="input side, px (default 64/512)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    args = parser.parse_args(argv)
    if args.model is not None:
        from transformers import SegformerForSemanticSegmentation

        model = SegformerForSemanticSegmentation.from_pretrained(
            args.model, local_files_only=True
        ).eval()
        size = args.size or 512
    else:
        model = build_model("tiny" if args.tiny else "mit-b0")
        size = args.size or (64 if args.tiny else 512)
    print(export(model, args.out, size))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
