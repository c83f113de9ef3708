"""Classical (non-learned) defect segmentation for binarised PCB scans such as DeepPCB.

Only the tested image is available (no golden template), so the engine looks for
shapes that are *locally* implausible on a PCB. All lengths and areas are in
pixels and come from :class:`~segformer_service.config.ServiceSettings`.

Algorithm
---------
1. **Binarise.** Grey levels above Otsu's threshold (or ``binarise_threshold``)
   are the bright phase, the others the dark phase; ``copper_polarity`` says
   which phase is copper (DeepPCB: copper is *dark* on a bright substrate). Specks of at most
   ``noise_max_area_px`` pixels are removed from both phases (JPEG noise).
2. **Spurious copper** (class ``spurious_copper``): copper connected components
   (8-connectivity) of at most ``spurious_copper_max_area_px`` pixels that do not
   touch the image border (a component cut by the border may be a real trace).
3. **Pin-hole** (``pin_hole``): substrate components (4-connectivity) that are
   enclosed by copper (do not touch the border) and have at most
   ``pin_hole_max_area_px`` pixels. Drilled holes in pads are larger.
4. **Spur / short** (``spur``, ``short``): the residue of a morphological
   opening of the copper with a disk of radius ``spur_opening_radius_px``
   (copper minus opened copper, a "white top-hat") holds every copper feature
   narrower than the disk. Residue components with
   ``spur_min_area_px``..``spur_max_area_px`` pixels are kept. A residue that
   touches two or more large parts of the opened copper bridges them: ``short``;
   one that touches a single part is a protrusion: ``spur``.
5. **Mousebite / open** (``mousebite``, ``open``): the residue of a
   morphological closing with a disk of radius ``mousebite_closing_radius_px``
   (closed copper minus copper, a "black top-hat") holds every notch and cut
   narrower than the disk. Residue components with
   ``mousebite_min_area_px``..``mousebite_max_area_px`` pixels are kept. A
   residue that touches two or more separate copper components cuts a
   conductor in two: ``open``; otherwise it is a notch: ``mousebite``.

Known limits
------------
* Without a template, a legitimately thin trace, a narrow gap between
  conductors, a sharp inner corner or a small pad looks like a defect, so the
  area bands trade recall for precision; see ``docs/reference-model-service.md``
  for the figures measured on DeepPCB.
* An ``open`` whose two halves stay connected elsewhere on the board is
  reported as ``mousebite``; a ``short`` between conductors that are connected
  elsewhere is reported as ``spur``.
* A spurious-copper blob or pin-hole larger than its area limit is missed; a
  small legitimate pad or drill hole below it is reported.
* The thresholds suit ~48 px/mm binarised scans (DeepPCB); other resolutions
  need other values.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage as ndi
from skimage import filters, morphology
from skimage.measure import regionprops

from segformer_service.config import ServiceSettings
from segformer_service.engines.base import LabelMask, as_grey

BoolMask = NDArray[np.bool_]
IntLabels = NDArray[np.int32]

_FOUR = ndi.generate_binary_structure(2, 1)
_EIGHT = ndi.generate_binary_structure(2, 2)


def _label(mask: BoolMask, structure: NDArray[np.bool_]) -> tuple[IntLabels, int]:
    labels, count = ndi.label(mask, structure=structure)
    return labels.astype(np.int32, copy=False), int(count)


def _select(labels: IntLabels, keep: NDArray[np.bool_]) -> BoolMask:
    """Mask of the components whose entry in ``keep`` (indexed by label 0..n) is True."""
    keep = keep.copy()
    keep[0] = False
    return keep[labels]


def _area_band(labels: IntLabels, count: int, min_area: int, max_area: int) -> NDArray[np.bool_]:
    """Per label 0..count: does the component have min_area..max_area pixels?"""
    areas = np.bincount(labels.ravel(), minlength=count + 1)
    return (areas >= min_area) & (areas <= max_area)


def _touching_border(labels: IntLabels, count: int) -> NDArray[np.bool_]:
    """Per label 0..count: does the component touch the image border?"""
    border = np.concatenate([labels[0, :], labels[-1, :], labels[:, 0], labels[:, -1]])
    touches = np.zeros(count + 1, dtype=bool)
    touches[border] = True
    return touches


def _neighbour_counts(
    residue_labels: IntLabels, residue_count: int, part_labels: IntLabels
) -> NDArray[np.int64]:
    """Per residue label 0..n: how many distinct parts (labels > 0) lie in its 3x3 dilation."""
    grown = ndi.grey_dilation(residue_labels, size=(3, 3))
    near = (grown > 0) & (part_labels > 0)
    pairs = np.unique(np.stack([grown[near], part_labels[near]]), axis=1)
    return np.bincount(pairs[0], minlength=residue_count + 1)


class ClassicalEngine:
    """Template-free morphological defect segmentation (see the module docstring)."""

    name = "classical"

    def __init__(self, settings: ServiceSettings) -> None:
        self._settings = settings
        self._ids = settings.class_id_by_name()

    def segment(self, image: NDArray[np.uint8]) -> LabelMask:
        """Segment defects of one binarised PCB scan.

        Args:
            image: ``(H, W)`` grey or ``(H, W, 3)`` RGB ``uint8`` image.

        Returns:
            ``(H, W)`` ``int32`` label mask; each defect pixel holds the class id of
            its class (from the settings), ``0`` elsewhere. A class whose name is
            not in ``settings.class_names`` is not reported.

        Raises:
            ValueError: if the image shape is not ``(H, W)`` or ``(H, W, 3)``.
        """
        masks = self.defect_masks(image)
        out = np.zeros(masks["open"].shape, dtype=np.int32)
        for name, mask in masks.items():
            class_id = self._ids.get(name)
            if class_id is not None:
                out[mask] = class_id
        return out

    def copper(self, grey: NDArray[np.uint8]) -> BoolMask:
        """Binarise an ``(H, W)`` grey image into a copper mask with specks removed."""
        s = self._settings
        if int(grey.min()) == int(grey.max()):
            threshold = 127.5  # a blank image: Otsu's threshold is undefined
        elif s.binarise_threshold is not None:
            threshold = float(s.binarise_threshold)
        else:
            threshold = float(filters.threshold_otsu(grey))
        # skimage convention: grey levels above the threshold are the bright phase.
        copper: BoolMask = grey <= threshold if s.copper_polarity == "dark" else grey > threshold
        if s.noise_max_area_px > 0:
            copper = morphology.remove_small_objects(copper, max_size=s.noise_max_area_px)
            copper = ~morphology.remove_small_objects(~copper, max_size=s.noise_max_area_px)
        return copper

    def _not_round(self, labels: IntLabels, keep: NDArray[np.bool_]) -> NDArray[np.bool_]:
        """Drop from ``keep`` the large, round, convex components (pads and drill holes)."""
        s = self._settings
        keep = keep.copy()
        for props in regionprops(np.where(keep[labels], labels, 0)):
            if (
                props.area >= s.round_feature_min_area_px
                and props.eccentricity <= s.round_feature_max_eccentricity
                and props.solidity >= s.round_feature_min_solidity
            ):
                keep[props.label] = False
        return keep

    def _short_enough(self, labels: IntLabels, keep: NDArray[np.bool_]) -> NDArray[np.bool_]:
        """Drop from ``keep`` the components longer than ``thin_feature_max_length_px``."""
        keep = keep.copy()
        for props in regionprops(np.where(keep[labels], labels, 0)):
            if props.axis_major_length > self._settings.thin_feature_max_length_px:
                keep[props.label] = False
        return keep

    def _large_parts(self, mask: BoolMask) -> IntLabels:
        """Label the components of ``mask`` with at least ``bridge_part_min_area_px`` pixels."""
        labels, count = _label(mask, _EIGHT)
        big = _area_band(labels, count, self._settings.bridge_part_min_area_px, labels.size)
        labels[~big[labels]] = 0  # in place: no second int32 image
        return labels

    def defect_masks(self, image: NDArray[np.uint8]) -> dict[str, BoolMask]:
        """One boolean ``(H, W)`` mask per defect kind (keys: the six DeepPCB class names).

        Raises:
            ValueError: if the image shape is not ``(H, W)`` or ``(H, W, 3)``.
        """
        s = self._settings
        copper = self.copper(as_grey(image))

        # Spurious copper: small, not round copper islands away from the border.
        cu_labels, cu_count = _label(copper, _EIGHT)
        keep = _area_band(cu_labels, cu_count, 1, s.spurious_copper_max_area_px)
        keep &= ~_touching_border(cu_labels, cu_count)
        spurious = _select(cu_labels, self._not_round(cu_labels, keep))
        conductors = copper & ~spurious
        # Each int32 label image is 4 bytes per pixel (200 MB at 50 Mpx): freed as soon as
        # its masks are made, so at most two are alive at once.
        del cu_labels

        # Pin-holes: small, not round substrate regions enclosed by copper.
        bg_labels, bg_count = _label(~copper, _FOUR)
        keep = _area_band(bg_labels, bg_count, 1, s.pin_hole_max_area_px)
        keep &= ~_touching_border(bg_labels, bg_count)
        pin_hole = _select(bg_labels, self._not_round(bg_labels, keep))
        solid = conductors | pin_hole
        del bg_labels, copper

        # Spur / short: short, thin copper features removed by an opening.
        opened = morphology.opening(solid, morphology.disk(s.spur_opening_radius_px))
        th_labels, th_count = _label(conductors & ~opened, _EIGHT)
        keep = _area_band(th_labels, th_count, s.spur_min_area_px, s.spur_max_area_px)
        keep = self._short_enough(th_labels, keep)
        bridges = _neighbour_counts(th_labels, th_count, self._large_parts(opened))
        short = _select(th_labels, keep & (bridges >= 2))
        spur = _select(th_labels, keep & (bridges == 1))
        del th_labels, opened, conductors

        # Mousebite / open: short, thin gaps in copper filled by a closing.
        closed = morphology.closing(solid, morphology.disk(s.mousebite_closing_radius_px))
        gp_labels, gp_count = _label(closed & ~solid, _EIGHT)
        del closed
        keep = _area_band(gp_labels, gp_count, s.mousebite_min_area_px, s.mousebite_max_area_px)
        keep = self._short_enough(gp_labels, keep)
        cuts = _neighbour_counts(gp_labels, gp_count, self._large_parts(solid))
        open_ = _select(gp_labels, keep & (cuts >= 2))
        mousebite = _select(gp_labels, keep & (cuts == 1))

        return {
            "open": open_,
            "short": short,
            "mousebite": mousebite,
            "spur": spur,
            "spurious_copper": spurious,
            "pin_hole": pin_hole,
        }
