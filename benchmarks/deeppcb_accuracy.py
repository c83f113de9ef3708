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
detections are grown by ``--box-margin`` pixels (default 10, one number for
every class) on each side before matching; the tight boxes are always scored
too. ``--split`` also scores the two halves of the sample, ``--golden`` (template
engine) counts the false calls on the defect-free templates, ``--rescanned``
on simulated re-scans of them (:func:`rescanned`). False calls per defective
board = (detections - true positives) / images at the grown margin. Speed is printed
as images per second of wall time and per core (images / CPU seconds of this
process, which is what a busy shared machine distorts least).

Usage::

    python benchmarks/deeppcb_accuracy.py [--deeppcb DIR] [--engine template] \
        [--templates DIR] [--box-margin 10] [--split] [--golden] [--rescanned] [--every K] \
        [--set template_tolerance_px=2 ...]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from segformer_service.analysis import analyse_label_mask  # noqa: E402
from segformer_service.config import ServiceSettings  # noqa: E402
from segformer_service.engines import create_engine, segment_with_provenance  # noqa: E402

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


def run_engine(
    engine: Any, names: dict[int, str], image_paths: list[Path]
) -> tuple[list[dict[str, dict[str, Any]]], float, float, Counter[str]]:
    """Analyse every image; returns the ``classes`` per image, wall and CPU s, engines used."""
    answers: list[dict[str, dict[str, Any]]] = []
    used: Counter[str] = Counter()
    wall, cpu = time.perf_counter(), time.process_time()
    for image_path in image_paths:
        with Image.open(image_path) as img:
            pixels = np.asarray(img.convert("L"))
        segmentation = segment_with_provenance(engine, pixels)
        used[segmentation.engine] += 1
        answers.append(analyse_label_mask(segmentation.label_mask, names))
    return answers, time.perf_counter() - wall, time.process_time() - cpu, used


def score(
    deeppcb: Path,
    image_paths: list[Path],
    answers: list[dict[str, dict[str, Any]]],
    names: dict[int, str],
    margin: int,
) -> dict[int, Counts]:
    """DeepPCB counts by class id for boxes grown by ``margin`` pixels."""
    counts = {class_id: Counts() for class_id in names}
    for image_path, classes in zip(image_paths, answers, strict=True):
        truth = read_annotations(deeppcb / "annotations" / f"{image_path.stem}.txt")
        found = detection_boxes(classes, margin)
        for class_id, c in counts.items():
            dets, gts = found.get(class_id, []), truth.get(class_id, [])
            c.detections += len(dets)
            c.truths += len(gts)
            c.tp += greedy_matches(dets, gts, IOU_THRESHOLD)
    return counts


def overall(counts: dict[int, Counts]) -> Counts:
    """Sum of the per-class counts."""
    total = Counts()
    for c in counts.values():
        total.tp += c.tp
        total.detections += c.detections
        total.truths += c.truths
    return total


def golden_false_calls(deeppcb: Path, settings: ServiceSettings) -> tuple[int, int, int, int]:
    """Run every defect-free template through the engine; every detection is a false call.

    Two runs: against the full template library (each template finds itself),
    and leave-one-out (the template's own file is removed from the library, so
    it must match another board or fall back to ``classical``).

    Returns:
        templates, false calls with the full library, false calls leave-one-out,
        leave-one-out images that fell back to ``classical``.
    """
    from segformer_service.engines.template import TemplateEngine, load_templates

    library = load_templates(deeppcb / "templates", settings.template_coarse_factor)
    names = settings.class_name_by_id()
    full = TemplateEngine(settings, library)
    calls_full = calls_loo = fallbacks = 0
    for template in library:
        calls_full += sum(
            c["total_regions"]
            for c in analyse_label_mask(full.segment(template.grey), names).values()
        )
        others = TemplateEngine(settings, [t for t in library if t.name != template.name])
        seg = others.segment_with_provenance(template.grey)
        fallbacks += seg.engine != "template"
        calls_loo += sum(
            c["total_regions"] for c in analyse_label_mask(seg.label_mask, names).values()
        )
    return len(library), calls_full, calls_loo, fallbacks


