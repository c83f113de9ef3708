"""Learned class decision for the template engine's difference regions.

The template engine's topology rules find the difference regions and give each
a class; their confusions on DeepPCB are short vs spur (a bridge that is not
quite closed in the binarised scan) and open vs mousebite (a hairline crack vs a
bite out of an edge). This module describes every region by a few shape and
local-topology numbers (:data:`FEATURE_NAMES`, all lengths in pixels) and lets a
small random forest, trained on the DeepPCB train/val split by
``benchmarks/train_region_classifier.py``, decide its class or drop it as no
defect. The forest is stored as plain arrays in a ``.npz`` file (no pickle) and
evaluated with numpy, so the service needs no scikit-learn at run time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage as ndi

RULE_CLASSES: tuple[str, ...] = (
    "open",
    "short",
    "mousebite",
    "spur",
    "spurious_copper",
    "pin_hole",
)
"""Class names the topology rules give; one-hot features in this order."""

EXTRA_COPPER = frozenset({"short", "spur", "spurious_copper"})
"""Rule classes of extra copper (the others are missing copper)."""

NO_DEFECT = ""
"""The forest's class for a region that is no defect (a false call)."""

FEATURE_NAMES: tuple[str, ...] = (
    *(f"rule_{name}" for name in RULE_CLASSES),
    "area",
    "height",
    "width",
    "inscribed_radius",
    "fill",
    "perimeter_ratio",
    "depth",
    "copper_components_change",
    "substrate_components_change",
    "copper_components_change_eroded",
    "copper_components_change_dilated",
    "border_image_copper",
    "border_template_copper",
    "distance_to_edge",
    "width_explains_px",
)
"""Numbers describing one region (see :func:`region_features`)."""

_EIGHT = ndi.generate_binary_structure(2, 2)
_FOUR = ndi.generate_binary_structure(2, 1)
_PAD = 8
_DISKS = {
    k: (np.add.outer(np.arange(-k, k + 1) ** 2, np.arange(-k, k + 1) ** 2) <= k * k)
    for k in (1, 2, 3)
}
"""Disks of radius 1-3 px (scikit-image ``disk``)."""
"""Pixels around a region's box in which its neighbourhood is measured."""


@dataclass
class Region:
    """One connected region of one class of a label mask."""

    rule_class: str
    box: tuple[slice, slice]
    mask: NDArray[np.bool_]
    """``True`` on the region's pixels, shape of ``box``."""


def _components(mask: NDArray[np.bool_], structure: NDArray[np.bool_]) -> int:
    return int(ndi.label(mask, structure=structure)[1])


