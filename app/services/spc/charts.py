"""Attribute control charts and the Western Electric rules, as pure functions.

No I/O: the subgroups come in as counts, the charts and alarms go out as data.

Charts (Montgomery, *Introduction to Statistical Quality Control*, ch. 7; NIST/SEMATECH
e-Handbook of Statistical Methods, 6.3.3.1 "Counts control charts" and 6.3.3.2
"Proportions control charts"):

- **p-chart**, fraction of defective boards in a subgroup of nᵢ boards:
  p̄ = Σ defective / Σ boards over the baseline; limits p̄ ± 3·√(p̄(1 − p̄)/nᵢ), clamped to
  [0, 1], so the limits step with each subgroup's size.
- **u-chart**, defects per board in a subgroup of nᵢ boards:
  ū = Σ defects / Σ boards over the baseline; limits ū ± 3·√(ū/nᵢ), the lower clamped at 0.

The centre line and σ come from a *baseline*: the first `baseline` subgroups (Phase I),
then every subgroup (the baseline's included) is judged against them (Phase II).

Rules (Western Electric Company, *Statistical Quality Control Handbook*, 1956, pp. 25–28;
NIST/SEMATECH e-Handbook 6.3.2, "What are Control Charts?", the WECO rules), each on one
side of the centre line, judged on zᵢ = (xᵢ − centre)/σᵢ so variable limits work:

1. one point beyond 3σ;
2. two of three consecutive points beyond 2σ;
3. four of five consecutive points beyond 1σ;
4. eight consecutive points on the same side of the centre line.

and, on the p-chart only, an opt-in fifth (not a Western Electric rule):

5. a **binomial CUSUM** of the defective boards for a doubling of p̄ crosses its decision
   interval h (Montgomery, *Introduction to Statistical Quality Control*, 6th ed., §9.1,
   the CUSUM for other sample statistics; the Bernoulli CUSUM of Reynolds & Stoumbos,
   "A CUSUM Chart for Monitoring a Proportion When Inspecting Continuously", *Journal of
   Quality Technology* 31(1), 1999, is its case nᵢ = 1): with p₀ = p̄, p₁ = 2p̄ and a
   subgroup of nᵢ boards with xᵢ defective,
   Sᵢ = max(0, Sᵢ₋₁ + xᵢ·ln(p₁/p₀) + (nᵢ − xᵢ)·ln((1 − p₁)/(1 − p₀))), S₀ = 0, the
   log-likelihood ratio of "doubled" against "in control" since the last time it was
   zero (Page's CUSUM, the sequential test that detects a step soonest for a given rate
   of false alarms, Lorden 1971). A point is flagged while Sᵢ > h; it is undefined (flags
   nothing) when p̄ ≥ 0.5, as the rate cannot double.

A point is flagged by a rule when the window ending at it meets the rule and the point
itself is one of the points that meet it (so a rule is reported at the point that completes
the pattern, as the handbook marks it). A point exactly on the centre line is on neither
side. With σ = 0 (a baseline with p̄ = 0 or 1, or ū = 0) the chart has no usable limits:
no point is flagged, and the chart says so (`limits_defined`).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from enum import IntEnum


class Rule(IntEnum):
    """The Western Electric rules, by handbook number."""

    BEYOND_3_SIGMA = 1
    TWO_OF_THREE_BEYOND_2_SIGMA = 2
    FOUR_OF_FIVE_BEYOND_1_SIGMA = 3
    EIGHT_ON_ONE_SIDE = 4
    # Not a Western Electric rule: the p-chart's binomial CUSUM (module docstring).
    CUSUM = 5


RULE_TEXT = {
    Rule.BEYOND_3_SIGMA: "one point beyond 3 sigma",
    Rule.TWO_OF_THREE_BEYOND_2_SIGMA: "two of three points beyond 2 sigma, same side",
    Rule.FOUR_OF_FIVE_BEYOND_1_SIGMA: "four of five points beyond 1 sigma, same side",
    Rule.EIGHT_ON_ONE_SIDE: "eight points in a row on one side of the centre line",
    Rule.CUSUM: "binomial CUSUM of a doubled defective rate beyond its decision interval",
}
"""A short description of each rule, for people (alarms, reports)."""

# (rule, window length, points needed in the window, zone in σ beyond which a point counts)
_WINDOW_RULES = (
    (Rule.BEYOND_3_SIGMA, 1, 1, 3.0),
    (Rule.TWO_OF_THREE_BEYOND_2_SIGMA, 3, 2, 2.0),
    (Rule.FOUR_OF_FIVE_BEYOND_1_SIGMA, 5, 4, 1.0),
    (Rule.EIGHT_ON_ONE_SIDE, 8, 8, 0.0),
)


class BadChartInput(ValueError):
    """Counts that cannot form a chart (negative, defective > boards, no baseline)."""


@dataclass(frozen=True)
class Subgroup:
    """One subgroup: `boards` inspected (nᵢ) and `count` (defective boards for a p-chart,
    defects for a u-chart); `key` names it (a day, a shift) and is passed through."""

    key: str
    boards: int
    count: int


@dataclass(frozen=True)
class ChartPoint:
    """One plotted point: the statistic (fraction or defects per board), its limits and
    the rules that flag it (empty when in control). `z` is in σ units, None when σ = 0 or
    the subgroup is empty (then it is not plotted against limits and breaks every run)."""

    key: str
    boards: int
    count: int
    value: float | None
    center: float
    lcl: float | None
    ucl: float | None
    z: float | None
    rules: tuple[Rule, ...] = ()


@dataclass(frozen=True)
class Excursion:
    """A run of consecutive points flagged by one rule on one side: one alarm. `first` and
    `last` are point indexes (inclusive); `side` is +1 above the centre line, -1 below;
    `open` when the last point of the chart is still in it."""

    rule: Rule
    side: int
    first: int
    last: int
    open: bool


@dataclass(frozen=True)
class Chart:
    """A control chart: kind (`p` or `u`), the baseline's centre line, its points and
    excursions."""

    kind: str
    center: float
    baseline_subgroups: int
    baseline_boards: int
    limits_defined: bool
    points: list[ChartPoint] = field(default_factory=list)
    excursions: list[Excursion] = field(default_factory=list)


def _check(subgroups: Sequence[Subgroup], baseline: int, proportion: bool) -> None:
    if baseline < 1:
        raise BadChartInput(f"the baseline needs at least one subgroup, not {baseline}")
    for s in subgroups:
        if s.boards < 0 or s.count < 0:
            raise BadChartInput(f"subgroup {s.key}: negative counts")
        if proportion and s.count > s.boards:
            raise BadChartInput(f"subgroup {s.key}: {s.count} defective of {s.boards} boards")


ALL_RULES: tuple[Rule, ...] = (
    Rule.BEYOND_3_SIGMA,
    Rule.TWO_OF_THREE_BEYOND_2_SIGMA,
    Rule.FOUR_OF_FIVE_BEYOND_1_SIGMA,
    Rule.EIGHT_ON_ONE_SIDE,
)
"""The four Western Electric rules (the default; the CUSUM is opt-in)."""
DEFAULT_CUSUM_H = 5.0
"""The CUSUM's decision interval h, in natural-log units of the likelihood ratio
(docs/spc.md#the-target: with subgroups of 50 boards, no false alarm over 1,000
in-control boards at p̄ = 0.4 in 200 of 200 simulated runs)."""


def binomial_cusum(
    subgroups: Sequence[Subgroup], p0: float, p1: float | None = None
) -> list[float] | None:
    """Sᵢ of the binomial CUSUM for a step of the defective fraction from `p0` to `p1`
    (default 2·p0) after each subgroup (module docstring; Montgomery §9.1). Empty
    subgroups leave S unchanged. None when the step is not defined (p0 ≤ 0, p1 ≥ 1 or
    p1 ≤ p0).
    """
    p1 = 2 * p0 if p1 is None else p1
    if not 0 < p0 < p1 < 1:
        return None
    up, down = math.log(p1 / p0), math.log((1 - p1) / (1 - p0))
    s, out = 0.0, []
    for g in subgroups:
        s = max(0.0, s + g.count * up + (g.boards - g.count) * down)
        out.append(s)
    return out


def _chart(
    kind: str,
    subgroups: Sequence[Subgroup],
    baseline: int,
    rules: Collection[Rule],
    cusum_h: float = DEFAULT_CUSUM_H,
) -> Chart:
    proportion = kind == "p"
    _check(subgroups, baseline, proportion)
    base = subgroups[:baseline]
    base_boards = sum(s.boards for s in base)
    center = sum(s.count for s in base) / base_boards if base_boards else 0.0
    # σ for one board; a subgroup of n boards has σ/√n.
    unit_var = center * (1.0 - center) if proportion else center
    defined = base_boards > 0 and unit_var > 0
    points = []
    for s in subgroups:
        value = s.count / s.boards if s.boards else None
        if not defined or s.boards == 0 or value is None:
            points.append(ChartPoint(s.key, s.boards, s.count, value, center, None, None, None))
            continue
        sigma = math.sqrt(unit_var / s.boards)
        ucl = center + 3 * sigma
        points.append(
            ChartPoint(
                s.key,
                s.boards,
                s.count,
                value,
                center,
                max(center - 3 * sigma, 0.0),
                min(ucl, 1.0) if proportion else ucl,
                (value - center) / sigma,
            )
        )
    points = apply_rules(points, rules)
    if proportion and defined and Rule.CUSUM in rules:
        sums = binomial_cusum(subgroups, center)
        if sums is not None:
            points = [
                ChartPoint(**{**p.__dict__, "rules": (*p.rules, Rule.CUSUM)}) if s > cusum_h else p
                for p, s in zip(points, sums, strict=True)
            ]
    return Chart(kind, center, len(base), base_boards, defined, points, excursions(points))


def p_chart(
    subgroups: Sequence[Subgroup],
    baseline: int,
    rules: Collection[Rule] = ALL_RULES,
    cusum_h: float = DEFAULT_CUSUM_H,
) -> Chart:
    """The p-chart of defective boards: each point the fraction `count / boards`, centre p̄
    and limits p̄ ± 3√(p̄(1 − p̄)/nᵢ) from the first `baseline` subgroups, the WE `rules`
    applied (default all four) and, with `Rule.CUSUM` in `rules`, the binomial CUSUM for
    p₁ = 2p̄ with decision interval `cusum_h` (log-likelihood units).

    Raises:
        BadChartInput: baseline < 1, a negative count, or more defective than boards.
    """
    return _chart("p", subgroups, baseline, rules, cusum_h)


def u_chart(
    subgroups: Sequence[Subgroup], baseline: int, rules: Collection[Rule] = ALL_RULES
) -> Chart:
    """The u-chart of defects per board: each point `count / boards`, centre ū and limits
    ū ± 3√(ū/nᵢ) from the first `baseline` subgroups, the WE `rules` applied (default
    all four).

    Raises:
        BadChartInput: baseline < 1 or a negative count.
    """
    return _chart("u", subgroups, baseline, rules)


def _side(z: float | None, zone: float) -> int:
    """+1 / -1 when z is beyond `zone` σ above / below the centre (strictly beyond the
    centre line for zone 0), else 0."""
    if z is None:
        return 0
    if z > zone:
        return 1
    if z < -zone:
        return -1
    return 0


def apply_rules(
    points: Sequence[ChartPoint], rules: Collection[Rule] = ALL_RULES
) -> list[ChartPoint]:
    """The points with `rules` set to those of the given Western Electric rules each one completes
    (see the module docstring). A point without z (no limits, empty subgroup) is flagged by
    nothing and counts as in no zone."""
    flagged: list[list[Rule]] = [[] for _ in points]
    zs = [p.z for p in points]
    for rule, window, needed, zone in _WINDOW_RULES:
        if rule not in rules:
            continue
        for i in range(len(points)):
            own = _side(zs[i], zone)
            if own == 0 or i + 1 < window:
                continue
            hits = sum(1 for z in zs[i + 1 - window : i + 1] if _side(z, zone) == own)
            if hits >= needed:
                flagged[i].append(rule)
    return [
        ChartPoint(**{**p.__dict__, "rules": tuple(r)})
        for p, r in zip(points, flagged, strict=True)
    ]


def excursions(points: Sequence[ChartPoint]) -> list[Excursion]:
    """One excursion per rule and side for each run of consecutive points that rule flags
    on that side: the alarm is raised at the run's first point and cleared at the first
    point after it that the rule does not flag. Ordered by first point, then rule."""
    found: list[Excursion] = []
    for rule in Rule:
        start: int | None = None
        side = 0
        for i, p in enumerate(points):
            # The CUSUM watches for an increase only: its excursions are always above.
            up = rule == Rule.CUSUM or (p.z or 0) > 0
            s = (1 if up else -1) if rule in p.rules else 0
            if start is not None and s != side:
                found.append(Excursion(rule, side, start, i - 1, False))
                start = None
            if start is None and s != 0:
                start, side = i, s
        if start is not None:
            found.append(Excursion(rule, side, start, len(points) - 1, True))
    return sorted(found, key=lambda e: (e.first, e.rule))
