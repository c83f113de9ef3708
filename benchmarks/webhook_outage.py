"""Signed webhooks (issue 14): a receiver down for 5 minutes while inspections, verdicts
and dispositions happen, then up: is every event delivered afterwards, in order, each
signature verifying with the `standardwebhooks` library?

    python benchmarks/webhook_outage.py [--images 100] [--verdicts 20] [--down-s 300]

The agent (`python run.py`) runs with the reference model service and a throw-away
database, with its default back-off (WEBHOOK_RETRY_INITIAL_S 5, WEBHOOK_RETRY_MAX_S 1800;
`--retry-initial-s` / `--retry-max-s` change them). A real receiver (Python's
`http.server`, `tests/services/webhooks/receiver.py`) on a loopback port is registered
for every event type but not listening (connections refused). During the outage: one
batch of `--images` DeepPCB images (an `inspection.completed` each and a
`batch.completed`), `--verdicts` verdicts (`region.verdict`) and a disposition per
verdict's board (`image.disposition`). Once `--down-s` seconds have passed since the
first event, the receiver listens again; every delivery must then arrive, each
signature verifying, in the order the events were written (the deliveries' id order).

Figures: events, delivered, lost, repeats, out of order, signatures failing; the wait
from the receiver coming back to the first and the last arrival; each event's lag (from
its change to its arrival).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import httpx2
import psycopg
from _harness import (
    DEFAULT_DEEPPCB,
    DEFAULT_SERVER_URL,
    REPO_ROOT,
    BenchmarkError,
    agent_stack,
    deeppcb_images,
    machine_line,
    print_table,
    verdict,
)
from standardwebhooks import Webhook, WebhookVerificationError

from tests.services.webhooks.receiver import Receiver

EVENTS = [
    "inspection.completed",
    "inspection.failed",
    "batch.completed",
    "region.verdict",
    "image.disposition",
    "spc.alarm",
]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--verdicts", type=int, default=20)
    parser.add_argument("--down-s", type=float, default=300.0, help="seconds the receiver is down")
    parser.add_argument("--retry-initial-s", type=float, default=None)
    parser.add_argument("--retry-max-s", type=float, default=None)
    parser.add_argument("--deeppcb", type=Path, default=DEFAULT_DEEPPCB)
    parser.add_argument("--server-url", default=DEFAULT_SERVER_URL)
    parser.add_argument("--time-limit", type=float, default=3600.0, help="seconds")
    return parser.parse_args()


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def main() -> int:
    args = parse_args()
    folder = args.deeppcb if (args.deeppcb / "images").is_dir() else REPO_ROOT / "samples/deeppcb"
    images = deeppcb_images(folder, args.images)
    print(
        f"Webhooks: receiver down {args.down_s:g} s; {args.images} images in a batch,"
        f" {args.verdicts} verdicts and dispositions; {machine_line()}"
    )
    env = {}
    if args.retry_initial_s is not None:
        env["WEBHOOK_RETRY_INITIAL_S"] = str(args.retry_initial_s)
    if args.retry_max_s is not None:
        env["WEBHOOK_RETRY_MAX_S"] = str(args.retry_max_s)
    receiver = Receiver()  # registered, not listening: the outage
    with (
        agent_stack(args.server_url, extra_env=env) as stack,
        httpx2.Client(base_url=stack.agent_url, timeout=600) as client,
    ):
        created = client.post("/api/webhooks", json={"url": receiver.url, "events": EVENTS})
        if created.status_code != 201:
            raise BenchmarkError(f"adding the endpoint answered {created.status_code}")
        endpoint = created.json()
        down_at = time.monotonic()

        batch = client.post(
            "/api/upload/batch",
            params={"wait": "true"},
            files=[("images", (name, data, "image/jpeg")) for name, data in images],
        )
        if batch.status_code != 200:
            raise BenchmarkError(f"the batch answered {batch.status_code}: {batch.text[:300]}")
        ids = [r["img_unique_id"] for r in batch.json()["results"] if r.get("img_unique_id")]
        done = 0
        who = {"X-Reviewer": "bench"}
        for img in ids:
            if done >= args.verdicts:
                break
            classes = client.get(f"/api/images/{img}/regions").json()["classes"]
            if not classes:
                continue
            region = classes[0]["regions"][0]["region_unique_id"]
            put = client.put(
                f"/api/regions/{region}/verdict", json={"verdict": "real"}, headers=who
            )
            disp = client.put(
                f"/api/images/{img}/disposition", json={"disposition": "repair"}, headers=who
            )
            if put.status_code != 200 or disp.status_code != 200:
                raise BenchmarkError(f"review answered {put.status_code}/{disp.status_code}")
            done += 1
        written_s = time.monotonic() - down_at
        wait = args.down_s - written_s
        print(f"events written in {written_s:.1f} s; receiver stays down {max(wait, 0):.0f} s more")
        if wait > 0:
            time.sleep(wait)
        with psycopg.connect(_libpq(stack.database_url)) as conn:
            # Every event fanned out by now (the dispatcher polls every 0.1 s).
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                left = conn.execute(
                    "SELECT count(*) FROM outbox WHERE sink = 'webhooks' AND published_at IS NULL"
                ).fetchone()
                if left and left[0] == 0:
                    break
                time.sleep(0.5)
            expected = conn.execute(
                "SELECT event_id::text, event_type, created_at FROM webhook_deliveries"
                " WHERE endpoint_id = %s ORDER BY id",
                (endpoint["id"],),
            ).fetchall()
            failed_attempts = conn.execute(
                "SELECT count(*) FROM webhook_attempts a JOIN webhook_deliveries d"
                " ON d.id = a.delivery_id WHERE d.endpoint_id = %s AND a.error IS NOT NULL",
                (endpoint["id"],),
            ).fetchone()
        up_at = time.time()
        receiver.up()
        limit = time.monotonic() + args.time_limit
        while len({r.headers.get("webhook-id") for r in receiver.taken()}) < len(expected):
            if time.monotonic() > limit:
                break
            time.sleep(0.2)
        time.sleep(2)  # repeats, if any, would arrive now
        receiver.down()
        with psycopg.connect(_libpq(stack.database_url)) as conn:
            statuses = dict(
                conn.execute(
                    "SELECT status, count(*) FROM webhook_deliveries WHERE endpoint_id = %s"
                    " GROUP BY status",
                    (endpoint["id"],),
                ).fetchall()
            )

    got = receiver.taken()
    secret = Webhook(endpoint["secret"])
    bad_signatures = 0
    for r in got:
        try:
            secret.verify(r.body, r.headers)
        except WebhookVerificationError:
            bad_signatures += 1
    arrived_ids = [r.headers["webhook-id"] for r in got]
    first_arrival = {}
    for r in got:
        first_arrival.setdefault(r.headers["webhook-id"], r.at)
    expected_ids = [e[0] for e in expected]
    lost = [i for i in expected_ids if i not in first_arrival]
    repeats = len(arrived_ids) - len(set(arrived_ids))
    in_order = [i for i in dict.fromkeys(arrived_ids) if i in set(expected_ids)] == [
        i for i in expected_ids if i in first_arrival
    ]
    lags = [
        first_arrival[i] - created.timestamp() for i, _, created in expected if i in first_arrival
    ]
    by_type: dict[str, int] = {}
    for _, kind, _ in expected:
        by_type[kind] = by_type.get(kind, 0) + 1
    arrivals = sorted(first_arrival.values())
    print(f"events by type: {by_type}; failed attempts during the outage: {failed_attempts[0]}")
    print(f"delivery states after: {statuses}")
    print_table(
        [
            "events",
            "delivered",
            "lost",
            "repeats",
            "in order",
            "bad signatures",
            "up → first (s)",
            "up → last (s)",
            "lag p50 (s)",
            "lag max (s)",
        ],
        [
            [
                len(expected),
                len(first_arrival),
                len(lost),
                repeats,
                "yes" if in_order else "NO",
                bad_signatures,
                round(arrivals[0] - up_at, 2) if arrivals else "-",
                round(arrivals[-1] - up_at, 2) if arrivals else "-",
                round(statistics.median(lags), 1) if lags else "-",
                round(max(lags), 1) if lags else "-",
            ]
        ],
    )
    passed = not lost and bad_signatures == 0 and in_order and len(expected) > 0
    print(
        f"every event delivered after a {args.down_s:g} s outage, each signature verifying:"
        f" {verdict(passed)}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
