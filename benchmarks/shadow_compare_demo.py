"""Demonstration of the model comparison on DeepPCB: the classical engine as the shadow of
the golden-board (template) engine, boards reviewed, and the compare page's per-class
ranking of the two engines set beside the truth (docs/models.md, "Demonstration on
DeepPCB").

Starts, on a fresh database: the primary reference model service (golden-board engine,
the DeepPCB templates as its golden boards), a second reference service as the shadow
(classical engine: another model version) and the agent (`python run.py`,
AUTH_MODE=off) with SHADOW_SERVICE_URLS=<shadow> and SHADOW_SAMPLE_RATE=1. Uploads the
DeepPCB held-out test boards one after the other (`POST /api/upload`; the six repo
samples under samples/deeppcb when ../shared is absent) and waits until every shadow
answer is stored (`GET /api/models`).

**The reviewer is a script whose judgement is the dataset's annotation**, not a person:
on each reviewed board it judges every primary region (`PUT /api/regions/{id}/verdict`)
and every region only the shadow has (`PUT /api/models/answer-regions/{id}/verdict`,
the viewer's compare panel) `real` when the region's box, grown by --margin pixels
(default 8) on each side, is matched to a ground-truth box of the same class, else
`false_call`. Matching is that of benchmarks/deeppcb_accuracy.py: IoU > 0.33, greedy
one-to-one, best IoU first, per image and class, among the calls of that one engine.
--review-share reviews only that share of the boards (spread evenly in name order).

--swap makes the classical engine the primary and the template engine its shadow (the
verdicts then fall on the other engine's regions first).

Then prints `GET /api/models/compare?a=<primary>&b=<shadow>` per class (matched, A only,
B only, overlapping; per engine confirmed real, false calls, missed real, estimated
precision, relative recall), the TRUE precision/recall/F of each engine computed from
its own stored regions and the annotations of every uploaded board, and per class which
engine is better by the page (F of estimated precision and relative recall) and by the
truth (F of precision and recall): "tie" when the two differ by less than --tie (default
0.01). With --screenshot PATH also saves the /models page with that comparison (headless
Chromium through Playwright, as the browser tests do).

Usage::

    python benchmarks/shadow_compare_demo.py [--boards 150] [--review-share 1.0] [--swap] \
        [--screenshot /work/screenshots/models-demo.png]
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import psycopg
from _harness import (
    DEFAULT_DEEPPCB,
    DEFAULT_SERVER_URL,
    REPO_ROOT,
    BenchmarkError,
    Child,
    agent_process,
    machine_line,
    print_table,
    temporary_database,
    workspace,
)
from deeppcb_accuracy import box_iou
from deeppcb_accuracy import read_annotations as read_typed_annotations

from app.services.model_service.reference import start_reference_service
from segformer_service.config import DEFAULT_CLASS_NAMES

SAMPLES = REPO_ROOT / "samples" / "deeppcb"
IOU_THRESHOLD = 0.33
REVIEWER = "deeppcb-annotations"
CHROMIUM = "/usr/bin/chromium"
CLASS_BY_TYPE = dict(enumerate(DEFAULT_CLASS_NAMES, start=1))
"""DeepPCB type id (1..6) -> the reference service's class name."""

Box = tuple[float, float, float, float]
"""x1, y1, x2, y2 in pixels (DeepPCB convention)."""


@dataclass
class Board:
    """One DeepPCB test board: its file name, JPEG bytes and ground-truth boxes by class."""

    name: str
    content: bytes
    truth: dict[str, list[Box]]
    img_unique_id: str = ""
    reviewed: bool = False


@dataclass
class Truth:
    """One engine's calls of one class against the annotations (DeepPCB protocol)."""

    tp: int = 0
    calls: int = 0
    truths: int = 0
    missed: int = 0
    """Ground-truth defects it missed that the other engine found."""

    @property
    def precision(self) -> float | None:
        return self.tp / self.calls if self.calls else None

    @property
    def recall(self) -> float | None:
        return self.tp / self.truths if self.truths else None


