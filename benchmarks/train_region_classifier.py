"""Train the template engine's region classifier on the DeepPCB train/val split.

Rebuilds ``segformer_service/engines/template_classifier.npz`` (the default of
``REFERENCE_SERVICE_TEMPLATE_CLASSIFIER``). Steps:

1. Every image of ``--deeppcb`` (default: the 1,000-pair train/val split, never
   the 150-pair test sample) goes through the template engine with the
   topology rules alone; each difference region is described by the numbers of
   :data:`segformer_service.engines.region_classifier.FEATURE_NAMES`.
2. A region's label is the class of the annotation box it matches (its box
   grown by ``--box-margin`` px, IoU > 0.33, best IoU, any class), or "no
   defect" when it matches none.
3. Re-scanned golden boards (``--rescans``: every k-th template, default every
   one, re-scanned as in ``benchmarks/deeppcb_accuracy.py --rescanned`` with
   line widths −1/0/+1 px in turn and a seed other than the benchmark's) add
   regions that are all "no defect".
4. A scikit-learn ``RandomForestClassifier`` (60 trees, depth <= 16, half the
   features per split, fixed seed; chosen by leave-one-layout-out errors) is fitted and written
   as plain arrays (:class:`~segformer_service.engines.region_classifier.Forest`).

``--validate`` first fits without each board layout in turn (leave one layout
out) and prints the errors and confusion on the left-out layouts. scikit-learn is needed here only
(``requirements-test.txt``), not by the service.

Usage::

    python benchmarks/train_region_classifier.py [--deeppcb DIR] [--out FILE] \\
        [--validate] [--rescans 1] [--cache FILE]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

from deeppcb_accuracy import box_iou, read_annotations, rescanned  # noqa: E402

from segformer_service.config import DEFAULT_TEMPLATE_CLASSIFIER, ServiceSettings  # noqa: E402
from segformer_service.engines.region_classifier import (  # noqa: E402
    FEATURE_NAMES,
    NO_DEFECT,
    RULE_CLASSES,
    Forest,
    Region,
)
from segformer_service.engines.template import (  # noqa: E402
    TemplateEngine,
    _valid_area,
    load_templates,
)

DEFAULT_TRAINVAL = REPO_ROOT.parent / "shared" / "datasets" / "deeppcb-trainval"
CLASSES: tuple[str, ...] = (NO_DEFECT, *RULE_CLASSES)
"""Forest classes: index 0 = no defect, then the DeepPCB type ids 1..6 in order."""


def image_regions(
    engine: TemplateEngine, grey: NDArray[np.uint8]
) -> tuple[list[Region], NDArray[np.float32]]:
    """The rule regions of one image and their features (none if no template fits)."""
    match = engine.find_template(grey)
    if match is None or not engine.acceptable(match):
        return [], np.zeros((0, len(FEATURE_NAMES)), dtype=np.float32)
    s = engine._settings
    valid = _valid_area(grey.shape, match, s.template_tolerance_px + 1)
    _, regions, features = engine.compare_regions(grey, match.registered, valid)
    return regions, features


def label_regions(
    regions: list[Region], truth: dict[int, list[tuple[float, float, float, float]]], margin: int
) -> list[int]:
    """Class index (into :data:`CLASSES`) of each region by its best-IoU annotation box."""
    labels = []
    for region in regions:
        sl = region.box
        box = (
            sl[1].start - margin,
            sl[0].start - margin,
            sl[1].stop + margin,
            sl[0].stop + margin,
        )
        best, best_kind = 0.33, 0
        for kind, boxes in truth.items():
            for gt in boxes:
                iou = box_iou(box, gt)
                if iou > best:
                    best, best_kind = iou, kind
        labels.append(best_kind)
    return labels


def collect(
    deeppcb: Path, margin: int, rescans: int
) -> tuple[NDArray[np.float32], NDArray[np.int64], NDArray[np.int64]]:
    """Features, labels and image index of every region of the split (and its re-scans)."""
    settings = ServiceSettings(
        engine="template", templates_dir=str(deeppcb / "templates"), template_classifier=None
    )
    library = load_templates(deeppcb / "templates", settings.template_coarse_factor)
    engine = TemplateEngine(settings, library)
    engine.want_features = True
    features: list[NDArray[np.float32]] = []
    labels: list[int] = []
    groups: list[int] = []
    paths = sorted((deeppcb / "images").glob("*.jpg"))
    for index, path in enumerate(paths):
        annotations = deeppcb / "annotations" / f"{path.stem}.txt"
        if not annotations.is_file():
            continue
        with Image.open(path) as img:
            grey = np.asarray(img.convert("L"), dtype=np.uint8)
        regions, feats = image_regions(engine, grey)
        features.append(feats)
        labels += label_regions(regions, read_annotations(annotations), margin)
        groups += [index] * len(regions)
        if index % 100 == 0:
            print(f"  {index}/{len(paths)} images, {len(labels)} regions", flush=True)
    if rescans:
        rng = np.random.default_rng(12345)
        for number, template in enumerate(library[::rescans]):
            grey = rescanned(template.grey, rng, (-1.0, 0.0, 1.0)[number % 3])
            regions, feats = image_regions(engine, grey)
            features.append(feats)
            labels += [0] * len(regions)
            groups += [len(paths) + number] * len(regions)
        print(f"  re-scanned golden boards: {len(library[::rescans])}", flush=True)
    return (
        np.concatenate(features) if features else np.zeros((0, len(FEATURE_NAMES)), np.float32),
        np.asarray(labels, dtype=np.int64),
        np.asarray(groups, dtype=np.int64),
    )


def fit(features: NDArray[np.float32], labels: NDArray[np.int64]) -> Forest:
    """Fit the random forest and convert it to a :class:`Forest`."""
    from sklearn.ensemble import RandomForestClassifier

    model = RandomForestClassifier(
        n_estimators=60, max_depth=16, max_features=0.5, random_state=0, n_jobs=1
    )
    model.fit(features, labels)
    feature, threshold, left, right, value, roots = [], [], [], [], [], []
    offset = 0
    for tree in model.estimators_:
        t = tree.tree_
        roots.append(offset)
        feature.append(np.where(t.children_left >= 0, t.feature, 0))
        threshold.append(t.threshold)
        left.append(np.where(t.children_left >= 0, t.children_left + offset, -1))
        right.append(np.where(t.children_right >= 0, t.children_right + offset, -1))
        shares = np.zeros((t.node_count, len(CLASSES)), dtype=np.float32)
        raw = t.value[:, 0, :]
        shares[:, tree.classes_.astype(int)] = raw / raw.sum(axis=1, keepdims=True)
        value.append(shares)
        offset += t.node_count
    return Forest(
        feature=np.concatenate(feature).astype(np.int32),
        threshold=np.concatenate(threshold).astype(np.float32),
        left=np.concatenate(left).astype(np.int32),
        right=np.concatenate(right).astype(np.int32),
        value=np.concatenate(value),
        roots=np.asarray(roots, dtype=np.int32),
        classes=CLASSES,
        feature_names=FEATURE_NAMES,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--deeppcb",
        type=Path,
        default=Path(os.environ.get("DEEPPCB_TRAINVAL_DIR", DEFAULT_TRAINVAL)),
        help="DeepPCB train/val folder (default: %(default)s)",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_TEMPLATE_CLASSIFIER)
    parser.add_argument("--box-margin", type=int, default=8)
    parser.add_argument(
        "--rescans", type=int, default=1, help="re-scan every k-th template (0 = none)"
    )
    parser.add_argument("--validate", action="store_true")
    parser.add_argument("--cache", type=Path, default=None, help="features .npz to reuse")
    args = parser.parse_args(argv)
    if args.cache is not None and args.cache.is_file():
        with np.load(args.cache) as data:
            features, labels, groups = data["features"], data["labels"], data["groups"]
    else:
        features, labels, groups = collect(args.deeppcb, args.box_margin, args.rescans)
        if args.cache is not None:
            np.savez_compressed(args.cache, features=features, labels=labels, groups=groups)
    print(f"{len(labels)} regions; by class: {np.bincount(labels, minlength=len(CLASSES))}")
    if args.validate:
        # Leave one board layout out (the first 5 digits of a DeepPCB name): the
        # 150-pair sample is mostly of layouts the train/val split does not have.
        names = [p.name[:5] for p in sorted((args.deeppcb / "images").glob("*.jpg"))]
        layout = np.array([names[g] if g < len(names) else "rescan" for g in groups])
        rule = features[:, : len(RULE_CLASSES)].argmax(axis=1) + 1
        confusion = np.zeros((len(CLASSES), len(CLASSES)), dtype=int)
        scanned = layout != "rescan"
        for name in sorted(set(layout[scanned])):
            held = layout == name
            forest = fit(features[~held], labels[~held])
            predicted = forest.predict_proba(features[held]).argmax(axis=1)
            np.add.at(confusion, (labels[held], predicted), 1)
        errors = int(confusion.sum() - np.trace(confusion))
        print(
            f"leave one layout out ({len(set(layout[scanned]))} layouts, {scanned.sum()} "
            f"regions): forest {errors} wrong, rules {int((rule != labels)[scanned].sum())} wrong"
        )
        print("confusion (rows truth, columns forest):", ["none", *RULE_CLASSES])
        print(confusion)
    forest = fit(features, labels)
    forest.save(args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes, {len(forest.roots)} trees)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
