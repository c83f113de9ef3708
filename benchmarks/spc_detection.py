"""Detection and false alarms of the p-chart's alarms on simulated boards: the SPC target
of issue 13, "a p-chart alarm fires within 50 boards of a 2x step in the defective rate
(simulated), and never on 1,000 in-control boards".

Each run (numpy's generator, seeded 0, 1, 2, ...) draws boards defective with
probability p0: 2,000 baseline boards (Phase I: they set p̄ and the limits), then 1,000
in-control boards, then 50 boards at 2·p0. Boards are grouped in subgroups of --subgroup
consecutive boards (the step falls on a subgroup boundary). A run counts

- a **false alarm** when any point of the 1,000 in-control boards is flagged (any
  rule, above or below);
- a **detection** when a point flagged above the centre line ends within the 50 boards
  after the step.

The charts are the agent's own (`app/services/spc/charts.py`: `p_chart` with the
Western Electric rules and the binomial CUSUM, rule 5, at decision interval h). Pure
CPU, no database.

Usage::

    python benchmarks/spc_detection.py [--runs 200] [--p0 0.1 0.2 0.3 0.4]
        [--subgroup 50] [--h 4 5 6]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.services.spc.charts import ALL_RULES, Rule, Subgroup, p_chart

BASELINE_BOARDS = 2_000
IN_CONTROL_BOARDS = 1_000
WITHIN_BOARDS = 50


def run_once(
    seed: int, p0: float, size: int, rules: Collection[Rule], h: float
) -> tuple[bool, bool]:
    """(false alarm on the in-control boards, detection within 50 boards of the step)
    of one simulated run."""
    rng = np.random.default_rng(seed)
    boards = np.concatenate(
        [
            rng.random(BASELINE_BOARDS + IN_CONTROL_BOARDS) < p0,
            rng.random(WITHIN_BOARDS) < 2 * p0,
        ]
    )
    counts = boards.reshape(-1, size).sum(axis=1)
    subgroups = [Subgroup(str(i), size, int(c)) for i, c in enumerate(counts)]
    chart = p_chart(subgroups, BASELINE_BOARDS // size, rules, h)
    first, step = BASELINE_BOARDS // size, (BASELINE_BOARDS + IN_CONTROL_BOARDS) // size
    false_alarm = any(p.rules for p in chart.points[first:step])
    detected = any(
        p.rules and (Rule.CUSUM in p.rules or (p.z or 0) > 0)
        for p in chart.points[step : step + WITHIN_BOARDS // size]
    )
    return false_alarm, detected


def rates(
    runs: int, p0: float, size: int, rules: Collection[Rule], h: float
) -> tuple[float, float]:
    """(false-alarm rate, detection rate) over seeds 0..runs-1."""
    outcomes = [run_once(seed, p0, size, rules, h) for seed in range(runs)]
    return (
        sum(f for f, _ in outcomes) / runs,
        sum(d for _, d in outcomes) / runs,
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--p0", type=float, nargs="+", default=[0.1, 0.2, 0.3, 0.4])
    parser.add_argument("--subgroup", type=int, default=50, help="boards per subgroup")
    parser.add_argument("--h", type=float, nargs="+", default=[4.0, 5.0, 6.0])
    args = parser.parse_args(argv)
    if WITHIN_BOARDS % args.subgroup or BASELINE_BOARDS % args.subgroup:
        parser.error("--subgroup must divide 50 and 2000")
    methods: list[tuple[str, Collection[Rule], float]] = [
        ("WE rules 1-4 (default)", ALL_RULES, 0.0),
        ("WE rule 1 only", {Rule.BEYOND_3_SIGMA}, 0.0),
    ]
    methods += [(f"CUSUM (rule 5) h={h:g}", {Rule.CUSUM}, h) for h in args.h]
    methods += [
        (f"WE rule 1 + CUSUM h={h:g}", {Rule.BEYOND_3_SIGMA, Rule.CUSUM}, h) for h in args.h
    ]
    print(
        f"{args.runs} seeded runs, subgroups of {args.subgroup} boards, baseline"
        f" {BASELINE_BOARDS}, {IN_CONTROL_BOARDS} in-control boards, step to 2*p0"
    )
    print(f"{'p0':>5}  {'method':28}  {'false alarm':>11}  {'detected <=50':>13}  target")
    for p0 in args.p0:
        for name, rules, h in methods:
            fa, det = rates(args.runs, p0, args.subgroup, rules, h or 5.0)
            ok = "PASS" if fa == 0 and det >= 0.99 else "fail"
            print(f"{p0:5.2f}  {name:28}  {fa:11.1%}  {det:13.1%}  {ok}")


if __name__ == "__main__":
    main()
