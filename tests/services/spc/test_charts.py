"""The SPC maths (app/services/spc/charts.py) on hand-checked numbers and simulated boards.

The simulation (docs/spc.md, "The target"): boards are defective with probability p₀ =
0.30 (an AOI line's call rate: a board with any region counts); subgroups are 50
consecutive boards; the baseline is the first 2,000 boards (40 subgroups). A 2× step
(p = 0.60) starts on a subgroup boundary, so "within 50 boards" means the first subgroup
after the step raises an upward alarm. Random numbers come from numpy's seeded generator.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from app.services.spc.charts import (
    BadChartInput,
    ChartPoint,
    Rule,
    Subgroup,
    apply_rules,
    binomial_cusum,
    p_chart,
    u_chart,
)

P0 = 0.30
BOARDS_PER_SUBGROUP = 50
BASELINE_SUBGROUPS = 2000 // BOARDS_PER_SUBGROUP


def _subgroups(counts: list[int], boards: int = BOARDS_PER_SUBGROUP) -> list[Subgroup]:
    return [Subgroup(str(i), boards, int(c)) for i, c in enumerate(counts)]


def _in_control_run(seed: int) -> list[Subgroup]:
    """Baseline, then 1,000 in-control boards."""
    rng = np.random.default_rng(seed)
    return _subgroups(rng.binomial(BOARDS_PER_SUBGROUP, P0, BASELINE_SUBGROUPS + 20).tolist())


def _step_run(seed: int) -> list[Subgroup]:
    """Baseline, then one subgroup (50 boards) at twice the defective rate."""
    rng = np.random.default_rng(seed)
    before = rng.binomial(BOARDS_PER_SUBGROUP, P0, BASELINE_SUBGROUPS).tolist()
    after = rng.binomial(BOARDS_PER_SUBGROUP, 2 * P0, 1).tolist()
    return _subgroups(before + after)


def _alarms_after_baseline(subgroups: list[Subgroup]) -> list[int]:
    chart = p_chart(subgroups, BASELINE_SUBGROUPS)
    return [e.side for e in chart.excursions if e.first >= BASELINE_SUBGROUPS]


def test_p_chart_limits_follow_each_subgroup_size() -> None:
    chart = p_chart([Subgroup("a", 100, 10), Subgroup("b", 100, 10), Subgroup("c", 25, 2)], 2)
    assert chart.center == pytest.approx(0.10)
    wide = 3 * math.sqrt(0.1 * 0.9 / 25)
    assert chart.points[2].ucl == pytest.approx(0.10 + wide)
    assert chart.points[2].lcl == 0.0  # 0.10 − 0.18 clamped
    assert chart.points[0].ucl == pytest.approx(0.10 + 3 * math.sqrt(0.09 / 100))
    assert chart.points[0].lcl == pytest.approx(0.10 - 3 * math.sqrt(0.09 / 100))


def test_u_chart_limits_and_rule_1() -> None:
    chart = u_chart([Subgroup("a", 100, 200), Subgroup("b", 100, 200), Subgroup("c", 50, 160)], 2)
    assert chart.center == pytest.approx(2.0)
    assert chart.points[2].ucl == pytest.approx(2.0 + 3 * math.sqrt(2.0 / 50))
    assert chart.points[2].rules == (Rule.BEYOND_3_SIGMA,)  # 3.2 > 2.6
    assert [(e.rule, e.side, e.first, e.open) for e in chart.excursions] == [
        (Rule.BEYOND_3_SIGMA, 1, 2, True)
    ]


@pytest.mark.parametrize(
    ("zs", "rule", "flagged"),
    [
        ([0.5, 3.2, 0.5], Rule.BEYOND_3_SIGMA, [1]),
        ([-3.1], Rule.BEYOND_3_SIGMA, [0]),
        ([2.5, 0.0, 2.1], Rule.TWO_OF_THREE_BEYOND_2_SIGMA, [2]),
        ([2.5, -2.5, 0.1], Rule.TWO_OF_THREE_BEYOND_2_SIGMA, []),
        ([1.5, 1.2, 0.3, 1.1, 1.9], Rule.FOUR_OF_FIVE_BEYOND_1_SIGMA, [4]),
        ([-0.2] * 7, Rule.EIGHT_ON_ONE_SIDE, []),
        ([-0.2] * 9, Rule.EIGHT_ON_ONE_SIDE, [7, 8]),
        ([0.2] * 4 + [0.0] + [0.2] * 4, Rule.EIGHT_ON_ONE_SIDE, []),  # on the line: no side
    ],
)
def test_western_electric_rules(zs: list[float], rule: Rule, flagged: list[int]) -> None:
    points = [ChartPoint(str(i), 1, 0, z, 0.0, -3.0, 3.0, z) for i, z in enumerate(zs)]
    assert [i for i, p in enumerate(apply_rules(points)) if rule in p.rules] == flagged


def test_one_alarm_per_excursion() -> None:
    """Three points in a row beyond 3σ and a fourth after a quiet point: two excursions."""
    subgroups = _subgroups([10] * 40 + [30, 32, 31, 10, 33])
    rule_1 = [e for e in p_chart(subgroups, 40).excursions if e.rule == Rule.BEYOND_3_SIGMA]
    assert [(e.first, e.last, e.open) for e in rule_1] == [(40, 42, False), (44, 44, True)]


def test_no_limits_without_variation() -> None:
    chart = p_chart(_subgroups([0, 0, 5]), 2)
    assert not chart.limits_defined
    assert chart.excursions == []
    assert chart.points[2].ucl is None


def test_bad_counts_are_refused() -> None:
    with pytest.raises(BadChartInput):
        p_chart([Subgroup("a", 5, 6)], 1)
    with pytest.raises(BadChartInput):
        u_chart([Subgroup("a", 5, 6)], 0)


def test_target_fires_within_50_boards_and_never_on_1000_in_control_boards() -> None:
    """The issue's target on fixed seeds (seed 1 for each run)."""
    assert _alarms_after_baseline(_in_control_run(1)) == []
    assert 1 in _alarms_after_baseline(_step_run(1))