def conductor_links(
    copper: NDArray[np.bool_], parts: NDArray[np.int32], through: NDArray[np.bool_] | None = None
) -> tuple[set[tuple[int, int]], int]:
    """Which conductors ``copper`` joins, and how many extra pieces it cuts them into.

    Args:
        copper: ``(H, W)`` bool image copper.
        parts: ``(H, W)`` int32 golden-conductor labels (0 = none).
        through: ``(H, W)`` bool, or None: count only copper components with a pixel here.

    Returns:
        The pairs ``(a, b)``, ``a < b``, of ``parts`` labels one 8-connected ``copper``
        component overlaps, and the extra pieces (sum over parts of the components on
        it, minus one). Used by the features here and by the template engine's rules.
    """
    labels, _ = ndi.label(copper, structure=_EIGHT)
    if through is not None:
        keep = np.zeros(int(labels.max()) + 1, dtype=bool)
        keep[labels[through]] = True
        keep[0] = False
        labels[~keep[labels]] = 0
    both = (labels > 0) & (parts > 0)
    by_component: dict[int, set[int]] = {}
    by_part: dict[int, set[int]] = {}
    if both.any():
        # Distinct (component, part) pairs as one integer each: a few, not one per pixel.
        width = int(parts.max()) + 1
        keys = np.unique(labels[both].astype(np.int64) * width + parts[both])
        for component, part in zip((keys // width).tolist(), (keys % width).tolist(), strict=True):
            by_component.setdefault(component, set()).add(part)
            by_part.setdefault(part, set()).add(component)
    pairs = {(a, b) for group in by_component.values() for a in group for b in group if a < b}
    return pairs, sum(len(group) - 1 for group in by_part.values())


def width_explains_px(
    mask: NDArray[np.bool_], img: NDArray[np.bool_], tpl: NDArray[np.bool_], extra: bool
) -> float:
    """Smallest edge move ``k`` (0-3 px) that explains a short (``extra``) or open, else 4.

    0: the image copper through the region joins no golden conductors, or they
    stay joined (split) without the region at all (the bridge or cut is elsewhere).

    Short: with the region's pixels farther than ``k`` from golden copper removed,
    the image copper still joins the same golden conductors (local 8-connected
    components of at least 20 px). Open: with the region's pixels deeper than
    ``k`` inside golden copper given back, golden conductors are split into as
    many image pieces as before. A small ``k`` = a bridge over (cut through) a
    golden gap (neck) of about ``2 k`` px, which a re-scan's line-width change
    can close (cut) on a defect-free board.
    """
    parts, count = ndi.label(tpl, structure=_EIGHT)
    areas = np.bincount(parts.ravel(), minlength=count + 1)
    parts[(areas < 20)[parts]] = 0
    pairs, pieces = conductor_links(img, parts, mask if extra else None)
    if extra and (not pairs or pairs <= conductor_links(img & ~mask, parts)[0]):
        return 0.0
    if not extra and not pieces:
        return 4.0
    if not extra and conductor_links(img | mask, parts)[1] >= pieces:
        return 0.0
    for k in (1, 2, 3):
        footprint = _DISKS[k]
        if extra:
            near = ndi.binary_dilation(np.pad(tpl, k, mode="edge"), structure=footprint)
            after, _ = conductor_links(img & ~(mask & ~near[k:-k, k:-k]), parts)
            if pairs <= after:
                return float(k)
        else:
            far = ndi.binary_dilation(np.pad(~tpl, k, mode="edge"), structure=footprint)
            _, after_pieces = conductor_links(img | (mask & ~far[k:-k, k:-k]), parts)
            if after_pieces >= pieces:
                return float(k)
    return 4.0


def region_features(
    regions: list[Region],
    image_cu: NDArray[np.bool_],
    template_cu: NDArray[np.bool_],
) -> NDArray[np.float32]:
    """``(N, len(FEATURE_NAMES))`` features of ``N`` regions of one image.

    Args:
        regions: the regions found by the topology rules.
        image_cu, template_cu: ``(H, W)`` copper masks of the image and its
            registered template.

    Each region is measured in its box grown by 8 px: area, box size, largest
    inscribed radius, fill of the box, perimeter / sqrt(area), depth into the
    template phase it changes (from that phase's edge), the change (image minus
    template) of the number of copper and substrate components in the window,
    also after a 1 px erosion / dilation of both coppers (a crack or bridge not
    quite through), the share of its 1 px border that is image / template
    copper, its distance to the image edge, and for a short or open the smallest
    edge move that explains it (:func:`width_explains_px`; 0 for other classes).
    """
    h, w = image_cu.shape
    rows: list[list[float]] = []
    for region in regions:
        sl = region.box
        y0, y1 = max(sl[0].start - _PAD, 0), min(sl[0].stop + _PAD, h)
        x0, x1 = max(sl[1].start - _PAD, 0), min(sl[1].stop + _PAD, w)
        win = (slice(y0, y1), slice(x0, x1))
        mask = np.zeros((y1 - y0, x1 - x0), dtype=bool)
        mask[sl[0].start - y0 : sl[0].stop - y0, sl[1].start - x0 : sl[1].stop - x0] = region.mask
        img, tpl = image_cu[win], template_cu[win]
        extra = region.rule_class in EXTRA_COPPER
        inside = ~tpl if extra else tpl
        area = float(mask.sum())
        bh, bw = sl[0].stop - sl[0].start, sl[1].stop - sl[1].start
        radius = float(ndi.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1].max())
        border = ndi.binary_dilation(mask, structure=_EIGHT) & ~mask
        perimeter = float(border.sum())
        inside_dt = ndi.distance_transform_edt(np.pad(inside, 1, mode="edge"))[1:-1, 1:-1]
        depth = float(inside_dt[mask].max()) if area else 0.0
        cu_change = _components(img, _EIGHT) - _components(tpl, _EIGHT)
        sub_change = _components(~img, _FOUR) - _components(~tpl, _FOUR)
        eroded = _components(ndi.binary_erosion(img, structure=_FOUR), _EIGHT) - _components(
            ndi.binary_erosion(tpl, structure=_FOUR), _EIGHT
        )
        dilated = _components(ndi.binary_dilation(img, structure=_FOUR), _EIGHT) - _components(
            ndi.binary_dilation(tpl, structure=_FOUR), _EIGHT
        )
        rows.append(
            [
                *(1.0 if region.rule_class == name else 0.0 for name in RULE_CLASSES),
                area,
                float(bh),
                float(bw),
                radius,
                area / float(bh * bw),
                perimeter / np.sqrt(max(area, 1.0)),
                depth,
                float(cu_change),
                float(sub_change),
                float(eroded),
                float(dilated),
                float(img[border].mean()) if perimeter else 0.0,
                float(tpl[border].mean()) if perimeter else 0.0,
                float(min(sl[0].start, sl[1].start, h - sl[0].stop, w - sl[1].stop)),
                width_explains_px(mask, img, tpl, extra)
                if region.rule_class in ("short", "open")
                else 0.0,
            ]
        )
    return np.asarray(rows, dtype=np.float32).reshape(len(rows), len(FEATURE_NAMES))


@dataclass
class Forest:
    """A random forest stored as arrays: every tree's nodes concatenated.

    ``feature``/``threshold``/``left``/``right``: per node (``left`` = -1 at a
    leaf; child indices are global); ``value``: ``(nodes, classes)`` class
    shares at each node; ``roots``: first node of each tree; ``classes``: class
    names, :data:`NO_DEFECT` for "no defect".
    """

    feature: NDArray[np.int32]
    threshold: NDArray[np.float32]
    left: NDArray[np.int32]
    right: NDArray[np.int32]
    value: NDArray[np.float32]
    roots: NDArray[np.int32]
    classes: tuple[str, ...]
    feature_names: tuple[str, ...]

    @classmethod
    def load(cls, path: Path) -> Forest:
        """Read a forest written by :meth:`save`.

        Raises:
            ValueError: if the file is not a forest or was made for other features.
        """
        try:
            with np.load(path, allow_pickle=False) as data:
                forest = cls(
                    feature=data["feature"].astype(np.int32),
                    threshold=data["threshold"].astype(np.float32),
                    left=data["left"].astype(np.int32),
                    right=data["right"].astype(np.int32),
                    value=data["value"].astype(np.float32),
                    roots=data["roots"].astype(np.int32),
                    classes=tuple(str(c) for c in data["classes"]),
                    feature_names=tuple(str(c) for c in data["feature_names"]),
                )
        except (OSError, KeyError, ValueError) as exc:
            raise ValueError(f"region classifier {path} is not readable: {exc}") from exc
        if forest.feature_names != FEATURE_NAMES:
            raise ValueError(
                f"region classifier {path} was trained on other features; rebuild it with "
                "benchmarks/train_region_classifier.py"
            )
        return forest

    def save(self, path: Path) -> None:
        """Write the forest as a compressed ``.npz`` (float16 class shares)."""
        np.savez_compressed(
            path,
            feature=self.feature.astype(np.int16),
            threshold=self.threshold.astype(np.float32),
            left=self.left.astype(np.int32),
            right=self.right.astype(np.int32),
            value=self.value.astype(np.float16),
            roots=self.roots.astype(np.int32),
            classes=np.asarray(self.classes),
            feature_names=np.asarray(self.feature_names),
        )

    def predict_proba(self, features: NDArray[np.float32]) -> NDArray[np.float32]:
        """``(N, len(classes))`` mean class shares of the trees for ``(N, F)`` features.

        All regions and trees descend together, one tree level per step.
        """
        n = features.shape[0]
        if n == 0:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        node = np.broadcast_to(self.roots, (n, len(self.roots))).copy()
        rows = np.arange(n)[:, None]
        while True:
            inner = self.left[node] >= 0
            if not inner.any():
                break
            go_left = features[rows, self.feature[node]] <= self.threshold[node]
            node = np.where(inner, np.where(go_left, self.left[node], self.right[node]), node)
        result: NDArray[np.float32] = self.value[node].mean(axis=1)
        return result

    def predict(self, features: NDArray[np.float32]) -> list[str]:
        """The most likely class name of each region (:data:`NO_DEFECT` = drop it)."""
        proba = self.predict_proba(features)
        return [self.classes[int(i)] for i in proba.argmax(axis=1)] if len(proba) else []
