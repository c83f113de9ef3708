"""A scripted reviewer with no think time: keystrokes and seconds per board in review mode.

Starts the reference model service and the agent (`run.py`, keys off, its own fresh
database), inspects --boards distinct DeepPCB boards in one batch (the six samples of
samples/deeppcb and turned/shifted copies: `tests.support.board_images`), then Chromium
(Playwright, /usr/bin/chromium, headless, 1366×768) opens the batch's first board in the
viewer's review mode and reviews every board with the keyboard only:

* one verdict key per defect (`F`/`R` alternating): the panel moves on by itself to the
  next defect without a verdict; the script waits for the verdict to show (a person waits
  for the screen too: a second key before the first answer would land on the same defect);
* `P` (pass) for the board, then `N` for the next board.

It counts every key pressed per board and measures, per board, the seconds from arriving
(the navigation that opened it) to pressing `N` on it (page load, verdicts and
disposition). Target (issue 15): ≤ 1 keystroke per defect + 2 per board, median ≤ 1 s per
board. Prints a Markdown table and PASS/MISS per target; it never fails.

Usage::

    python benchmarks/review_speed.py [--boards 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import httpx2
from _harness import DEFAULT_SERVER_URL, agent_stack, machine_line, print_table, verdict
from playwright.sync_api import Page, expect, sync_playwright

from tests.support import board_images

CHROMIUM = os.environ.get("AOI_CHROMIUM", "/usr/bin/chromium")
REVIEWED = ".review-chip:not([data-verdict=''])"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server-url", default=DEFAULT_SERVER_URL)
    parser.add_argument("--boards", type=int, default=20)
    return parser.parse_args()


def inspect_boards(agent_url: str, count: int) -> str:
    """Uploads `count` distinct boards as one batch and waits for the results; its id."""
    with tempfile.TemporaryDirectory() as folder:
        paths = board_images(Path(folder), count)
        files = [("images", (p.name, p.read_bytes())) for p in paths]
        with httpx2.Client(base_url=agent_url, timeout=600) as c:
            answer = c.post("/api/upload/batch", params={"wait": "true"}, files=files)
    answer.raise_for_status()
    return str(answer.json()["batch_id"])


class Keys:
    """The keyboard of the scripted reviewer: presses and counts."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.count = 0

    def press(self, key: str) -> None:
        self.count += 1
        self.page.keyboard.press(key)


def review_board(page: Page, keys: Keys) -> tuple[int, float]:
    """Reviews the board on screen: a verdict per defect, then pass. Returns its number
    of defects and when (perf_counter) its review panel was ready for keys."""
    page.wait_for_selector(".review-panel .review-current")
    expect(page.locator(".review-panel .board-progress")).not_to_be_empty()
    ready = time.perf_counter()
    defects = page.locator(".review-chip").count()
    for i in range(defects):
        keys.press("f" if i % 2 else "r")
        expect(page.locator(REVIEWED)).to_have_count(i + 1)
    keys.press("p")
    page.wait_for_selector("[data-disposition='pass'][aria-pressed='true']")
    return defects, ready


Row = tuple[str, int, int, float, float]


def run(agent_url: str, batch_id: str, boards: int) -> list[Row]:
    """Per board: (id, defects, keys pressed, seconds from arrival to its `N`, of them
    seconds until its review panel was ready: the page load)."""
    with httpx2.Client(base_url=agent_url, timeout=60) as c:
        first = c.get("/api/review/next", params={"batch_id": batch_id}).json()
    rows: list[Row] = []
    with sync_playwright() as driver:
        browser = driver.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page(viewport={"width": 1366, "height": 768})
        page.goto(agent_url + "/")
        page.evaluate("localStorage.setItem('aoi.reviewer', 'scripted-reviewer')")
        arrived = time.perf_counter()
        page.goto(first["viewer_url"])
        for _ in range(boards):
            keys = Keys(page)
            board = page.url.split("/results/")[1].split("?")[0]
            defects, ready = review_board(page, keys)
            keys.press("n")
            left = time.perf_counter()
            rows.append((board, defects, keys.count, left - arrived, ready - arrived))
            if len(rows) < boards:
                page.wait_for_url(lambda url, board=board: f"/results/{board}?" not in url)
            arrived = left
        expect(page.locator(".review-status")).to_contain_text("Nothing left")
        browser.close()
    return rows


def main() -> None:
    args = parse_args()
    print(machine_line())
    with agent_stack(args.server_url, extra_env={"AUTH_MODE": "off"}) as stack:
        batch_id = inspect_boards(stack.agent_url, args.boards)
        rows = run(stack.agent_url, batch_id, args.boards)
        with httpx2.Client(base_url=stack.agent_url, timeout=60) as c:
            figures = c.get("/api/review/figures").json()
    print_table(
        ["board", "defects", "keys", "keys allowed", "seconds", "of them page load"],
        [(b, d, k, d + 2, s, load) for b, d, k, s, load in rows],
    )
    seconds = [r[3] for r in rows]
    extra = sum(k - (d + 2) for _, d, k, _, _ in rows)
    median = statistics.median(seconds)
    defects = sum(r[1] for r in rows)
    print(
        f"\nboards {len(rows)}, defects {defects}, keys"
        f" {sum(r[2] for r in rows)}; keys over 1/defect + 2/board: {extra}"
        f" — {verdict(extra <= 0)}"
    )
    per_defect_ms = sum(r[3] - r[4] for r in rows) / max(defects, 1) * 1000
    print(
        f"page load per board: median {statistics.median(r[4] for r in rows):.2f} s;"
        f" key to verdict shown: mean {per_defect_ms:.0f} ms per defect (disposition included)"
    )
    for r in figures["reviewers"]:
        print(
            f"agent's reviewer figures ({r['reviewer']}): {r['verdicts']} verdicts, seconds per"
            f" verdict median {r['seconds_median']}, p90 {r['seconds_p90']},"
            f" {r['verdicts_per_hour']} verdicts/h"
        )
    print(
        f"seconds per board: median {median:.2f}, max {max(seconds):.2f} (target median ≤ 1 s)"
        f" — {verdict(median <= 1.0)}"
    )


if __name__ == "__main__":
    main()