@dataclass
class Tally:
    """Verdicts the scripted reviewer sent."""

    primary: dict[str, int] = field(default_factory=lambda: {"real": 0, "false_call": 0})
    shadow_only: dict[str, int] = field(default_factory=lambda: {"real": 0, "false_call": 0})


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--boards", type=int, default=150, help="boards uploaded (default 150)")
    parser.add_argument(
        "--review-share",
        type=float,
        default=1.0,
        help="share of the boards the scripted reviewer judges (0..1, default 1)",
    )
    parser.add_argument(
        "--swap",
        action="store_true",
        help="the classical engine as the primary and the template engine as its shadow",
    )
    parser.add_argument("--margin", type=int, default=8, help="box margin, pixels (default 8)")
    parser.add_argument("--tie", type=float, default=0.01, help="F difference called a tie")
    parser.add_argument("--deeppcb", type=Path, default=DEFAULT_DEEPPCB)
    parser.add_argument("--server-url", default=DEFAULT_SERVER_URL)
    parser.add_argument("--timeout", type=float, default=900.0, help="shadow wait, seconds")
    parser.add_argument(
        "--screenshot", type=Path, default=None, help="save the /models page here (PNG)"
    )
    args = parser.parse_args()
    if not 0.0 <= args.review_share <= 1.0:
        parser.error("--review-share must be within 0..1")
    return args


# -- ground truth -----------------------------------------------------------------------


def read_annotations(path: Path) -> dict[str, list[Box]]:
    """Ground-truth boxes by class name from one DeepPCB ``x1 y1 x2 y2 type`` file."""
    return {CLASS_BY_TYPE[kind]: boxes for kind, boxes in read_typed_annotations(path).items()}


def load_boards(folder: Path, count: int, share: float) -> tuple[Path, list[Board]]:
    """The first `count` annotated test boards of `folder` (else of samples/deeppcb), in
    name order; `share` of them, spread evenly, marked to be reviewed.

    Raises:
        BenchmarkError: neither folder has annotated images.
    """
    if not (folder / "images").is_dir():
        folder = SAMPLES
    paths = [
        p
        for p in sorted((folder / "images").glob("*.jpg"))
        if (folder / "annotations" / f"{p.stem}.txt").is_file()
    ][:count]
    if not paths:
        raise BenchmarkError(f"no annotated DeepPCB images under {folder}")
    boards = [
        Board(p.name, p.read_bytes(), read_annotations(folder / "annotations" / f"{p.stem}.txt"))
        for p in paths
    ]
    for i, board in enumerate(boards):
        board.reviewed = math.floor((i + 1) * share) > math.floor(i * share)
    return folder, boards


def matched_calls(calls: Sequence[Box], truths: Sequence[Box]) -> dict[int, int]:
    """Call index -> ground-truth index of the pairs made one-to-one at IoU > 0.33, best
    IoU first (benchmarks/deeppcb_accuracy.py's `greedy_matches`)."""
    pairs = sorted(
        ((box_iou(c, t), i, j) for i, c in enumerate(calls) for j, t in enumerate(truths)),
        reverse=True,
    )
    pairs_made: dict[int, int] = {}
    used_t: set[int] = set()
    for iou, i, j in pairs:
        if iou <= IOU_THRESHOLD:
            break
        if i not in pairs_made and j not in used_t:
            pairs_made[i] = j
            used_t.add(j)
    return pairs_made


def grown(x: float, y: float, w: float, h: float, margin: int) -> Box:
    """An ``x, y, width, height`` box (pixels) as ``x1, y1, x2, y2`` grown by `margin`."""
    return (x - margin, y - margin, x + w + margin, y + h + margin)


# -- processes --------------------------------------------------------------------------


@contextlib.contextmanager
def reference(log: Path, env: dict[str, str]) -> Iterator[Child]:
    """A reference model service with `env` (engine settings); stopped afterwards."""
    started = start_reference_service(log, extra_env=env)
    try:
        yield Child(started.url, started.process.pid)
    finally:
        started.stop()


def wait_for_shadows(client: httpx2.Client, expected: int, timeout_s: float) -> tuple[int, int]:
    """Poll `GET /api/models` until `expected` shadow answers are stored (succeeded or
    failed); returns (succeeded, failed).

    Raises:
        BenchmarkError: not all stored within `timeout_s` seconds.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        body = client.get("/api/models").raise_for_status().json()
        done = sum(m["shadow_answers"] for m in body["models"])
        failed = sum(s["failed_answers"] for s in body["failed_services"])
        if done + failed >= expected:
            return done, failed
        if time.monotonic() > deadline:
            raise BenchmarkError(f"{done + failed} of {expected} shadow answers in {timeout_s} s")
        time.sleep(0.5)


# -- the scripted reviewer ---------------------------------------------------------------


def primary_calls(
    client: httpx2.Client, board: Board, margin: int
) -> dict[str, list[tuple[int, Box]]]:
    """The primary answer's regions of `board` by class: (region_unique_id, grown box)."""
    body = client.get(f"/api/images/{board.img_unique_id}/regions").raise_for_status().json()
    out: dict[str, list[tuple[int, Box]]] = {}
    for cls in body["classes"]:
        for r in cls["regions"]:
            bb = r["bounding_box"]
            out.setdefault(cls["class_name"], []).append(
                (r["region_unique_id"], grown(bb["x"], bb["y"], bb["width"], bb["height"], margin))
            )
    return out


