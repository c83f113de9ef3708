"""Settings of the reference model service.

Every field can be set from the environment with the prefix ``REFERENCE_SERVICE_``
(for example ``REFERENCE_SERVICE_ENGINE=classical`` or
``REFERENCE_SERVICE_MAX_UPLOAD_SIZE_MB=20``); list and dict fields take JSON
(``REFERENCE_SERVICE_CLASS_NAMES='["open","short"]'``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_TEMPLATE_CLASSIFIER = (
    Path(__file__).resolve().parent / "engines" / "template_classifier.npz"
)
"""The bundled region classifier of the template engine (see docs/reference-model-service.md)."""

DEFAULT_CLASS_NAMES: tuple[str, ...] = (
    "open",
    "short",
    "mousebite",
    "spur",
    "spurious_copper",
    "pin_hole",
)
"""The six DeepPCB defect classes, in the order of their DeepPCB type ids 1..6."""

DEFAULT_CLASS_COLORS: dict[str, str] = {
    "open": "#e6194b",
    "short": "#f58231",
    "mousebite": "#ffe119",
    "spur": "#3cb44b",
    "spurious_copper": "#4363d8",
    "pin_hole": "#911eb4",
}
"""RGB colours of the default classes; the web UI uses the same table."""

FALLBACK_CLASS_COLOR = "#a9a9a9"
"""Colour of a class that has no entry in ``class_colors``."""


class ServiceSettings(BaseSettings):
    """Typed settings of the reference model service (env prefix ``REFERENCE_SERVICE_``)."""

    model_config = SettingsConfigDict(env_prefix="REFERENCE_SERVICE_", extra="ignore")

    engine: str = Field(default="classical", description="Segmentation engine name.")
    class_names: list[str] = Field(default_factory=lambda: list(DEFAULT_CLASS_NAMES))
    class_ids: list[int] = Field(default_factory=lambda: [1, 2, 3, 4, 5, 6])
    class_colors: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_CLASS_COLORS))
    max_upload_size_mb: float = Field(default=50.0, gt=0, description="Upload limit, MiB.")
    max_image_pixels: int = Field(
        default=50_000_000,
        gt=0,
        description="Decompression-bomb guard: largest accepted width x height, pixels.",
    )
    max_concurrent_inferences: int = Field(
        default=2,
        ge=1,
        le=64,
        description="Inferences run at once; the others wait for a slot. Each takes up to "
        "about 21 bytes per pixel (1 GB at 49 Mpx), so this bounds the service's memory.",
    )

    # --- classical engine (all lengths and areas in pixels) ------------------
    copper_polarity: Literal["dark", "bright"] = Field(
        default="dark",
        description="Whether copper is the dark or the bright phase of the scan "
        "(DeepPCB: dark copper on a bright substrate).",
    )
    binarise_threshold: int | None = Field(
        default=None,
        ge=1,
        le=254,
        description="Grey levels above it (0..255) are the bright phase; None = Otsu's threshold.",
    )
    noise_max_area_px: int = Field(default=8, ge=0)
    spurious_copper_max_area_px: int = Field(default=450, ge=1)
    pin_hole_max_area_px: int = Field(default=350, ge=1)
    round_feature_min_area_px: int = Field(
        default=120,
        ge=1,
        description="Copper islands and enclosed holes at least this large that are also "
        "round (see the two fields below) are taken for pads and drill holes, not defects.",
    )
    round_feature_max_eccentricity: float = Field(default=0.6, ge=0, le=1)
    round_feature_min_solidity: float = Field(default=0.9, ge=0, le=1)
    spur_opening_radius_px: int = Field(default=4, ge=1)
    spur_min_area_px: int = Field(default=20, ge=1)
    spur_max_area_px: int = Field(default=150, ge=1)
    mousebite_closing_radius_px: int = Field(default=4, ge=1)
    mousebite_min_area_px: int = Field(default=20, ge=1)
    mousebite_max_area_px: int = Field(default=200, ge=1)
    thin_feature_max_length_px: float = Field(
        default=40.0,
        gt=0,
        description="Longest major axis of a spur/short/mousebite/open residue; longer "
        "residues are thin traces or narrow gaps of the layout.",
    )
    bridge_part_min_area_px: int = Field(
        default=400,
        ge=1,
        description="Smallest conductor piece that counts when deciding whether a residue "
        "bridges (short) or cuts (open) conductors.",
    )

    # --- template (golden-board) engine (lengths in pixels) -------------------
    templates_dir: Path | None = Field(
        default=None,
        description="Folder of golden (defect-free) images for the template engine.",
    )
    template_coarse_factor: int = Field(
        default=8, ge=1, description="Down-scaling factor of the coarse template search."
    )
    template_candidates: int = Field(
        default=3, ge=1, description="Best coarse matches that get a fine registration."
    )
    template_coarse_margin: float = Field(
        default=0.1,
        ge=0,
        le=2,
        description="Candidates whose coarse NCC is more than this below the best one's "
        "are not registered.",
    )
    template_local_tiles: int = Field(
        default=4,
        ge=1,
        description="Tiles per side for the local (affine) refinement of the registration; "
        "1 = global shift only.",
    )
    template_min_match_score: float = Field(
        default=0.5,
        ge=-1,
        le=1,
        description="Smallest NCC of image and registered template; below it the engine "
        "falls back to the classical engine.",
    )
    template_max_offset_px: float = Field(
        default=20.0, ge=0, description="Largest accepted registration offset, pixels."
    )
    template_tolerance_px: int = Field(
        default=2,
        ge=0,
        description="Radius of the disk that absorbs edge and registration noise, pixels.",
    )
    template_median_px: int = Field(
        default=3,
        ge=1,
        description="Side of the median filter applied before binarising (speckle), pixels; "
        "1 = none.",
    )
    template_min_radius_px: float = Field(
        default=2.5,
        ge=0,
        description="A difference region counts only if it holds a disk of this radius "
        "(largest Euclidean distance to its outside), pixels; edge slivers are thinner.",
    )
    template_min_depth_px: float = Field(
        default=4.0,
        ge=0,
        description="...or reaches at least this far into the template phase it changes "
        "(from that phase's edge), pixels; edge deviations are shallower.",
    )
    template_gap_min_area_px: int = Field(
        default=100,
        ge=1,
        description="Smallest substrate region (gap, drill hole) that counts when deciding "
        "whether missing copper cuts a ring (open), pixels.",
    )
    template_max_sliver_length_px: float = Field(
        default=80.0,
        gt=0,
        description="A thin difference (inscribed radius below twice template_min_radius_px) "
        "longer than this (major axis) is a line-width variation along a conductor, not a "
        "defect, pixels; shorts and opens are kept whatever their shape.",
    )
    template_width_tolerance_px: int = Field(
        default=1,
        ge=0,
        description="A short is not called where the extra copper it needs lies within this "
        "distance of golden copper (a golden gap of at most twice this width: a line width "
        "+1 px re-scan closes it), nor an open where the missing copper it needs lies within "
        "this distance of golden substrate (a golden conductor neck as narrow), pixels; "
        "0 = off.",
    )
    template_min_area_px: int = Field(
        default=10, ge=1, description="Smallest difference core reported as a defect, pixels."
    )
    template_classifier: Path | None = Field(
        default=DEFAULT_TEMPLATE_CLASSIFIER,
        description="Region classifier of the template engine (a .npz forest trained on "
        "DeepPCB train/val by benchmarks/train_region_classifier.py) that decides each "
        "difference region's class or drops it as no defect; None = the topology rules alone.",
    )

    # --- onnx engine ------------------------------------------------------------
    onnx_model: Path | None = Field(
        default=None, description="SegFormer-style semantic-segmentation model in ONNX."
    )
    onnx_providers: list[str] | None = Field(
        default=None,
        description="onnxruntime execution providers; None = CUDA when installed, then CPU.",
    )
    onnx_threads: int = Field(
        default=0, ge=0, description="onnxruntime intra-op threads; 0 = its default."
    )

    @field_validator("template_classifier", mode="before")
    @classmethod
    def _no_classifier(cls, value: object) -> object:
        # "" or "none" (any case) in the environment = the topology rules alone.
        if isinstance(value, str) and value.strip().lower() in {"", "none"}:
            return None
        return value

    @model_validator(mode="after")
    def _check_classes(self) -> Self:
        if len(self.class_names) != len(self.class_ids):
            raise ValueError("class_names and class_ids must have the same length")
        if len(set(self.class_names)) != len(self.class_names):
            raise ValueError("class_names must be unique")
        if len(set(self.class_ids)) != len(self.class_ids):
            raise ValueError("class_ids must be unique")
        if any(class_id <= 0 for class_id in self.class_ids):
            raise ValueError("class_ids must be positive (0 is the background)")
        return self

    @property
    def max_upload_size_bytes(self) -> int:
        """Upload limit in bytes (``max_upload_size_mb`` x 2**20)."""
        return int(self.max_upload_size_mb * 1024 * 1024)

    def class_id_by_name(self) -> dict[str, int]:
        """Map each class name to its class id."""
        return dict(zip(self.class_names, self.class_ids, strict=True))

    def class_name_by_id(self) -> dict[int, str]:
        """Map each class id to its class name."""
        return dict(zip(self.class_ids, self.class_names, strict=True))

    def color_of(self, class_name: str) -> str:
        """RGB hex colour of a class (``#a9a9a9`` for a name without an entry)."""
        return self.class_colors.get(class_name, FALLBACK_CLASS_COLOR)
