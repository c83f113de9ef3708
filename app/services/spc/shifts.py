"""Subgroups in time: production days and shifts in the plant's time zone.

`SHIFTS` names the shifts, `A=06:00-14:00,B=14:00-22:00,C=22:00-06:00`: local wall-clock
times in `SPC_TIMEZONE` (an IANA name, default `UTC`), start included, end excluded. A
shift whose end is not after its start crosses midnight and belongs to the production day
it *starts* on (C of 7 December runs 22:00 on the 7th to 06:00 on the 8th). Shifts may not
overlap; hours outside every shift belong to no shift (they still count in the day).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_SHIFT = re.compile(r"^([A-Za-z0-9_-]{1,16})=([0-2][0-9]):([0-5][0-9])-([0-2][0-9]):([0-5][0-9])$")
MINUTES_PER_DAY = 24 * 60


@dataclass(frozen=True)
class Shift:
    """One shift: its name and local start and end times (end ≤ start: crosses midnight)."""

    name: str
    start: time
    end: time

    @property
    def crosses_midnight(self) -> bool:
        """Whether the shift ends on the next calendar day."""
        return self.end <= self.start

    def minutes(self) -> range:
        """Its minutes from the production day's midnight (0..2879 when it crosses)."""
        first = self.start.hour * 60 + self.start.minute
        last = self.end.hour * 60 + self.end.minute
        return range(first, last + (MINUTES_PER_DAY if self.crosses_midnight else 0))


def parse_shifts(text: str) -> tuple[Shift, ...]:
    """The shifts of a `SHIFTS` value, in the order given; empty text gives none.

    Raises:
        ValueError: an entry is not `NAME=HH:MM-HH:MM`, a time is past 23:59, a name repeats,
            or two shifts overlap.
    """
    shifts: list[Shift] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        match = _SHIFT.match(part)
        if not match:
            raise ValueError(f"shift {part!r} is not NAME=HH:MM-HH:MM (e.g. A=06:00-14:00)")
        name, h1, m1, h2, m2 = match.groups()
        if int(h1) > 23 or int(h2) > 23:
            raise ValueError(f"shift {part!r}: hours run 00 to 23")
        if any(s.name == name for s in shifts):
            raise ValueError(f"shift {name!r} is named twice")
        shifts.append(Shift(name, time(int(h1), int(m1)), time(int(h2), int(m2))))
    taken: set[int] = set()
    for shift in shifts:
        own = {m % MINUTES_PER_DAY for m in shift.minutes()}
        if own & taken:
            raise ValueError(f"shift {shift.name!r} overlaps another shift")
        taken |= own
    return tuple(shifts)


def zone(name: str) -> ZoneInfo:
    """The time zone of an IANA name (`Europe/Berlin`, `UTC`).

    Raises:
        ValueError: no such zone.
    """
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"{name!r} is not an IANA time zone name (e.g. Europe/Berlin)") from exc


def day_window(day: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The UTC instants [start, end) of a local calendar day (23 or 25 hours on a daylight
    saving change)."""
    start = datetime.combine(day, time(), tz)
    end = datetime.combine(day + timedelta(days=1), time(), tz)
    return start.astimezone(UTC), end.astimezone(UTC)


def shift_window(day: date, shift: Shift, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The UTC instants [start, end) of a shift of a production day."""
    end_day = day + timedelta(days=1) if shift.crosses_midnight else day
    start = datetime.combine(day, shift.start, tz)
    end = datetime.combine(end_day, shift.end, tz)
    return start.astimezone(UTC), end.astimezone(UTC)


def subgroup_key(day: date, shift: str | None) -> str:
    """The subgroup's label: `2026-12-07` for a day, `2026-12-07/A` for a shift."""
    return day.isoformat() if shift is None else f"{day.isoformat()}/{shift}"