def rescanned(
    grey: NDArray[np.uint8], rng: np.random.Generator, width_px: float
) -> NDArray[np.uint8]:
    """A simulated re-scan of a defect-free board: same copper, new scan.

    The board's copper (``grey`` < 128, 3 x 3 median: the board without the
    scan's one-pixel specks) becomes a signed distance field (pixels, > 0 in
    copper), which is moved as a new placement would move it (rotation uniform
    in ±0.2° about the centre, shift uniform in ±3 px on each axis, bilinear),
    grown by ``width_px / 2`` on each edge (line width ``width_px``: −1, 0 or
    +1 px) and thresholded again with a smooth random threshold field (std
    0.15 px, correlation length 2 px: edges binarised anew, not copied); the
    binary result is drawn at grey levels 20 / 235 and blurred (Gaussian
    σ 0.6 px) like a scan.

    Args:
        grey: ``(H, W)`` ``uint8`` golden image (dark copper).
        rng: random source (the benchmark seeds it, so runs repeat).
        width_px: change of every conductor's width, pixels.

    Returns:
        ``(H, W)`` ``uint8`` re-scanned image.
    """
    from scipy import ndimage as ndi
    from skimage.transform import AffineTransform, warp

    copper = ndi.median_filter((grey < 128).astype(np.uint8), 3) > 0
    inside = ndi.distance_transform_edt(copper) - 0.5
    outside = ndi.distance_transform_edt(~copper) - 0.5
    field = np.where(copper, inside, -outside).astype(np.float32)
    h, w = grey.shape
    angle = np.deg2rad(rng.uniform(-0.2, 0.2))
    dy, dx = rng.uniform(-3.0, 3.0, 2)
    centre = np.array([w / 2, h / 2])
    move = (
        AffineTransform(translation=-centre)
        + AffineTransform(rotation=angle)
        + AffineTransform(translation=centre + np.array([dx, dy]))
    )
    moved = warp(field, move.inverse, order=1, mode="edge", preserve_range=True)
    noise = ndi.gaussian_filter(rng.normal(0.0, 1.0, (h, w)), 2.0)
    noise *= 0.15 / max(float(noise.std()), 1e-6)
    new_copper = moved + width_px / 2 + noise > 0
    scan = ndi.gaussian_filter(np.where(new_copper, 20.0, 235.0), 0.6)
    return np.clip(np.rint(scan), 0, 255).astype(np.uint8)


def rescanned_golden_calls(
    deeppcb: Path, settings: ServiceSettings, every: int = 1
) -> tuple[int, int, int, Counter[str]]:
    """Re-scan every ``every``-th template (:func:`rescanned`) and count the engine's calls.

    The library is the unchanged templates folder, so each re-scan must find its
    own golden image; line widths −1, 0, +1 px in turn; seed 0.

    Returns:
        re-scanned boards, calls (every region is a false call), boards with a
        call, and the calls by class name.
    """
    from segformer_service.engines.template import TemplateEngine, load_templates

    library = load_templates(deeppcb / "templates", settings.template_coarse_factor)
    names = settings.class_name_by_id()
    engine = TemplateEngine(settings, library)
    rng = np.random.default_rng(0)
    calls = boards = 0
    by_class: Counter[str] = Counter()
    chosen = library[::every]
    for number, template in enumerate(chosen):
        grey = rescanned(template.grey, rng, (-1.0, 0.0, 1.0)[number % 3])
        classes = analyse_label_mask(engine.segment(grey), names)
        found = {name: c["total_regions"] for name, c in classes.items() if c["total_regions"]}
        by_class.update(found)
        calls += sum(found.values())
        boards += bool(found)
    return len(chosen), calls, boards, by_class