def shadow_calls(
    client: httpx2.Client, answer_id: int, margin: int
) -> dict[str, list[tuple[int, Box, bool]]]:
    """A stored shadow answer's regions by class: (answer_region_id, grown box, matched to
    a primary region)."""
    body = client.get(f"/api/models/answers/{answer_id}").raise_for_status().json()
    out: dict[str, list[tuple[int, Box, bool]]] = {}
    for r in body["regions"]:
        x, y, w, h = r["bbox"]
        out.setdefault(r["class_name"], []).append(
            (
                r["answer_region_id"],
                grown(x, y, w, h, margin),
                r["matched_region_unique_id"] is not None,
            )
        )
    return out


def judge(client: httpx2.Client, path: str, real: bool, tally: dict[str, int]) -> None:
    """Send one verdict as the scripted reviewer."""
    verdict = "real" if real else "false_call"
    client.put(
        path,
        json={"verdict": verdict, "comment": "scripted: DeepPCB annotation"},
        headers={"X-Reviewer": REVIEWER},
    ).raise_for_status()
    tally[verdict] += 1


def score_and_review(
    client: httpx2.Client,
    boards: list[Board],
    answer_of: dict[str, int],
    margin: int,
) -> tuple[dict[str, Truth], dict[str, Truth], Tally]:
    """Per class, the true counts of the primary (A) and the shadow (B) over every board,
    while judging the reviewed boards' regions as the annotations say."""
    truth_a = {name: Truth() for name in DEFAULT_CLASS_NAMES}  # A: the primary
    truth_b = {name: Truth() for name in DEFAULT_CLASS_NAMES}  # B: the shadow
    tally = Tally()
    for board in boards:
        primary = primary_calls(client, board, margin)
        answer_id = answer_of.get(board.img_unique_id)
        shadow = shadow_calls(client, answer_id, margin) if answer_id else {}
        for name in DEFAULT_CLASS_NAMES:
            truths = board.truth.get(name, [])
            p_calls = primary.get(name, [])
            s_calls = shadow.get(name, [])
            p_ok = matched_calls([b for _, b in p_calls], truths)
            s_ok = matched_calls([b for _, b, _ in s_calls], truths)
            for counts, n, ok in ((truth_a, len(p_calls), p_ok), (truth_b, len(s_calls), s_ok)):
                counts[name].calls += n
                counts[name].truths += len(truths)
                counts[name].tp += len(ok)
            truth_a[name].missed += len(set(s_ok.values()) - set(p_ok.values()))
            truth_b[name].missed += len(set(p_ok.values()) - set(s_ok.values()))
            if not board.reviewed:
                continue
            for i, (region_id, _) in enumerate(p_calls):
                judge(client, f"/api/regions/{region_id}/verdict", i in p_ok, tally.primary)
            for i, (answer_region_id, _, matched) in enumerate(s_calls):
                if not matched:  # a matched one inherits its primary region's verdict
                    judge(
                        client,
                        f"/api/models/answer-regions/{answer_region_id}/verdict",
                        i in s_ok,
                        tally.shadow_only,
                    )
    return truth_a, truth_b, tally


# -- the report ---------------------------------------------------------------------------


def f_of(p: float | None, r: float | None) -> float | None:
    """Harmonic mean of two shares; None when either is unknown."""
    if p is None or r is None:
        return None
    return 2 * p * r / (p + r) if p + r else 0.0


def better(a: float | None, b: float | None, tie: float, names: tuple[str, str]) -> str:
    """`names[0]` (a is higher), `names[1]` or `tie` (within `tie`); `n/a` when either is
    unknown."""
    if a is None or b is None:
        return "n/a"
    if abs(a - b) < tie:
        return "tie"
    return names[0] if a > b else names[1]


def fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def report(
    comparison: dict[str, Any],
    truth_a: dict[str, Truth],
    truth_b: dict[str, Truth],
    tie: float,
    engines: tuple[str, str],
) -> None:
    """Print the compare page's table, the truth, and the per-class verdicts."""
    rows = {c["class_name"]: c for c in comparison["classes"]}
    names = [n for n in DEFAULT_CLASS_NAMES if n in rows] + [
        n for n in rows if n not in DEFAULT_CLASS_NAMES
    ]
    print(
        f"\nThe compare page (GET /api/models/compare; A = {engines[0]} (primary),"
        f" B = {engines[1]} (shadow)):"
        f" {comparison['images']} images answered by both, min IoU {comparison['min_iou']},"
        f" {comparison['disagreeing_images']} disagreeing images"
    )
    page_rows = []
    for c in [*(rows[n] for n in names), comparison["totals"]]:
        a, b = c["a"], c["b"]
        page_rows.append(
            [
                c["class_name"],
                c["matched"],
                c["a_only"],
                c["b_only"],
                f"{c['a_overlapping']}/{c['b_overlapping']}",
                f"{a['confirmed_real']}/{b['confirmed_real']}",
                f"{a['false_calls']}/{b['false_calls']}",
                f"{a['missed_real']}/{b['missed_real']}",
                f"{fmt(a['precision'])}/{fmt(b['precision'])}",
                f"{fmt(a['relative_recall'])}/{fmt(b['relative_recall'])}",
            ]
        )
    print_table(
        [
            "class",
            "matched",
            "A only",
            "B only",
            "overlapping A/B",
            "real A/B",
            "false calls A/B",
            "missed-but-found-by-other A/B",
            "est. precision A/B",
            "relative recall A/B",
        ],
        page_rows,
    )
    print("\nThe truth (each engine's own stored regions against the DeepPCB annotations):")
    truth_rows = []
    all_t, all_c = Truth(), Truth()
    for name in names:
        t, c = truth_a.get(name, Truth()), truth_b.get(name, Truth())
        for total, part in ((all_t, t), (all_c, c)):
            total.tp += part.tp
            total.calls += part.calls
            total.truths += part.truths
            total.missed += part.missed
        truth_rows.append(_truth_row(name, t, c))
    truth_rows.append(_truth_row("all", all_t, all_c))
    print_table(
        [
            "class",
            "GT boxes",
            "calls A/B",
            "TP A/B",
            "precision A/B",
            "recall A/B",
            "F A/B",
            "missed-but-found-by-other A/B",
        ],
        truth_rows,
    )
    print(f"\nWhich engine is better per class (F; tie within {tie:g}; A = {engines[0]}):")
    verdict_rows = []
    agree = agree_p = agree_r = 0
    for name in names:
        a, b = rows[name]["a"], rows[name]["b"]
        t, c = truth_a.get(name, Truth()), truth_b.get(name, Truth())
        page_f = (
            f_of(a["precision"], a["relative_recall"]),
            f_of(b["precision"], b["relative_recall"]),
        )
        true_f = (f_of(t.precision, t.recall), f_of(c.precision, c.recall))
        by_page, by_truth = better(*page_f, tie, engines), better(*true_f, tie, engines)
        agree += by_page == by_truth
        agree_p += better(a["precision"], b["precision"], tie, engines) == better(
            t.precision, c.precision, tie, engines
        )
        agree_r += better(a["relative_recall"], b["relative_recall"], tie, engines) == better(
            t.recall, c.recall, tie, engines
        )
        verdict_rows.append(
            [
                name,
                f"{fmt(page_f[0])}/{fmt(page_f[1])}",
                by_page,
                f"{fmt(true_f[0])}/{fmt(true_f[1])}",
                by_truth,
                "yes" if by_page == by_truth else "NO",
            ]
        )
    print_table(
        ["class", "page F A/B", "page says", "true F A/B", "truth says", "agree"], verdict_rows
    )
    for row in verdict_rows:
        print(f"{row[0]}: compare page says {row[2]} better, the truth says {row[4]} better")
    n = len(names)
    print(
        f"agreement: {agree}/{n} classes on the better engine (F); on precision alone"
        f" {agree_p}/{n}, on recall alone {agree_r}/{n}"
    )


def _truth_row(name: str, t: Truth, c: Truth) -> list[Any]:
    return [
        name,
        t.truths,
        f"{t.calls}/{c.calls}",
        f"{t.tp}/{c.tp}",
        f"{fmt(t.precision)}/{fmt(c.precision)}",
        f"{fmt(t.recall)}/{fmt(c.recall)}",
        f"{fmt(f_of(t.precision, t.recall))}/{fmt(f_of(c.precision, c.recall))}",
        f"{t.missed}/{c.missed}",
    ]


def screenshot(agent_url: str, a: str, b: str, path: Path) -> None:
    """The /models page comparing `a` and `b`, full page, to `path` (headless Chromium)."""
    from urllib.parse import urlencode

    from playwright.sync_api import sync_playwright

    path.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as driver:
        browser = driver.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 768})
            page.goto(f"{agent_url}/models?{urlencode({'a': a, 'b': b})}")
            page.locator("#compare-table tbody tr").first.wait_for(timeout=30_000)
            page.screenshot(path=str(path), full_page=True)
        finally:
            browser.close()


