"""Engine registry and the classical engine on synthetic boards."""

from __future__ import annotations

import numpy as np
import pytest

from segformer_service.config import ServiceSettings
from segformer_service.engines import (
    ClassicalEngine,
    SegmentationEngine,
    available_engines,
    create_engine,
)

WHITE, BLACK = 255, 0


def _board() -> np.ndarray:
    """A 200x200 synthetic DeepPCB-like scan: dark copper traces on a bright substrate."""
    board = np.full((200, 200), WHITE, dtype=np.uint8)
    board[40:60, :] = BLACK  # horizontal trace, 20 px wide
    board[140:160, :] = BLACK  # another one
    return board


def test_registry_lists_and_builds_classical() -> None:
    assert "classical" in available_engines()
    engine = create_engine(ServiceSettings())
    assert isinstance(engine, ClassicalEngine)
    assert isinstance(engine, SegmentationEngine)
    assert engine.name == "classical"


def test_unknown_engine_is_a_clear_value_error() -> None:
    with pytest.raises(
        ValueError, match=r"unknown segmentation engine 'segformer_onnx'.*classical"
    ):
        create_engine(ServiceSettings(engine="segformer_onnx"))


def test_clean_board_has_no_defects() -> None:
    mask = create_engine(ServiceSettings()).segment(_board())
    assert mask.shape == (200, 200)
    assert mask.dtype == np.int32
    assert not mask.any()


def test_spurious_copper_and_pin_hole_are_found() -> None:
    board = _board()
    board[95:103, 90:105] = BLACK  # isolated 8x15 copper blob between the traces
    board[145:149, 60:70] = WHITE  # 4x10 hole inside the lower trace
    mask = create_engine(ServiceSettings()).segment(board)
    assert set(np.unique(mask[95:103, 90:105])) == {5}
    assert set(np.unique(mask[145:149, 60:70])) == {6}
    assert int((mask == 5).sum()) == 8 * 15
    assert int((mask == 6).sum()) == 4 * 10


def test_spur_mousebite_and_short() -> None:
    board = _board()
    board[60:66, 30:34] = BLACK  # 6x4 protrusion below the upper trace: spur
    board[40:48, 100:106] = WHITE  # 8x6 notch in the upper trace's edge: mousebite
    board[60:140, 160:163] = BLACK  # 3-px-wide bridge between the traces: short
    settings = ServiceSettings(thin_feature_max_length_px=100, spur_max_area_px=300)
    mask = create_engine(settings).segment(board)
    assert (mask[60:66, 30:34] == 4).any()
    assert (mask[40:48, 100:106] == 3).sum() >= 20
    assert (mask[70:130, 160:163] == 2).all()


def test_open_is_a_cut_across_a_trace() -> None:
    board = _board()
    board[40:60, 120:123] = WHITE  # 3-px cut through the upper trace
    mask = create_engine(ServiceSettings()).segment(board)
    # The closing cannot fill the cut's mouths at the trace's edges.
    assert (mask[42:58, 120:123] == 1).all()
    assert set(np.unique(mask)) == {0, 1}


def test_round_drill_hole_is_not_a_pin_hole() -> None:
    board = np.full((120, 120), WHITE, dtype=np.uint8)
    yy, xx = np.mgrid[:120, :120]
    board[(yy - 60) ** 2 + (xx - 60) ** 2 <= 30**2] = BLACK  # round pad
    board[(yy - 60) ** 2 + (xx - 60) ** 2 <= 9**2] = WHITE  # drilled hole, ~250 px
    assert not create_engine(ServiceSettings()).segment(board).any()


def test_rgb_and_grey_give_the_same_mask() -> None:
    board = _board()
    board[95:103, 90:105] = BLACK
    engine = create_engine(ServiceSettings())
    rgb = np.repeat(board[:, :, np.newaxis], 3, axis=2)
    assert (engine.segment(rgb) == engine.segment(board)).all()


def test_bright_copper_polarity() -> None:
    board = WHITE - _board()
    board[95:103, 90:105] = WHITE
    mask = create_engine(ServiceSettings(copper_polarity="bright")).segment(board)
    assert set(np.unique(mask[95:103, 90:105])) == {5}


def test_renamed_classes_get_their_ids_and_unknown_kinds_are_dropped() -> None:
    board = _board()
    board[95:103, 90:105] = BLACK
    settings = ServiceSettings(class_names=["spurious_copper"], class_ids=[42])
    mask = create_engine(settings).segment(board)
    assert set(np.unique(mask)) == {0, 42}


def test_blank_image_has_no_defects() -> None:
    engine = create_engine(ServiceSettings())
    assert not engine.segment(np.full((32, 32), 128, dtype=np.uint8)).any()


def test_bad_image_shape_is_rejected() -> None:
    with pytest.raises(ValueError, match="expected an"):
        create_engine(ServiceSettings()).segment(np.zeros((4, 4, 4), dtype=np.uint8))
