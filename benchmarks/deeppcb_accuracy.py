"""Accuracy of the reference model service's engine on the DeepPCB sample.

Runs the engine and the region analysis in-process (no HTTP) over every image of
the DeepPCB folder and prints per-class precision, recall and F-score against
the annotations, following the DeepPCB protocol: a detected region's bounding
box is a true positive when its IoU with a not yet matched ground-truth box of
the same class is > 0.33 (greedy one-to-one matching, highest IoU first);
F = 2PR/(P+R).

DeepPCB annotation boxes enclose the defect with a margin of about 10 pixels
(measured on this sample: median margin 10 px between the template/test
difference and the box), while the service reports tight region boxes, so
detections are grown by ``--box-margin`` pixels (default 10) on each side
before matching; ``--box-margin 0`` scores the tight boxes.

Usage::

    python benchmarks/deeppcb_accuracy.py [--deeppcb DIR] [--box-margin 10] \
        [--set spur_min_area_px=20 ...]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from segformer_service.analysis import analyse_label_mask  # noqa: E402
from segformer_service.config import ServiceSettings  # noqa: E402
from segformer_service.engines import create_engine  # noqa: E402

DEFAULT_DEEPPCB = REPO_ROOT.parent / "shared" / "datasets" / "deeppcb"
IOU_THRESHOLD = 0.33

Box = tuple[float, float, float, float]
"""x1, y1, x2, y2 in pixels (DeepPCB convention)."""


@dataclass
class Counts:
    """True positives, detections and ground-truth boxes of one class."""

    tp: int = 0
    detections: int = 0
    truths: int = 0

    @property
    def precision(self) -> float:
        return self.tp / self.detections if self.detections else 0.0

    @property
    def recall(self) -> float:
        return self.tp / self.truths if self.truths else 0.0

    @property
    def f_score(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two ``x1, y1, x2, y2`` boxes (areas in pixels²)."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def greedy_matches(detections: list[Box], truths: list[Box], threshold: float) -> int:
    """Number of one-to-one detection/truth pairs with IoU > ``threshold``, best IoU first."""
    pairs = sorted(
        ((box_iou(d, t), i, j) for i, d in enumerate(detections) for j, t in enumerate(truths)),
        reverse=True,
    )
    used_d: set[int] = set()
    used_t: set[int] = set()
    for iou, i, j in pairs:
        if iou <= threshold:
            break
        if i not in used_d and j not in used_t:
            used_d.add(i)
            used_t.add(j)
    return len(used_d)


def read_annotations(path: Path) -> dict[int, list[Box]]:
    """Ground-truth boxes by DeepPCB type id from one ``x1 y1 x2 y2 type`` file."""
    boxes: dict[int, list[Box]] = {}
    for line in path.read_text().splitlines():
        fields = line.replace(",", " ").split()
        if len(fields) != 5:
            continue
        x1, y1, x2, y2, kind = (int(v) for v in fields)
        boxes.setdefault(kind, []).append((x1, y1, x2, y2))
    return boxes


def detection_boxes(classes: dict[str, dict[str, Any]], margin: int) -> dict[int, list[Box]]:
    """Region boxes by class id, grown by ``margin`` pixels on each side."""
    out: dict[int, list[Box]] = {}
    for summary in classes.values():
        for region in summary["regions"]:
            bb = region["bounding_box"]
            out.setdefault(summary["class_id"], []).append(
                (
                    bb["x"] - margin,
                    bb["y"] - margin,
                    bb["x"] + bb["width"] + margin,
                    bb["y"] + bb["height"] + margin,
                )
            )
    return out


def evaluate(
    deeppcb: Path, settings: ServiceSettings, margin: int
) -> tuple[dict[int, Counts], int, float]:
    """Score the engine on every annotated image; returns counts by class id, images, seconds."""
    engine = create_engine(settings)
    names = settings.class_name_by_id()
    counts = {class_id: Counts() for class_id in names}
    images = sorted((deeppcb / "images").glob("*.jpg"))
    started = time.perf_counter()
    for image_path in images:
        annotation = deeppcb / "annotations" / f"{image_path.stem}.txt"
        if not annotation.is_file():
            continue
        with Image.open(image_path) as img:
            pixels = np.asarray(img.convert("L"))
        classes = analyse_label_mask(engine.segment(pixels), names)
        found = detection_boxes(classes, margin)
        truth = read_annotations(annotation)
        for class_id, c in counts.items():
            dets, gts = found.get(class_id, []), truth.get(class_id, [])
            c.detections += len(dets)
            c.truths += len(gts)
            c.tp += greedy_matches(dets, gts, IOU_THRESHOLD)
    return counts, len(images), time.perf_counter() - started


def format_table(counts: dict[int, Counts], names: dict[int, str]) -> str:
    """Markdown table of per-class and overall precision/recall/F-score."""
    rows = [
        "| class | GT boxes | detections | TP | precision | recall | F-score |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    total = Counts()
    for class_id, c in sorted(counts.items()):
        total.tp += c.tp
        total.detections += c.detections
        total.truths += c.truths
        rows.append(
            f"| {class_id} {names[class_id]} | {c.truths} | {c.detections} | {c.tp} "
            f"| {c.precision:.3f} | {c.recall:.3f} | {c.f_score:.3f} |"
        )
    rows.append(
        f"| **all** | {total.truths} | {total.detections} | {total.tp} "
        f"| {total.precision:.3f} | {total.recall:.3f} | {total.f_score:.3f} |"
    )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--deeppcb",
        type=Path,
        default=Path(os.environ.get("DEEPPCB_DIR", DEFAULT_DEEPPCB)),
        help="DeepPCB folder with images/ and annotations/ (default: %(default)s)",
    )
    parser.add_argument("--box-margin", type=int, default=10, help="pixels (default: 10)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a ServiceSettings field, e.g. --set spur_min_area_px=30",
    )
    args = parser.parse_args(argv)
    if not (args.deeppcb / "images").is_dir():
        parser.error(f"no DeepPCB images folder under {args.deeppcb}")
    overrides = dict(item.split("=", 1) for item in args.set)
    settings = ServiceSettings(**overrides)
    counts, n_images, seconds = evaluate(args.deeppcb, settings, args.box_margin)
    print(
        f"DeepPCB: {n_images} images, engine {settings.engine!r}, IoU > {IOU_THRESHOLD}, "
        f"detection boxes grown by {args.box_margin} px"
    )
    print(format_table(counts, settings.class_name_by_id()))
    print(f"{n_images / seconds:.1f} images/second ({seconds:.2f} s, engine + region analysis)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