def print_logs(workdir: Path, lines: int = 20) -> bool:
    """The last lines of the services' and the agent's logs (after a failure), to stderr;
    False (the failure goes on)."""
    for log in sorted(workdir.rglob("*.log")):
        text = log.read_text(errors="replace").splitlines()[-lines:]
        print(f"--- last lines of {log.name}:", *text, sep="\n", file=sys.stderr)
    return False


# -- main --------------------------------------------------------------------------------


def main() -> int:
    args = parse_args()
    folder, boards = load_boards(args.deeppcb, args.boards, args.review_share)
    templates = folder / "templates"
    engines = ("classical", "template") if args.swap else ("template", "classical")
    reviewed = sum(b.reviewed for b in boards)
    print(
        f"shadow compare demo: {engines[1]} engine as the shadow of {engines[0]};"
        f" {len(boards)} boards from {folder}, {reviewed} reviewed by a"
        f" scripted reviewer whose judgement is the DeepPCB annotation (box margin"
        f" {args.margin} px, IoU > {IOU_THRESHOLD}, same class); {machine_line()}"
    )
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        workdir = stack.enter_context(workspace())
        stack.push(lambda kind, _exc, _tb: print_logs(workdir) if kind else None)
        db = stack.enter_context(temporary_database(args.server_url))
        env = {
            "template": {
                "REFERENCE_SERVICE_ENGINE": "template",
                "REFERENCE_SERVICE_TEMPLATES_DIR": str(templates),
            },
            "classical": {"REFERENCE_SERVICE_ENGINE": "classical"},
        }
        primary = stack.enter_context(reference(workdir / "primary.log", env[engines[0]]))
        shadow = stack.enter_context(reference(workdir / "shadow.log", env[engines[1]]))
        agent = stack.enter_context(
            agent_process(
                db,
                primary.url,
                workdir / "data",
                {
                    "AUTH_MODE": "off",
                    "SHADOW_SERVICE_URLS": shadow.url,
                    "SHADOW_SAMPLE_RATE": "1",
                    "SHADOW_CONCURRENCY": "2",
                },
            )
        )
        client = stack.enter_context(httpx2.Client(base_url=agent.url, timeout=60))
        for board in boards:
            response = client.post("/api/upload", files={"image": (board.name, board.content)})
            if response.status_code != 200:
                raise BenchmarkError(
                    f"upload of {board.name}: {response.status_code} {response.text}"
                )
            board.img_unique_id = response.json()["img_unique_id"]
        uploaded = time.perf_counter()
        done, failed = wait_for_shadows(client, len(boards), args.timeout)
        print(
            f"uploaded in {uploaded - started:.0f} s; shadow answers stored"
            f" {time.perf_counter() - uploaded:.0f} s later: {done} succeeded, {failed} failed"
        )
        # The agent has no route listing an image's stored answers (the compare page lists
        # only disagreeing images): the ids are read from the benchmark's own database.
        with psycopg.connect(db) as conn:
            answer_of = {
                str(img): int(aid)
                for aid, img in conn.execute(
                    "SELECT answer_id, img_unique_id FROM model_answers WHERE status = 'succeeded'"
                )
            }
        truth_a, truth_b, tally = score_and_review(client, boards, answer_of, args.margin)
        print(
            f"scripted reviewer: primary regions {tally.primary},"
            f" regions only the shadow has {tally.shadow_only}"
        )
        models = client.get("/api/models").raise_for_status().json()["models"]
        print_table(
            ["model_name", "model_version", "primary", "shadow"],
            [
                [m["model_name"], m["model_version"], m["primary_answers"], m["shadow_answers"]]
                for m in models
            ],
        )
        a = next(m["model_version"] for m in models if m["primary_answers"])
        b = next(m["model_version"] for m in models if m["shadow_answers"])
        timer = time.perf_counter()
        comparison = (
            client.get("/api/models/compare", params={"a": a, "b": b, "limit": 0})
            .raise_for_status()
            .json()
        )
        compare_ms = (time.perf_counter() - timer) * 1000
        report(comparison, truth_a, truth_b, args.tie, engines)
        print(f"GET /api/models/compare answered in {compare_ms:.0f} ms")
        if args.screenshot:
            screenshot(agent.url, a, b, args.screenshot)
            print(f"screenshot of /models: {args.screenshot}")
    print(f"total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
