"""Response models of the SPC control charts (`/api/spc/*`, docs/spc.md)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

_POINT = {
    "key": "2026-12-07/A",
    "day": "2026-12-07",
    "shift": "A",
    "boards": 412,
    "count": 61,
    "value": 0.148,
    "center": 0.1,
    "lcl": 0.056,
    "ucl": 0.144,
    "z": 3.25,
    "rules": [1],
}
_ALARM = {
    "chart": "p",
    "rule": 1,
    "rule_text": "one point beyond 3 sigma",
    "side": "above",
    "class_name": None,
    "product": None,
    "line": None,
    "first_key": "2026-12-07/A",
    "last_key": "2026-12-07/A",
    "open": True,
}
_CHART = {
    "kind": "p",
    "subgroup": "shift",
    "timezone": "Europe/Berlin",
    "class_name": None,
    "start_date": "2026-11-08",
    "end_date": "2026-12-07",
    "center": 0.1,
    "baseline_subgroups": 20,
    "baseline_boards": 8240,
    "limits_defined": True,
    "rules": [1, 2, 3, 4],
    "points": [_POINT],
    "alarms": [_ALARM],
}


def _example(example: dict[str, Any]) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": [example]})


class SpcPoint(BaseModel):
    """One subgroup (a day or a shift with boards) on a control chart."""

    model_config = _example(_POINT)

    key: str = Field(description="`2026-12-07` (a day) or `2026-12-07/A` (shift A of it).")
    day: date = Field(description="The production day, in SPC_TIMEZONE.")
    shift: str | None = Field(
        default=None, description="The shift's name; null for a per-day chart."
    )
    boards: int = Field(description="Boards inspected (nᵢ).")
    count: int = Field(description="Defective boards (p-chart) or defects (u-chart).")
    value: float = Field(description="Fraction defective (p) or defects per board (u).")
    center: float
    lcl: float | None = Field(
        default=None, description="Lower 3σ limit; null when the chart has none."
    )
    ucl: float | None = Field(
        default=None, description="Upper 3σ limit; null when the chart has none."
    )
    z: float | None = Field(default=None, description="(value − center) / σᵢ.")
    rules: list[int] = Field(
        description="Rules this point completes (Western Electric 1-4; 5: the CUSUM)."
    )


class SpcAlarm(BaseModel):
    """One excursion: consecutive points flagged by one rule on one side."""

    model_config = _example(_ALARM)

    chart: Literal["p", "u"]
    rule: int = Field(
        description="Western Electric rule 1-4, or 5: the p-chart's binomial CUSUM (docs/spc.md)."
    )
    rule_text: str
    side: Literal["above", "below"]
    class_name: str | None = Field(
        default=None, description="The u-chart's class; null on a p-chart."
    )
    product: str | None = Field(
        default=None, description="Board context filter; null: all products."
    )
    line: str | None = Field(default=None, description="Board context filter; null: all lines.")
    first_key: str = Field(description="The subgroup that raised the alarm.")
    last_key: str = Field(description="The last subgroup still flagged.")
    open: bool = Field(description="Whether the latest subgroup is still in the excursion.")


class SpcChart(BaseModel):
    """A p-chart or u-chart with its limits from a baseline, and its alarms."""

    model_config = _example(_CHART)

    kind: Literal["p", "u"]
    subgroup: Literal["day", "shift"]
    timezone: str = Field(description="SPC_TIMEZONE: the zone days and shifts are in.")
    class_name: str | None = None
    start_date: date
    end_date: date
    center: float = Field(description="p̄ or ū over the baseline.")
    baseline_subgroups: int = Field(description="Subgroups that set the limits.")
    baseline_boards: int
    limits_defined: bool = Field(description="False when the baseline has no variation.")
    rules: list[int] = Field(description="The rules applied (SPC_RULES).")
    points: list[SpcPoint]
    alarms: list[SpcAlarm]


_RECORD = {
    **_ALARM,
    "id": 17,
    "subgroup": "shift",
    "raised_at": "2026-12-07T14:10:00Z",
    "cleared_at": None,
}


class SpcAlarmRecorded(SpcAlarm):
    """An excursion as the alarm check recorded it (`spc_alarms`)."""

    model_config = _example(_RECORD)

    id: int
    subgroup: Literal["day", "shift"]
    raised_at: datetime
    cleared_at: datetime | None = Field(default=None, description="Null while open.")


class SpcAlarmList(BaseModel):
    """Recorded alarms, newest first."""

    model_config = _example({"alarms": [_RECORD]})

    alarms: list[SpcAlarmRecorded]
