"""Inspection ids and safe file names."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from app.utils.ids import IMG_UNIQUE_ID_PATTERN, new_batch_id, new_img_unique_id, safe_filename


def test_img_unique_id_is_utc_date_time_and_six_random_characters() -> None:
    taipei = timezone(timedelta(hours=8))
    at = datetime(2026, 2, 25, 18, 30, 45, tzinfo=taipei)
    ids = {new_img_unique_id(at) for _ in range(50)}
    assert all(re.match(IMG_UNIQUE_ID_PATTERN, i) for i in ids)
    assert all(i.startswith("20260225_103045_") for i in ids)
    assert len(ids) == 50
    assert new_batch_id(datetime(2026, 1, 1, tzinfo=UTC)).startswith("B_20260101_000000_")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("board 1.jpg", "board_1.jpg"),
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\system32\\CON", "CON_"),
        ("", "image"),
        (None, "image"),
        ("板子.png", "png"),
        ("a" * 300 + ".jpg", "a" * 76 + ".jpg"),
    ],
)
def test_safe_filename_keeps_only_safe_characters(name: str | None, expected: str) -> None:
    assert safe_filename(name) == expected
