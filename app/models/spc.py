"""Response models of the SPC control charts (`/api/spc/*`, docs/spc.md)."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, Field


class SpcPoint(BaseModel):
    """One subgroup (a day or a shift with boards) on a control chart."""

    key: str = Field(description="`2026-12-07` (a day) or `2026-12-07/A` (shift A of it).")
    day: date = Field(description="The production day, in SPC_TIMEZONE.")
    shift: str | None = Field(description="The shift's name; null for a per-day chart.")
    boards: int = Field(description="Boards inspected (nᵢ).")
    count: int = Field(description="Defective boards (p-chart) or defects (u-chart).")
    value: float = Field(description="Fraction defective (p) or defects per board (u).")
    center: float
    lcl: float | None = Field(description="Lower 3σ limit; null when the chart has none.")
    ucl: float | None = Field(description="Upper 3σ limit; null when the chart has none.")
    z: float | None = Field(description="(value − center) / σᵢ.")
    rules: list[int] = Field(description="Western Electric rules this point completes.")


class SpcAlarm(BaseModel):
    """One excursion: consecutive points flagged by one rule on one side."""

    chart: Literal["p", "u"]
    rule: int = Field(description="Western Electric rule, 1-4.")
    rule_text: str
    side: Literal["above", "below"]
    class_name: str | None = Field(description="The u-chart's class; null on a p-chart.")
    product: str | None = Field(description="Board context filter; null: all products.")
    line: str | None = Field(description="Board context filter; null: all lines.")
    first_key: str = Field(description="The subgroup that raised the alarm.")
    last_key: str = Field(description="The last subgroup still flagged.")
    open: bool = Field(description="Whether the latest subgroup is still in the excursion.")


class SpcChart(BaseModel):
    """A p-chart or u-chart with its limits from a baseline, and its alarms."""

    kind: Literal["p", "u"]
    subgroup: Literal["day", "shift"]
    timezone: str = Field(description="SPC_TIMEZONE: the zone days and shifts are in.")
    class_name: str | None
    start_date: date
    end_date: date
    center: float = Field(description="p̄ or ū over the baseline.")
    baseline_subgroups: int = Field(description="Subgroups that set the limits.")
    baseline_boards: int
    limits_defined: bool = Field(description="False when the baseline has no variation.")
    rules: list[int] = Field(description="The Western Electric rules applied (SPC_RULES).")
    points: list[SpcPoint]
    alarms: list[SpcAlarm]