def false_calls(counts: dict[int, Counts]) -> int:
    """Detections that are no true positive (false alarms and wrong classes)."""
    total = overall(counts)
    return total.detections - total.tp


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
        help="DeepPCB folder with images/, templates/ and annotations/ (default: %(default)s)",
    )
    parser.add_argument(
        "--engine", default="classical", help="classical (default), template or onnx"
    )
    parser.add_argument(
        "--templates",
        type=Path,
        default=None,
        help="golden images for --engine template (default: DEEPPCB/templates)",
    )
    parser.add_argument(
        "--box-margin",
        type=int,
        default=10,
        help="pixels added on each side of every detection box (default: 10); "
        "the tight boxes (0) are always scored too",
    )
    parser.add_argument(
        "--split",
        action="store_true",
        help="also score the two halves of the sample (even / odd position in name order)",
    )
    parser.add_argument(
        "--golden",
        action="store_true",
        help="with --engine template: false calls on the defect-free templates",
    )
    parser.add_argument(
        "--rescanned",
        action="store_true",
        help="with --engine template: calls on re-scanned golden boards (shifted <= 3 px, "
        "rotated <= 0.2 deg, edges re-thresholded, line width -1/0/+1 px)",
    )
    parser.add_argument(
        "--every",
        type=int,
        default=1,
        help="score every k-th image (and re-scan every k-th template) only, for quick runs",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a ServiceSettings field, e.g. --set template_tolerance_px=3",
    )
    args = parser.parse_args(argv)
    if not (args.deeppcb / "images").is_dir():
        parser.error(
            f"no DeepPCB images folder under {args.deeppcb} (the 150-pair test split;"
            " set DEEPPCB_DIR or --deeppcb; --deeppcb samples/deeppcb scores the six samples)"
        )
    overrides: dict[str, Any] = dict(item.split("=", 1) for item in args.set)
    overrides["engine"] = args.engine
    if args.engine == "template":
        overrides.setdefault("templates_dir", str(args.templates or args.deeppcb / "templates"))
    settings = ServiceSettings(**overrides)
    names = settings.class_name_by_id()
    image_paths = [
        p
        for p in sorted((args.deeppcb / "images").glob("*.jpg"))
        if (args.deeppcb / "annotations" / f"{p.stem}.txt").is_file()
    ][:: args.every]
    engine = create_engine(settings)
    answers, wall, cpu, used = run_engine(engine, names, image_paths)
    n = len(image_paths)
    print(
        f"DeepPCB: {n} images, engine {settings.engine!r} "
        f"(masks made by: {dict(used)}), IoU > {IOU_THRESHOLD}, same class"
    )
    margins = [0] if args.box_margin == 0 else [0, args.box_margin]
    for margin in margins:
        label = "tight boxes" if margin == 0 else f"boxes grown by {margin} px on each side"
        print(f"\n{label}:")
        counts = score(args.deeppcb, image_paths, answers, names, margin)
        print(format_table(counts, names))
        if margin:
            wrong = false_calls(counts)
            print(
                f"false calls (detections that are no true positive): {wrong} "
                f"({wrong / n:.2f} per defective board)"
            )
    if args.split:
        for half, name in ((0, "even"), (1, "odd")):
            part = [
                (p, a)
                for i, (p, a) in enumerate(zip(image_paths, answers, strict=True))
                if i % 2 == half
            ]
            counts = score(
                args.deeppcb, [p for p, _ in part], [a for _, a in part], names, margins[-1]
            )
            per_class = ", ".join(f"{names[k]} {c.f_score:.3f}" for k, c in sorted(counts.items()))
            print(
                f"half {name} ({len(part)} images, margin {margins[-1]} px): "
                f"F {overall(counts).f_score:.3f} ({per_class})"
            )
    if args.golden and args.engine == "template":
        templates, full, loo, fallbacks = golden_false_calls(args.deeppcb, settings)
        print(
            f"\ngolden boards: {templates} defect-free templates; false calls "
            f"{full} ({full / templates:.2f}/board) against the full library (each finds itself), "
            f"{loo} ({loo / templates:.2f}/board) leave-one-out "
            f"({fallbacks} fell back to classical: no other template of that board)"
        )
    if args.rescanned and args.engine == "template":
        boards, calls, with_call, by_class = rescanned_golden_calls(
            args.deeppcb, settings, args.every
        )
        print(
            f"\nre-scanned golden boards: {boards}; calls {calls} ({calls / boards:.2f}/board), "
            f"{with_call} boards with a call {dict(by_class)}"
        )
    print(
        f"\nspeed: {n / wall:.1f} images/s wall, {n / cpu:.1f} images/s per core "
        f"(CPU time {cpu:.2f} s; engine + region analysis, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f} at the end)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
