"""SHIFTS parsing and the UTC windows of local days and shifts (app/services/spc/shifts.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from app.services.spc.shifts import day_window, parse_shifts, shift_window, zone


def test_three_shifts_with_one_over_midnight() -> None:
    a, b, c = parse_shifts("A=06:00-14:00, B=14:00-22:00,C=22:00-06:00")
    assert (a.name, c.crosses_midnight, b.crosses_midnight) == ("A", True, False)
    berlin = zone("Europe/Berlin")
    # Night shift C of 7 December: 22:00 CET = 21:00 UTC, to 06:00 CET the next morning.
    assert shift_window(date(2026, 12, 7), c, berlin) == (
        datetime(2026, 12, 7, 21, tzinfo=UTC),
        datetime(2026, 12, 8, 5, tzinfo=UTC),
    )


def test_local_day_on_a_daylight_saving_change_has_23_hours() -> None:
    start, end = day_window(date(2026, 3, 29), zone("Europe/Berlin"))
    assert (end - start).total_seconds() == 23 * 3600


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("A=06:00-14:00,B=13:00-22:00", "overlaps"),
        ("A=06:00-14:00,A=14:00-22:00", "named twice"),
        ("A=6-14", "NAME=HH:MM-HH:MM"),
        ("A=06:00-24:00", "00 to 23"),
        ("A=22:00-07:00,B=06:00-08:00", "overlaps"),
    ],
)
def test_bad_shifts_are_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_shifts(text)


def test_unknown_time_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="IANA"):
        zone("Mars/Olympus")
    assert parse_shifts("") == ()