def test_detection_and_false_alarm_rates_over_400_seeds() -> None:
    """The rates behind the target (measured 2026-12-07, numpy 2.4, seeds 0..399): an
    upward alarm within 50 boards of the step in 93 % of runs; at least one alarm over
    1,000 in-control boards in 25 % of runs with all four rules, 5.5 % with rule 1 alone
    (which alone makes the same 93 % of detections here: one subgroup after the step
    leaves rules 2–4 little to add). docs/spc.md discusses the choice (`SPC_RULES`)."""
    seeds = range(400)
    detected = sum(1 in _alarms_after_baseline(_step_run(s)) for s in seeds) / len(seeds)
    false = sum(bool(_alarms_after_baseline(_in_control_run(s))) for s in seeds) / len(seeds)
    only_1 = [Rule.BEYOND_3_SIGMA]
    false_1 = sum(
        any(
            e.first >= BASELINE_SUBGROUPS
            for e in p_chart(_in_control_run(s), BASELINE_SUBGROUPS, only_1).excursions
        )
        for s in seeds
    ) / len(seeds)
    assert detected >= 0.90
    assert false <= 0.27
    assert false_1 <= 0.07


def test_binomial_cusum_on_hand_checked_numbers() -> None:
    """Sᵢ = max(0, Sᵢ₋₁ + x·ln(p₁/p₀) + (n − x)·ln((1 − p₁)/(1 − p₀))), p₀ = 0.2, p₁ = 0.4:
    a subgroup of 10 with 2 defective adds 2·ln 2 + 8·ln(0.75) < 0 (stays 0); one with 6
    adds 6·ln 2 + 4·ln(0.75); an empty subgroup changes nothing."""
    up, down = math.log(2), math.log(0.6 / 0.8)
    sums = binomial_cusum(
        [Subgroup("a", 10, 2), Subgroup("b", 10, 6), Subgroup("c", 0, 0), Subgroup("d", 10, 5)],
        0.2,
    )
    assert sums is not None
    assert sums[0] == 0.0
    assert sums[1] == pytest.approx(6 * up + 4 * down)
    assert sums[2] == sums[1]
    assert sums[3] == pytest.approx(sums[1] + 5 * up + 5 * down)
    assert binomial_cusum([Subgroup("a", 10, 6)], 0.5) is None  # cannot double
    assert binomial_cusum([Subgroup("a", 10, 6)], 0.0) is None


def test_cusum_is_rule_5_of_the_p_chart_only_when_asked() -> None:
    """Rule 5 flags the points while S > h, as one upward excursion; the default rules
    (Western Electric 1-4) never include it, and the u-chart ignores it."""
    counts = [20] * 40 + [40, 40, 20, 10, 10]  # p̄ = 0.4 over the baseline of 40
    subgroups = _subgroups(counts)
    with_cusum = p_chart(subgroups, 40, [Rule.CUSUM], cusum_h=5.0)
    flagged = [i for i, p in enumerate(with_cusum.points) if Rule.CUSUM in p.rules]
    assert flagged[0] == 40
    assert [(e.rule, e.side, e.first) for e in with_cusum.excursions] == [(Rule.CUSUM, 1, 40)]
    assert all(Rule.CUSUM not in p.rules for p in p_chart(subgroups, 40).points)
    assert all(not p.rules for p in u_chart(subgroups, 40, [Rule.CUSUM]).points)


def test_cusum_meets_the_target_at_p0_0_4_over_200_seeds() -> None:
    """benchmarks/spc_detection.py's figures (docs/spc.md#the-target), p₀ = 0.40, subgroups
    of 50, h = 5: no false alarm over 1,000 in-control boards in 200 runs, an alarm within
    50 boards of the 2× step in 197 of them (seeds 0..199)."""
    rng_runs = []
    for seed in range(200):
        rng = np.random.default_rng(seed)
        boards = np.concatenate([rng.random(3000) < 0.4, rng.random(50) < 0.8])
        rng_runs.append(_subgroups(boards.reshape(-1, 50).sum(axis=1).tolist()))
    charts = [p_chart(run, 40, [Rule.CUSUM], 5.0) for run in rng_runs]
    false = sum(any(p.rules for p in c.points[40:60]) for c in charts)
    detected = sum(bool(c.points[60].rules) for c in charts)
    assert false == 0
    assert detected >= 196
