"""The template engine's learned region classifier, and the re-scanned golden benchmark.

Hand-built forests check the array evaluation and the engine's use of the
answer (relabel or drop); the bundled forest is loaded and run on synthetic and
sample boards; the benchmark's re-scan simulation must leave a golden board
without calls.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage as ndi

from segformer_service.config import DEFAULT_TEMPLATE_CLASSIFIER, ServiceSettings
from segformer_service.engines import TemplateEngine, create_engine
from segformer_service.engines.region_classifier import (
    FEATURE_NAMES,
    NO_DEFECT,
    RULE_CLASSES,
    Forest,
    Region,
    region_features,
)
from tests.segformer_service.test_template import _defective, _golden

REPO_ROOT = Path(__file__).resolve().parents[2]
TRAINVAL = REPO_ROOT.parent / "shared" / "datasets" / "deeppcb-trainval"
OPEN = 1
CLASSES = (NO_DEFECT, *RULE_CLASSES)


def _constant_forest(answer: str) -> Forest:
    """One leaf-only tree that gives every region ``answer``."""
    value = np.zeros((1, len(CLASSES)), dtype=np.float32)
    value[0, CLASSES.index(answer)] = 1.0
    return Forest(
        feature=np.zeros(1, np.int32),
        threshold=np.zeros(1, np.float32),
        left=np.full(1, -1, np.int32),
        right=np.full(1, -1, np.int32),
        value=value,
        roots=np.zeros(1, np.int32),
        classes=CLASSES,
        feature_names=FEATURE_NAMES,
    )


def _two_trees() -> Forest:
    """Tree 1 splits on feature 6 (area) at 50; tree 2 is a leaf: 'spur' with share 1."""
    value = np.zeros((4, len(CLASSES)), dtype=np.float32)
    value[1, CLASSES.index("open")] = 1.0  # area <= 50
    value[2, CLASSES.index(NO_DEFECT)] = 1.0  # area > 50
    value[3, CLASSES.index("spur")] = 1.0
    return Forest(
        feature=np.array([6, 0, 0, 0], np.int32),
        threshold=np.array([50.0, 0, 0, 0], np.float32),
        left=np.array([1, -1, -1, -1], np.int32),
        right=np.array([2, -1, -1, -1], np.int32),
        value=value,
        roots=np.array([0, 3], np.int32),
        classes=CLASSES,
        feature_names=FEATURE_NAMES,
    )


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("templates")
    Image.fromarray(_golden()).save(folder / "golden.png")
    return folder


def _engine(library: Path, **overrides: Any) -> TemplateEngine:
    engine = create_engine(ServiceSettings(engine="template", templates_dir=library, **overrides))
    assert isinstance(engine, TemplateEngine)
    return engine


def test_forest_averages_its_trees_and_survives_a_file_round_trip(tmp_path: Path) -> None:
    features = np.zeros((2, len(FEATURE_NAMES)), np.float32)
    features[0, 6], features[1, 6] = 10.0, 90.0
    forest = _two_trees()
    proba = forest.predict_proba(features)
    assert proba[0, CLASSES.index("open")] == pytest.approx(0.5)
    assert proba[0, CLASSES.index("spur")] == pytest.approx(0.5)
    assert proba[1, CLASSES.index(NO_DEFECT)] == pytest.approx(0.5)
    forest.save(tmp_path / "forest.npz")
    again = Forest.load(tmp_path / "forest.npz")
    np.testing.assert_allclose(again.predict_proba(features), proba)
    assert again.classes == CLASSES
    assert forest.predict(np.zeros((0, len(FEATURE_NAMES)), np.float32)) == []


def test_forest_of_other_features_or_no_forest_is_a_clear_error(tmp_path: Path) -> None:
    forest = _two_trees()
    forest.feature_names = ("something", "else")
    forest.save(tmp_path / "old.npz")
    with pytest.raises(ValueError, match="other features"):
        Forest.load(tmp_path / "old.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a forest")
    with pytest.raises(ValueError, match="not readable"):
        Forest.load(tmp_path / "junk.npz")
    with pytest.raises(ValueError, match="not readable"):
        Forest.load(tmp_path / "missing.npz")


@pytest.mark.parametrize("value", ["", "none", "None", " NONE "])
def test_classifier_setting_none_means_rules_alone(value: str) -> None:
    assert ServiceSettings(template_classifier=value).template_classifier is None
    assert ServiceSettings().template_classifier == DEFAULT_TEMPLATE_CLASSIFIER
    assert DEFAULT_TEMPLATE_CLASSIFIER.is_file()


def test_engine_relabels_or_drops_regions_as_the_forest_says(library: Path) -> None:
    board = _defective(_golden(), 2, -1)
    rules = _engine(library, template_classifier=None).segment(board)
    assert len({int(v) for v in np.unique(rules)} - {0}) == 6
    engine = _engine(library, template_classifier=None)
    engine.classifier = _constant_forest("open")
    relabelled = engine.segment(board)
    np.testing.assert_array_equal(relabelled > 0, rules > 0)
    assert set(np.unique(relabelled)) == {0, OPEN}
    engine.classifier = _constant_forest(NO_DEFECT)
    assert not engine.segment(board).any()


def test_bundled_forest_keeps_the_synthetic_defects_classes(library: Path) -> None:
    board = _defective(_golden(), 3, -2)
    rules = _engine(library, template_classifier=None).segment(board)
    learned = _engine(library)
    assert learned.classifier is not None
    np.testing.assert_array_equal(learned.segment(board), rules)


def test_features_describe_each_rule_region(library: Path) -> None:
    engine = _engine(library, template_classifier=None)
    engine.want_features = True
    golden = _golden()
    board = _defective(golden, 0, 0)
    out, regions, features = engine.compare_regions(board, golden)
    assert features.shape == (len(regions), len(FEATURE_NAMES)) == (7, len(FEATURE_NAMES))
    assert all(isinstance(r, Region) for r in regions)
    column = {name: i for i, name in enumerate(FEATURE_NAMES)}
    for region, row in zip(regions, features, strict=True):
        assert row[column[f"rule_{region.rule_class}"]] == 1.0
        assert row[column["area"]] == region.mask.sum()
        assert (out[region.box][region.mask] > 0).all()
    cut = next(r for r, f in zip(regions, features, strict=True) if r.rule_class == "open")
    assert features[regions.index(cut), column["copper_components_change"]] >= 1
    bridge = next(r for r in regions if r.rule_class == "short")
    assert features[regions.index(bridge), column["copper_components_change"]] <= -1
    # Without a classifier and without want_features: no features are computed.
    engine.want_features = False
    _, no_regions, no_features = engine.compare_regions(board, golden)
    assert no_regions == []
    assert no_features.shape == (0, len(FEATURE_NAMES))
    assert region_features([], golden < 128, golden < 128).shape == (0, len(FEATURE_NAMES))


def _benchmark() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "deeppcb_accuracy", REPO_ROOT / "benchmarks" / "deeppcb_accuracy.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("width_px", [-1.0, 0.0, 1.0])
def test_rescanned_golden_board_gets_no_call(library: Path, width_px: float) -> None:
    bench = _benchmark()
    golden = _golden()
    scan = bench.rescanned(golden, np.random.default_rng(3), width_px)
    assert scan.shape == golden.shape
    assert scan.dtype == np.uint8
    again = bench.rescanned(golden, np.random.default_rng(3), width_px)
    np.testing.assert_array_equal(scan, again)
    # The copper moved (a new scan, not a copy) and its area changed with the width.
    assert (scan < 128).sum() != (golden < 128).sum()
    result = _engine(library).segment_with_provenance(scan)
    assert result.engine == "template"
    assert not result.label_mask.any()


def test_rescanned_benchmark_counts_calls_on_the_sample_templates(deeppcb: Path) -> None:
    bench = _benchmark()
    settings = ServiceSettings(engine="template", templates_dir=deeppcb / "templates")
    boards, calls, with_call, by_class = bench.rescanned_golden_calls(deeppcb, settings)
    assert boards == len(list((deeppcb / "templates").glob("*.jpg")))
    assert calls == with_call == sum(by_class.values()) == 0


@pytest.mark.skipif(not TRAINVAL.is_dir(), reason="DeepPCB train/val split not present")
def test_periodic_layout_is_registered_not_aliased_by_a_period() -> None:
    """DeepPCB 13000130: a periodic layout whose phase correlation peaks a period away."""
    template = np.asarray(Image.open(TRAINVAL / "templates" / "13000130.jpg").convert("L"))
    image = np.asarray(Image.open(TRAINVAL / "images" / "13000130.jpg").convert("L"))
    from segformer_service.engines.template import Template, coarse_signature

    engine = TemplateEngine(
        ServiceSettings(engine="template", templates_dir=TRAINVAL / "templates"),
        [Template("13000130.jpg", template, coarse_signature(template, 8))],
    )
    result = engine.segment_with_provenance(image)
    assert result.engine == "template"
    offset = result.provenance["registration_offset"]
    assert max(abs(offset["x"]), abs(offset["y"])) <= 3
    _, regions = ndi.label(result.label_mask > 0, structure=np.ones((3, 3)))
    assert 1 <= regions <= 12


def test_width_feature_is_the_edge_move_that_explains_a_short_or_open() -> None:
    """Golden gap 2 px -> 1, gap 8 px -> 4 (a real bridge), no bridge through it -> 0."""
    from tests.segformer_service.test_template import _narrow_board

    golden = _narrow_board() < 128
    board = golden.copy()
    board[100:102, 60:90] = True  # closes the 2 px gap
    board[160:168, 200:210] = True  # bridges the 8 px gap
    board[160:165, 40:80] = True  # protrudes into the 8 px gap, bridges nothing
    board[269:271, 150:156] = False  # cuts the 2 px neck
    board[30:100, 150:156] = False  # cuts the first plate (70 px wide) from top to gap
    boxes = {
        "narrow": (slice(100, 102), slice(60, 90)),
        "wide": (slice(160, 168), slice(200, 210)),
        "protrusion": (slice(160, 165), slice(40, 80)),
        "neck": (slice(269, 271), slice(150, 156)),
        "plate": (slice(30, 100), slice(150, 156)),
    }
    rules = {"narrow": "short", "wide": "short", "protrusion": "short"}
    regions = [
        Region(
            rules.get(name, "open"),
            box,
            np.ones((box[0].stop - box[0].start, box[1].stop - box[1].start), dtype=bool),
        )
        for name, box in boxes.items()
    ]
    features = region_features(regions, board, golden)
    explains = dict(zip(boxes, features[:, FEATURE_NAMES.index("width_explains_px")], strict=True))
    assert explains == {"narrow": 1.0, "wide": 4.0, "protrusion": 0.0, "neck": 1.0, "plate": 4.0}
