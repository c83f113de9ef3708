"""Golden-board (template) defect segmentation: compare each scan with its defect-free template.

Real AOI compares every tested image with the *golden* image of the same board
position. This engine does that for binarised scans such as DeepPCB. All lengths
and areas are in pixels; thresholds come from
:class:`~segformer_service.config.ServiceSettings` (``template_*`` fields).

Algorithm
---------
1. **Template library** (at start-up). Every image in ``templates_dir`` is read
   as grey, kept at full size, and also area-averaged down by
   ``template_coarse_factor`` (8: a 640 × 640 template becomes 80 × 80) and
   normalised to zero mean and unit norm.
2. **Coarse search.** The uploaded image is reduced the same way; its normalised
   cross-correlation (NCC) with every template of the same size is one
   matrix-vector product. A ±3 px offset is < 0.4 px at 1/8 scale, so NCC at
   zero shift is enough to rank. The best ``template_candidates`` go on.
3. **Fine registration.** For each candidate, scikit-image
   ``phase_cross_correlation`` (Guizar-Sicairos et al., *Opt. Lett.* 33, 156,
   2008) with ``upsample_factor`` 10 gives the sub-pixel offset; the template is
   shifted onto the image (bilinear, ``scipy.ndimage.shift``) and the NCC of
   the two full-size grey images is the *match score*. The best candidate wins
   when its score is at least ``template_min_match_score`` and its offset at
   most ``template_max_offset_px`` (a larger global shift is a periodic
   layout's aliased peak: registration restarts from no shift); otherwise the
   engine falls back to the
   single-image ``classical`` engine and says so in its provenance.
4. **Tolerant difference.** Both images are binarised (copper = dark phase at
   the mid grey level 128, or the configured threshold). Extra copper is
   image copper farther than ``template_tolerance_px`` from template copper
   (``image & ~dilate(template, disk(r))``); missing copper is template copper
   farther than ``r`` from image copper (``template & ~dilate(image, disk(r))``).
   This absorbs the residual registration error and the 1–2 px edge
   differences between two scans/binarisations, which in a plain XOR become
   thousands of edge slivers. Each surviving core is then grown back to the
   full extent of the plain difference it lies in (morphological
   reconstruction of the core inside ``image XOR template``, limited to
   ``r + 1`` px around the core) so that region boxes and areas cover the whole
   defect, and cores smaller than ``template_min_area_px`` are dropped.
5. **Classification by topology.** Conductors are the 8-connected components of
   copper that have at least ``bridge_part_min_area_px`` pixels.
   *Extra copper*: touching no template conductor (within ``r + 2`` px) =
   ``spurious_copper``; touching two or more = ``short``; otherwise ``spur``.
   *Missing copper*: if the substrate around it (the image's substrate
   component that contains it, 4-connected) is enclosed by copper and no larger
   than the region grown by ``r`` = ``pin_hole``; if two or more image
   conductors lie along it while one template conductor was there = ``open``;
   otherwise ``mousebite``. A short or open is not called when the golden
   conductors stay joined (split) without the region (another region is the
   bridge or cut) or when a line-width change of ``template_width_tolerance_px``
   per edge explains it (a golden gap or neck of at most twice that:
   :meth:`TemplateEngine._width_explains`); the region then goes on to the
   spur / mousebite tests.
6. **Region classifier** (``template_classifier``, default the bundled
   ``template_classifier.npz``): a random forest trained on the DeepPCB
   train/val split (``benchmarks/train_region_classifier.py``) gives each region
   of step 5 its class, or drops it as no defect, from shape and local-topology
   features (:mod:`segformer_service.engines.region_classifier`).

Speed
-----
About 80 ms of CPU per 640 x 640 image on one core of the development VM
(``benchmarks/deeppcb_accuracy.py``): ≈ 25 ms search and registration, ≈ 50 ms
comparison. The engine limits BLAS to one thread for its process (idle OpenBLAS
threads otherwise doubled the CPU time); whole-image morphology works on ``bool``/
``uint16`` arrays with shifted views (:func:`dilate`, :func:`square_max`, the
majority vote in ``_copper``), which give exactly scipy's pixels; per-region
work (growth, width/depth tests) runs on each region's padded box.

Known limits
------------
* The engine needs the golden image of the same board position; an image with
  no template good enough is analysed by the ``classical`` engine instead.
* A defect smaller than the tolerance (a notch or protrusion at most
  ``template_tolerance_px`` deep) is absorbed by it.
* ``open`` / ``short`` are decided by which conductors the region touches
  locally; a cut whose two halves stay connected elsewhere still counts as
  ``open`` (local split), which is what an inspector would call it.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image, UnidentifiedImageError
from scipy import ndimage as ndi
from skimage import morphology
from skimage.measure import regionprops
from skimage.registration import phase_cross_correlation
from skimage.transform import AffineTransform, warp
from threadpoolctl import ThreadpoolController

from segformer_service.config import ServiceSettings
from segformer_service.engines.base import LabelMask, Segmentation, as_grey
from segformer_service.engines.classical import ClassicalEngine
from segformer_service.engines.region_classifier import (
    FEATURE_NAMES,
    NO_DEFECT,
    Forest,
    Region,
    conductor_links,
    region_features,
)

logger = logging.getLogger("segformer_service")

BoolMask = NDArray[np.bool_]
FloatImage = NDArray[np.float32]

TEMPLATE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"})
"""File suffixes (lower case) read from the templates folder."""

_FOUR = ndi.generate_binary_structure(2, 1)
_EIGHT = ndi.generate_binary_structure(2, 2)


@functools.cache
def use_one_blas_thread() -> None:
    """Limit the BLAS libraries loaded so far to one thread, for the rest of the process.

    The registration's matrix products are small (scikit-image's upsampled DFT:
    tens x hundreds of elements); OpenBLAS spreads them over every core and its
    idle threads then spin, which on the DeepPCB sample doubled the process CPU
    time per image and slowed the wall time too. Process-wide rather than per
    call because the service segments concurrent requests in threads, and
    nested per-call limits would restore each other's settings out of order.
    Uses ``threadpoolctl`` (what scikit-learn uses for the same purpose).
    """
    ThreadpoolController().limit(limits=1, user_api="blas")


def dilate(mask: BoolMask, footprint: BoolMask) -> BoolMask:
    """Binary dilation of ``mask`` by a small symmetric ``footprint`` (pixels outside = 0).

    The OR of ``mask`` shifted by every offset of the footprint: for the
    13-pixel disk of radius 2 about 10 x faster than ``scipy.ndimage.binary_dilation``
    on 640 x 640 pixels, with the same result (``border_value`` 0).
    """
    out = np.zeros_like(mask)
    cy, cx = footprint.shape[0] // 2, footprint.shape[1] // 2
    h, w = mask.shape
    for y, x in zip(*np.nonzero(footprint), strict=True):
        dy, dx = int(y) - cy, int(x) - cx
        out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] |= mask[
            max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
        ]
    return out


def square_max(labels: NDArray[Any], size: int) -> NDArray[Any]:
    """Maximum of non-negative ``labels`` over a ``size`` x ``size`` window (``size`` odd).

    Same result as ``scipy.ndimage.maximum_filter(labels, size)`` for labels >= 0
    (its mirrored border never adds a value from outside the window), computed
    separably by doubling window widths (van Herk's idea of reusing partial
    maxima), a few whole-array ``np.maximum`` calls instead of a per-pixel loop.
    The result is ``uint16`` when every label fits, else of ``labels``' type.
    """
    half = size // 2
    h, w = labels.shape
    small = labels.size == 0 or int(labels.max()) < 2**16
    # uint16 labels move a quarter of the bytes of int64 ones: ~3 x faster.
    current = np.pad(labels.astype(np.uint16) if small else labels, half)
    for axis in (0, 1):
        # After each step current[i] is the max over the window [i - width + 1, i].
        width = 1
        while width < size:
            step = min(width, size - width)
            moved = np.zeros_like(current)
            if axis == 0:
                moved[step:] = current[:-step]
            else:
                moved[:, step:] = current[:, :-step]
            current = np.maximum(current, moved)
            width += step
    # Trailing windows [i - size + 1, i] of the padded array = centred windows of the input.
    result: NDArray[Any] = current[2 * half : 2 * half + h, 2 * half : 2 * half + w]
    return result


def coarse_signature(grey: NDArray[np.uint8], factor: int) -> FloatImage:
    """Area-average ``grey`` down by ``factor`` and normalise it to zero mean, unit L2 norm.

    Args:
        grey: ``(H, W)`` ``uint8`` image.
        factor: reduction factor (pixels per coarse pixel along each axis).

    Returns:
        ``(H // factor, W // factor)`` ``float32`` array (all zeros for a flat image).
    """
    h, w = grey.shape[0] // factor, grey.shape[1] // factor
    small = (
        grey[: h * factor, : w * factor]
        .astype(np.float32)
        .reshape(h, factor, w, factor)
        .mean(axis=(1, 3))
    )
    small -= small.mean()
    norm = float(np.linalg.norm(small))
    return small / norm if norm > 0 else small


def ncc(a: NDArray[np.floating[Any]], b: NDArray[np.floating[Any]]) -> float:
    """Normalised cross-correlation (Pearson correlation) of two same-shape arrays, -1..1."""
    a = a - a.mean()
    b = b - b.mean()
    denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denom) if denom > 0 else 0.0


@dataclass
class Template:
    """One golden image of the library."""

    name: str
    grey: NDArray[np.uint8]
    signature: FloatImage


@dataclass
class TemplateMatch:
    """Result of the template search for one image.

    ``offset_x``/``offset_y``: where the template's content lies in the image
    minus where it lies in the template, pixels (sub-pixel); ``score``: NCC of
    the registered full-size grey images (-1..1).
    """

    template: Template
    offset_x: float
    offset_y: float
    score: float
    registered: NDArray[Any] = field(repr=False)
    base_offset: tuple[float, float] = (0.0, 0.0)
    """``(dy, dx)`` by which ``registered`` was shifted, pixels."""


def load_templates(folder: Path, factor: int) -> list[Template]:
    """Read every image of ``folder`` (JPEG, PNG, TIFF, BMP) as a grey template.

    Unreadable files are skipped with a warning.

    Raises:
        ValueError: if ``folder`` is not a directory or holds no readable image.
    """
    if not folder.is_dir():
        raise ValueError(f"templates folder {folder} does not exist or is not a folder")
    templates: list[Template] = []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in TEMPLATE_SUFFIXES or not path.is_file():
            continue
        try:
            with Image.open(path) as img:
                grey = np.asarray(img.convert("L"), dtype=np.uint8)
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            logger.warning("skipping unreadable template %s: %s", path, exc)
            continue
        templates.append(Template(path.name, grey, coarse_signature(grey, factor)))
    if not templates:
        raise ValueError(f"templates folder {folder} holds no readable image")
    return templates


def _half(image: FloatImage) -> FloatImage:
    """2 x 2 area average of an ``(H, W)`` image (odd last row/column dropped).

    Four strided views added: ~10 x faster than ``reshape(...).mean(axis=(1, 3))``.
    """
    h, w = 2 * (image.shape[0] // 2), 2 * (image.shape[1] // 2)
    total = image[0:h:2, 0:w:2] + image[1:h:2, 0:w:2]
    total += image[0:h:2, 1:w:2]
    total += image[1:h:2, 1:w:2]
    total *= 0.25
    return total


def _shift_whole(image: FloatImage, dy: int, dx: int) -> FloatImage:
    """``image`` moved by whole pixels ``(dy, dx)``, edge pixels repeated.

    Same as ``scipy.ndimage.shift(image, (dy, dx), order=0, mode="nearest")``
    for integer shifts, without the per-pixel interpolation loop.
    """
    h, w = image.shape
    py, px = abs(dy), abs(dx)
    padded = np.pad(image, ((py, py), (px, px)), mode="edge")
    return padded[py - dy : py - dy + h, px - dx : px - dx + w]


def _label_pairs(a: NDArray[np.int32], b: NDArray[np.int32]) -> list[tuple[int, int]]:
    """Distinct ``(a, b)`` label pairs over the pixels where both label arrays are > 0."""
    both = (a > 0) & (b > 0)
    if not both.any():
        return []
    width = int(b.max()) + 1
    keys = a[both].astype(np.int64) * width + b[both]
    present = np.flatnonzero(np.bincount(keys))
    return [(int(k // width), int(k % width)) for k in present]


def _valid_area(shape: tuple[int, ...], match: TemplateMatch, band: int) -> BoolMask:
    """Pixels of an ``(H, W)`` image covered by the shifted template, less a ``band`` px margin.

    The margin covers the local (affine) correction, which can move the edge a
    little further than the global offset.
    """
    valid = np.zeros(shape[:2], dtype=bool)
    top = int(np.ceil(max(match.offset_y, 0.0))) + band
    bottom = shape[0] - int(np.ceil(max(-match.offset_y, 0.0))) - band
    left = int(np.ceil(max(match.offset_x, 0.0))) + band
    right = shape[1] - int(np.ceil(max(-match.offset_x, 0.0))) - band
    valid[top:bottom, left:right] = True
    return valid


class TemplateEngine:
    """Golden-board comparison with a template found by search (see the module docstring)."""

    name = "template"
    want_features = False
    """Compute region features even without a classifier (for training)."""

    def __init__(self, settings: ServiceSettings, templates: list[Template] | None = None) -> None:
        """Load the template library (``settings.templates_dir``) unless ``templates`` is given.

        Raises:
            ValueError: if no templates folder is configured, or it holds no readable image.
        """
        self._settings = settings
        self._ids = settings.class_id_by_name()
        self._fallback = ClassicalEngine(settings)
        if templates is None:
            if settings.templates_dir is None:
                raise ValueError(
                    "the template engine needs REFERENCE_SERVICE_TEMPLATES_DIR (a folder of "
                    "golden images)"
                )
            templates = load_templates(
                Path(settings.templates_dir), settings.template_coarse_factor
            )
        self.templates = templates
        grouped: dict[tuple[int, int], list[Template]] = {}
        for template in templates:
            grouped.setdefault((template.grey.shape[0], template.grey.shape[1]), []).append(
                template
            )
        self._by_shape: dict[tuple[int, int], tuple[list[Template], FloatImage]] = {
            shape: (members, np.stack([t.signature.ravel() for t in members]).astype(np.float32))
            for shape, members in grouped.items()
        }
        r = settings.template_tolerance_px
        self._tolerance = morphology.disk(r).astype(bool)
        self._grow = morphology.disk(r + 1).astype(bool)
        self._touch = morphology.disk(r + 2).astype(bool)
        self._names = settings.class_name_by_id()
        self.classifier = (
            Forest.load(Path(settings.template_classifier))
            if settings.template_classifier is not None
            else None
        )
        use_one_blas_thread()
        logger.info("template engine: %d golden images loaded", len(templates))

    # --- search and registration ------------------------------------------------
    def find_template(self, grey: NDArray[np.uint8]) -> TemplateMatch | None:
        """Find and register the best-matching template of the same size as ``grey``.

        The ``template_candidates`` best coarse matches are registered in coarse
        order. Candidates after the first are tried only while no acceptable match
        (score >= ``template_min_match_score``, offset <= ``template_max_offset_px``)
        has been found, or when their coarse NCC is within ``template_coarse_margin``
        of the best one's; of the acceptable matches the highest score wins.

        Returns:
            the best acceptable match, else the best-scoring one (the caller then
            falls back), or ``None`` when no template has the image's size.
        """
        s = self._settings
        group = self._by_shape.get((grey.shape[0], grey.shape[1]))
        if group is None:
            return None
        members, stack = group
        coarse = stack @ coarse_signature(grey, s.template_coarse_factor).ravel()
        order = np.argsort(-coarse)[: s.template_candidates]
        image_f = grey.astype(np.float32)
        image_half = _half(image_f)
        best: TemplateMatch | None = None
        best_ok = False
        for rank, index in enumerate(order):
            close = coarse[index] >= coarse[order[0]] - s.template_coarse_margin
            if rank > 0 and best_ok and not close:
                break
            match = self._register(image_f, image_half, members[int(index)])
            ok = self.acceptable(match)
            if best is None or (ok, match.score) > (best_ok, best.score):
                best, best_ok = match, ok
        if best is not None:
            best.registered = np.clip(np.rint(best.registered), 0, 255).astype(np.uint8)
        return best

    def acceptable(self, match: TemplateMatch) -> bool:
        """Is the match good enough (score and offset within the settings' limits)?"""
        s = self._settings
        return (
            match.score >= s.template_min_match_score
            and max(abs(match.offset_x), abs(match.offset_y)) <= s.template_max_offset_px
        )

    def _register(
        self, image_f: FloatImage, image_half: FloatImage, template: Template
    ) -> TemplateMatch:
        """Global shift (half-size phase correlation, 0.1 px), local refinement, score."""
        template_f = template.grey.astype(np.float32)
        # Global shift on half-size images (1/20 px there = 0.1 px here), 4x cheaper.
        shift, _, _ = phase_cross_correlation(
            image_half, _half(template_f), upsample_factor=20, normalization=None
        )
        dy, dx = 2 * float(shift[0]), 2 * float(shift[1])
        if max(abs(dy), abs(dx)) > self._settings.template_max_offset_px:
            # A periodic layout (rows of identical cells) can alias the correlation
            # peak by a whole period; start from no shift and let the local
            # refinement find the small real one.
            dy = dx = 0.0
        if self._settings.template_local_tiles > 1:
            # The refinement measures the residual from a whole-pixel shift.
            base = (float(round(dy)), float(round(dx)))
            rolled = _shift_whole(template_f, round(dy), round(dx))
            match = TemplateMatch(template, dx, dy, 0.0, rolled, base)
            match.registered = self._refine(image_f, match)
        else:
            registered = ndi.shift(template_f, (dy, dx), order=1, mode="nearest")
            match = TemplateMatch(template, dx, dy, 0.0, registered, (dy, dx))
        match.score = ncc(image_f, match.registered)
        return match

    def _refine(self, image_f: FloatImage, match: TemplateMatch) -> FloatImage:
        """Correct a small scale/shear/rotation left after the global shift.

        The image is cut into ``template_local_tiles`` x ``template_local_tiles``
        tiles; each tile's residual shift (phase correlation, 1/4 px) within
        ``template_tolerance_px + 2`` px is kept (a tile with only parallel
        traces can give a wild shift along them: dropped), an affine shift field
        ``s(p) = M p + c`` is fitted to the kept tile centres by least squares,
        and the template is resampled once (bilinear, scikit-image ``warp``) at
        ``p - offset - s(p)``.
        Fewer than 6 kept tiles: the global shift stays.

        Returns:
            the registered template, ``(H, W)`` ``float32``.
        """
        s = self._settings
        registered = np.asarray(match.registered, dtype=np.float32)
        h, w = image_f.shape
        n = s.template_local_tiles
        th, tw = h // n, w // n
        limit = s.template_tolerance_px + 2
        points: list[tuple[float, float]] = []
        shifts: list[tuple[float, float]] = []
        for row in range(n):
            for col in range(n):
                tile = (slice(row * th, (row + 1) * th), slice(col * tw, (col + 1) * tw))
                a, b = image_f[tile], registered[tile]
                if a.std() < 1 or b.std() < 1:
                    continue
                shift, _, _ = phase_cross_correlation(a, b, upsample_factor=4, normalization=None)
                if max(abs(float(shift[0])), abs(float(shift[1]))) <= limit:
                    points.append(((row + 0.5) * th, (col + 0.5) * tw))
                    shifts.append((float(shift[0]), float(shift[1])))
        if len(points) < 6:
            return ndi.shift(
                match.template.grey.astype(np.float32),
                (match.offset_y, match.offset_x),
                order=1,
                mode="nearest",
            )
        design = np.column_stack([np.asarray(points), np.ones(len(points))])
        target = np.asarray(shifts)
        coef, *_ = np.linalg.lstsq(design, target, rcond=None)
        residual = np.abs(design @ coef - target).max(axis=1)
        inliers = residual <= 1.0
        if inliers.sum() >= 6 and not inliers.all():
            coef, *_ = np.linalg.lstsq(design[inliers], target[inliers], rcond=None)
        field_matrix, field_offset = coef[:2].T, coef[2]
        centre = field_matrix @ np.array([h / 2, w / 2]) + field_offset
        match.offset_y = match.base_offset[0] + float(centre[0])
        match.offset_x = match.base_offset[1] + float(centre[1])
        template_f = match.template.grey.astype(np.float32)
        offset = np.asarray(match.base_offset)
        # Input (row, col) = (I - M) p - (offset + c); skimage's warp takes the same
        # map in (x, y) = (col, row) order, hence the swap P.
        swap = np.array([[0.0, 1.0], [1.0, 0.0]])
        inverse = np.eye(3)
        inverse[:2, :2] = swap @ (np.eye(2) - field_matrix) @ swap
        inverse[:2, 2] = swap @ -(offset + field_offset)
        warped = warp(
            template_f, AffineTransform(matrix=inverse), order=1, mode="edge", preserve_range=True
        )
        return np.asarray(warped, dtype=np.float32)

    # --- difference and classification ------------------------------------------
    def _copper(self, grey: NDArray[np.uint8]) -> BoolMask:
        threshold = self._settings.binarise_threshold or 128
        if self._settings.copper_polarity == "dark":
            copper: BoolMask = grey < threshold
        else:
            copper = grey >= threshold
        size = self._settings.template_median_px
        if size > 1:
            # Median of a binary image = majority vote in the size x size window
            # (edge pixels repeated), counted in integers on shifted views.
            # scipy's window for size k covers [i - k // 2, i + (k - 1) // 2].
            h, w = copper.shape
            padded = np.pad(
                copper, ((size // 2, (size - 1) // 2), (size // 2, (size - 1) // 2)), mode="edge"
            ).astype(np.uint16)
            rows = padded[:h].copy()
            for k in range(1, size):
                rows += padded[k : k + h]
            votes = rows[:, :w].copy()
            for k in range(1, size):
                votes += rows[:, k : k + w]
            copper = 2 * votes > size * size
        return copper

    def _conductors(self, copper: BoolMask, min_area: int | None = None) -> NDArray[np.int32]:
        """Label the 8-connected components of ``copper`` with at least ``min_area`` pixels.

        ``min_area`` defaults to ``bridge_part_min_area_px``.
        """
        # intp labels: np.bincount and the lookup use them without a converted copy.
        labels = np.empty(copper.shape, dtype=np.intp)
        count = int(ndi.label(copper, structure=_EIGHT, output=labels))
        areas = np.bincount(labels.ravel(), minlength=count + 1)
        big = areas >= (self._settings.bridge_part_min_area_px if min_area is None else min_area)
        big[0] = False
        lookup = np.where(big, np.arange(count + 1, dtype=np.int32), 0).astype(np.int32)
        result: NDArray[np.int32] = lookup[labels]
        return result

    def _differences(self, core: BoolMask, raw: BoolMask) -> tuple[NDArray[np.int32], int]:
        """Label the cores (>= min area) grown back inside the raw difference."""
        s = self._settings
        labels = np.empty(core.shape, dtype=np.intp)
        count = int(ndi.label(core, structure=_EIGHT, output=labels))
        areas = np.bincount(labels.ravel(), minlength=count + 1)
        keep = areas >= s.template_min_area_px
        keep[0] = False
        if not keep.any():
            return np.zeros(core.shape, dtype=np.int32), 0
        # Grow each seed inside raw, at most r + 1 px, on its own box (seeds are sparse).
        grown = np.zeros(core.shape, dtype=bool)
        pad = self._grow.shape[0] // 2 + 1
        h, w = core.shape
        for index, sl in enumerate(ndi.find_objects(labels), start=1):
            if sl is None or not keep[index]:
                continue
            box = (
                slice(max(sl[0].start - pad, 0), min(sl[0].stop + pad, h)),
                slice(max(sl[1].start - pad, 0), min(sl[1].stop + pad, w)),
            )
            seed = labels[box] == index
            limit = ndi.binary_dilation(seed, structure=self._grow) & (raw[box] | seed)
            grown[box] |= ndi.binary_propagation(seed, structure=_EIGHT, mask=limit)
        out, n = ndi.label(grown, structure=_EIGHT)
        return out.astype(np.int32), int(n)

    def _significant(
        self,
        labels: NDArray[np.int32],
        boxes: list[tuple[slice, slice] | None],
        inside: BoolMask,
        only: NDArray[np.bool_],
    ) -> NDArray[np.bool_]:
        """Per region 0..count: is it wide or deep enough to be more than edge noise?

        *Wide*: it holds a disk of radius ``template_min_radius_px`` (largest
        Euclidean distance from a region pixel to the region's outside).
        *Deep*: it reaches at least ``template_min_depth_px`` into ``inside`` (the
        template phase it changes: template copper for missing copper, template
        substrate for extra copper), measured from that phase's edge. Both are
        computed on the region's box grown by the depth threshold, which is exact
        for the comparison with the thresholds. ``boxes``: ``find_objects(labels)``.
        """
        s = self._settings
        pad = int(np.ceil(max(s.template_min_depth_px, s.template_min_radius_px))) + 1
        keep = np.zeros(len(boxes) + 1, dtype=bool)
        h, w = labels.shape
        for index, sl in enumerate(boxes, start=1):
            if sl is None or not only[index]:
                continue
            rows = slice(max(sl[0].start - pad, 0), min(sl[0].stop + pad, h))
            cols = slice(max(sl[1].start - pad, 0), min(sl[1].stop + pad, w))
            region = labels[rows, cols] == index
            radius = float(ndi.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1].max())
            depth = float(ndi.distance_transform_edt(inside[rows, cols])[region].max())
            keep[index] = radius >= s.template_min_radius_px or depth >= s.template_min_depth_px
            if keep[index] and radius < 2 * s.template_min_radius_px:
                # A thin difference running a long way along an edge is a line-width
                # (etching, scanning) variation of the whole conductor, not a spot defect.
                props = regionprops(region.astype(np.uint8))[0]
                keep[index] = props.axis_major_length <= s.template_max_sliver_length_px
        return keep

    def _width_explains(
        self,
        box: tuple[slice, slice],
        region: BoolMask,
        image_cu: BoolMask,
        template_cu: BoolMask,
        template_parts: NDArray[np.int32],
        extra: bool = True,
    ) -> bool:
        """Is the short (``extra``) or open that ``region`` seems to make no defect of its own?

        Two local tests in the region's box grown by a few pixels (8-connected
        components):

        * **Not this region**: the image copper through the region joins no two
          golden conductors there, or they stay joined (split) without the
          region's pixels: the bridge (cut) is another region's and this one is
          a widened (narrowed) edge next to it. An open not visible as a split
          there (a ring cut, found by the substrate test) is kept.
        * **Line width** (``k`` = ``template_width_tolerance_px``, 0 = this test
          off): a re-scan of a defect-free board moves every edge by up to about
          1 px (line width ±1 px, edges binarised anew), which closes a golden gap
          (cuts a golden neck) no wider than ``2 k``. Short: with only the
          region's pixels farther than ``k`` from golden copper removed, every
          joined pair of golden conductors stays joined. Open: with only the
          region's pixels deeper than ``k`` inside golden copper given back, the
          golden conductors stay split into as many image pieces.
        """
        k = self._settings.template_width_tolerance_px
        pad = self._settings.template_tolerance_px + k + 3
        h, w = image_cu.shape
        y0, y1 = max(box[0].start - pad, 0), min(box[0].stop + pad, h)
        x0, x1 = max(box[1].start - pad, 0), min(box[1].stop + pad, w)
        win = (slice(y0, y1), slice(x0, x1))
        mask = np.zeros((y1 - y0, x1 - x0), dtype=bool)
        mask[box[0].start - y0 : box[0].stop - y0, box[1].start - x0 : box[1].stop - x0] = region
        image, golden, parts = image_cu[win], template_cu[win], template_parts[win]
        footprint = morphology.disk(k).astype(bool)
        if extra:
            before = conductor_links(image, parts, mask)[0]
            if not before or before <= conductor_links(image & ~mask, parts)[0]:
                return True
            if k <= 0:
                return False
            near = dilate(np.pad(golden, k, mode="edge"), footprint)[k:-k, k:-k]
            return before <= conductor_links(image & ~(mask & ~near), parts)[0]
        pieces = self._pieces(image, parts)
        if pieces <= 0:
            return False
        if self._pieces(image | mask, parts) >= pieces:
            return True
        if k <= 0:
            return False
        deep = ~dilate(np.pad(~golden, k, mode="edge"), footprint)[k:-k, k:-k]
        return self._pieces(image | (mask & deep), parts) >= pieces

    def _pieces(self, copper: BoolMask, parts: NDArray[np.int32]) -> int:
        """Extra pieces: sum over ``parts`` labels of (8-connected ``copper`` components of
        at least ``template_min_area_px`` on it) - 1."""
        labels, count = ndi.label(copper, structure=_EIGHT)
        areas = np.bincount(labels.ravel(), minlength=count + 1)
        small = areas < self._settings.template_min_area_px
        small[0] = True
        labels[small[labels]] = 0
        per_part: dict[int, int] = {}
        for _, part in _label_pairs(labels.astype(np.int32), parts):
            per_part[part] = per_part.get(part, 0) + 1
        return sum(n - 1 for n in per_part.values())

    def _touching(self, labels: NDArray[np.int32], parts: NDArray[np.int32]) -> dict[int, set[int]]:
        """Region label -> labels of ``parts`` within ``template_tolerance_px + 2`` px of it.

        The neighbourhood is a square (Chebyshev distance); where two regions are
        that close, the one with the higher label wins the shared pixels.
        """
        size = 2 * (self._settings.template_tolerance_px + 2) + 1
        grown = square_max(labels, size)
        out: dict[int, set[int]] = {}
        for region, part in _label_pairs(grown, parts):
            out.setdefault(region, set()).add(part)
        return out

    def _candidates(
        self, core: BoolMask, raw: BoolMask
    ) -> tuple[NDArray[np.int32], int, NDArray[np.bool_]]:
        """Difference regions: cores grown inside ``raw``, then the other raw components.

        Returns:
            ``(H, W)`` labels, their count, and per label 0..n whether it came
            from a core (``False`` for a raw component without one, which only
            counts when it changes the topology: a short or an open).
        """
        grown, n_grown = self._differences(core, raw)
        rest = raw & ~dilate(grown > 0, _EIGHT)
        rest_labels = np.empty(rest.shape, dtype=np.intp)
        n_rest = int(ndi.label(rest, structure=_EIGHT, output=rest_labels))
        areas = np.bincount(rest_labels.ravel(), minlength=n_rest + 1)
        big = areas >= self._settings.template_min_area_px
        big[0] = False
        # Renumber the kept components n_grown + 1 ... without a second labelling.
        lookup = np.zeros(n_rest + 1, dtype=np.int32)
        n_rest = int(big.sum())
        lookup[big] = np.arange(n_grown + 1, n_grown + n_rest + 1, dtype=np.int32)
        labels = lookup[rest_labels]
        labels += grown  # disjoint: rest keeps 1 px away from the grown regions
        from_core = np.zeros(n_grown + n_rest + 1, dtype=bool)
        from_core[1 : n_grown + 1] = True
        return labels, n_grown + n_rest, from_core

    def compare(
        self,
        grey: NDArray[np.uint8],
        template: NDArray[np.uint8],
        valid: BoolMask | None = None,
    ) -> NDArray[np.int32]:
        """``(H, W)`` ``int32`` label mask (service class ids, 0 = none) of the DeepPCB
        classes found by comparing an image with its registered template.

        The topology rules find and name the regions; with a region classifier
        (``template_classifier``) each region then gets the classifier's class,
        or is dropped when it says "no defect".

        Args:
            grey: ``(H, W)`` ``uint8`` tested image.
            template: ``(H, W)`` ``uint8`` golden image already registered onto ``grey``.
            valid: ``(H, W)`` mask of the pixels the registered template really covers
                (a shifted template leaves a band of repeated edge pixels); ``None`` = all.
        """
        out, regions, features = self.compare_regions(grey, template, valid)
        if self.classifier is None or not regions:
            return out
        ids = self._ids
        for region, name in zip(regions, self.classifier.predict(features), strict=True):
            if name != region.rule_class:
                out[region.box][region.mask] = 0 if name == NO_DEFECT else ids.get(name, 0)
        return out

    def compare_regions(
        self,
        grey: NDArray[np.uint8],
        template: NDArray[np.uint8],
        valid: BoolMask | None = None,
    ) -> tuple[NDArray[np.int32], list[Region], NDArray[np.float32]]:
        """The topology rules' label mask, its regions and their classifier features.

        Arguments as for :meth:`compare`. Returns the ``(H, W)`` label mask of the
        rules alone, its regions (each one connected region of one class) and their ``(N, F)``
        features (:func:`region_features`; computed only with a classifier or
        when ``self.want_features`` is set, else ``(0, F)`` with no regions).
        """
        s = self._settings
        image_cu = self._copper(grey)
        template_cu = self._copper(template)
        if valid is None:
            valid = np.ones(grey.shape, dtype=bool)
        out = np.zeros(grey.shape, dtype=np.int32)

        regions: list[Region] = []

        def mark(name: str, box: tuple[slice, slice], region: BoolMask) -> None:
            # Regions are disjoint (extra copper vs missing copper, one label each)
            # and no two of one kind touch, so each is one region of the answer.
            class_id = self._ids.get(name)
            if class_id is not None:
                out[box][region] = class_id
                regions.append(Region(name, box, region))

        image_parts = self._conductors(image_cu)
        template_parts = self._conductors(template_cu)
        template_of_image: dict[int, set[int]] = {}
        image_of_template: dict[int, set[int]] = {}
        for i, t in _label_pairs(image_parts, template_parts):
            template_of_image.setdefault(i, set()).add(t)
            image_of_template.setdefault(t, set()).add(i)

        # Extra copper: spurious copper, short or spur by the template conductors it touches.
        extra_core = image_cu & ~dilate(template_cu, self._tolerance)
        extra, n_extra, from_core = self._candidates(
            extra_core & valid, image_cu & ~template_cu & valid
        )
        if n_extra:
            near = self._touching(extra, template_parts)
            boxes = ndi.find_objects(extra)
            significant = self._significant(extra, boxes, ~template_cu, from_core)
            for index, sl in enumerate(boxes, start=1):
                if sl is None:
                    continue
                touched = near.get(index, set())
                if not from_core[index] and len(touched) < 2:
                    continue  # a raw sliver that cannot be a short
                region = extra[sl] == index
                under = {int(v) for v in np.unique(image_parts[sl][region]) if v > 0}
                joins = any(len(template_of_image.get(i, set()) & touched) >= 2 for i in under)
                if joins and self._width_explains(
                    sl, region, image_cu, template_cu, template_parts
                ):
                    joins = False  # a golden gap of <= 2 px that a wider line closes
                if joins:
                    name = "short"
                elif not from_core[index] or not significant[index]:
                    continue
                else:
                    name = "spur" if touched else "spurious_copper"
                mark(name, sl, region)

        # Missing copper: pin-hole, open or mousebite.
        missing_core = ~image_cu & ~dilate(~template_cu, self._tolerance)
        missing, n_missing, from_core = self._candidates(
            missing_core & valid, template_cu & ~image_cu & valid
        )
        if n_missing:
            near = self._touching(missing, image_parts)
            gap_tables: list[tuple[dict[int, set[int]], dict[int, set[int]]]] = []

            def gap_tables_() -> tuple[dict[int, set[int]], dict[int, set[int]]]:
                # Dual test, computed once when needed: a cut joining two substrate regions.
                if not gap_tables:
                    template_gaps = self._conductors(~template_cu, s.template_gap_min_area_px)
                    image_gaps = self._conductors(~image_cu, s.template_gap_min_area_px)
                    owners: dict[int, set[int]] = {}
                    for i, t in _label_pairs(image_gaps, template_gaps):
                        owners.setdefault(t, set()).add(i)
                    gap_tables.append((self._touching(missing, template_gaps), owners))
                return gap_tables[0]

            boxes = ndi.find_objects(missing)
            significant = self._significant(missing, boxes, template_cu, from_core)
            substrate, n_sub = ndi.label(~image_cu, structure=_FOUR)
            sub_areas = np.bincount(substrate.ravel(), minlength=n_sub + 1)
            on_border = np.zeros(n_sub + 1, dtype=bool)
            on_border[
                np.concatenate(
                    [substrate[0, :], substrate[-1, :], substrate[:, 0], substrate[:, -1]]
                )
            ] = True
            for index, sl in enumerate(boxes, start=1):
                if sl is None:
                    continue
                touched = near.get(index, set())
                if not from_core[index] and len(touched) < 2:
                    continue  # a raw sliver that cannot be an open
                region = missing[sl] == index
                # Enclosed: the image substrate around it is a hole in copper, not much
                # larger than the region itself (twice its area plus 2 px around its box).
                holes = np.unique(substrate[sl][region])
                holes = holes[holes > 0]
                box_perimeter = 2 * (sl[0].stop - sl[0].start + sl[1].stop - sl[1].start)
                enclosed = (
                    holes.size > 0
                    and not on_border[holes].any()
                    and int(sub_areas[holes].sum()) <= 2 * int(region.sum()) + 2 * box_perimeter
                )
                under = {int(v) for v in np.unique(template_parts[sl][region]) if v > 0}
                splits = any(len(image_of_template.get(t, set()) & touched) >= 2 for t in under)
                if splits and self._width_explains(
                    sl, region, image_cu, template_cu, template_parts, extra=False
                ):
                    splits = False  # a golden neck of <= 2 px that a thinner line cuts
                if not splits and from_core[index] and significant[index] and not enclosed:
                    near_gaps, image_gap_of_template = gap_tables_()
                    gaps = near_gaps.get(index, set())
                else:
                    gaps = set()
                if len(gaps) >= 2:
                    # The gaps are separate in the template; joined in the image = a cut.
                    owners = [image_gap_of_template.get(t, set()) for t in gaps]
                    splits = any(
                        sum(1 for o in owners if i in o) >= 2 for i in set().union(*owners)
                    )
                if splits and not enclosed:
                    name = "open"
                elif not from_core[index] or not significant[index]:
                    continue
                else:
                    name = "pin_hole" if enclosed else "mousebite"
                mark(name, sl, region)
        if self.classifier is None and not self.want_features:
            return out, [], np.zeros((0, len(FEATURE_NAMES)), dtype=np.float32)
        features = region_features(regions, image_cu, template_cu)
        return out, regions, features

    # --- the engine interface ---------------------------------------------------
    def segment_with_provenance(self, image: NDArray[np.uint8]) -> Segmentation:
        """Segment ``image`` against its best template; fall back to ``classical``.

        Returns:
            the label mask and the provenance: ``engine`` (``template``, or
            ``classical`` after a fallback), ``template`` (file name),
            ``registration_offset`` ``{x, y}`` (pixels), ``match_score`` (NCC,
            -1..1) and ``fallback_reason`` (``None`` unless it fell back).

        Raises:
            ValueError: if the image shape is not ``(H, W)`` or ``(H, W, 3)``.
        """
        grey = as_grey(image)
        match = self.find_template(grey)
        s = self._settings
        reason: str | None = None
        if match is None:
            reason = f"no template of {grey.shape[1]} x {grey.shape[0]} pixels"
        elif match.score < s.template_min_match_score:
            reason = (
                f"best template {match.template.name} matches with score {match.score:.3f} "
                f"< {s.template_min_match_score}"
            )
        elif max(abs(match.offset_x), abs(match.offset_y)) > s.template_max_offset_px:
            reason = (
                f"best template {match.template.name} is offset by more than "
                f"{s.template_max_offset_px} px"
            )
        provenance: dict[str, Any] = {
            "requested_engine": self.name if reason is not None else None,
            "template": match.template.name if match else None,
            "registration_offset": (
                {"x": round(match.offset_x, 2), "y": round(match.offset_y, 2)} if match else None
            ),
            "match_score": round(match.score, 4) if match else None,
            "fallback_reason": reason,
        }
        if reason is not None or match is None:
            return Segmentation(self._fallback.segment(grey), "classical", provenance)
        out = self.compare(
            grey, match.registered, _valid_area(grey.shape, match, s.template_tolerance_px + 1)
        )
        return Segmentation(out, self.name, provenance)

    def segment(self, image: NDArray[np.uint8]) -> LabelMask:
        """Label mask of :meth:`segment_with_provenance` (see there)."""
        return self.segment_with_provenance(image).label_mask
