"""What API keys cost per request: the same requests to an agent with AUTH_MODE=off and to
one with AUTH_MODE=required (a key header, a web-session cookie, a signed link), plus the
scrypt hash and verification of one key (paid once per key and process).

Starts the reference model service and two agents (`python run.py`) on one fresh
database, inspects one DeepPCB image (or a synthetic one), then times, client side and
sequentially over one keep-alive connection, --requests requests (after --warmup untimed
ones) of `GET /api/images?limit=20` and of the analysis JSON download, and prints
p50/p95/max in milliseconds. No target: the figure is for docs/security.md.

Usage::

    python benchmarks/auth_overhead.py [--requests 300]
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import time
from collections.abc import Callable

import httpx2
from _harness import (
    DEFAULT_SERVER_URL,
    REPO_ROOT,
    agent_process,
    agent_stack,
    machine_line,
    print_table,
    summarize,
)
from PIL import Image

from app.services.security.keys import hash_key, new_key, verify_key

CLI = "from app.cli import main; main()"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--server-url", default=DEFAULT_SERVER_URL)
    return parser.parse_args()


def time_requests(send: Callable[[], httpx2.Response], count: int) -> list[float]:
    """Wall-clock seconds of `count` requests; each must answer 200."""
    seconds = []
    for _ in range(count):
        started = time.perf_counter()
        response = send()
        seconds.append(time.perf_counter() - started)
        if response.status_code != 200:
            raise RuntimeError(f"{response.status_code}: {response.text[:200]}")
    return seconds


def create_key(database_url: str) -> str:
    """`aoi-agent keys create` against the benchmark database; returns the key."""
    result = subprocess.run(
        [sys.executable, "-c", CLI, "keys", "create", "--name", "bench", "--scope", "admin"],
        cwd=REPO_ROOT,
        env={**os.environ, "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip().splitlines()[-1]


def main() -> int:
    args = parse_args()
    print(f"auth overhead: {args.requests} requests each, {machine_line()}")
    key, _ = new_key()
    started = time.perf_counter()
    stored = hash_key(key)
    hash_ms = (time.perf_counter() - started) * 1000
    started = time.perf_counter()
    assert verify_key(key, stored)
    verify_ms = (time.perf_counter() - started) * 1000
    print(f"scrypt (N=2^14, r=8, p=1): hash {hash_ms:.1f} ms, verify {verify_ms:.1f} ms")

    png = io.BytesIO()
    Image.new("L", (640, 640), 200).save(png, "PNG")
    rows = []
    with (
        agent_stack(args.server_url, extra_env={"AUTH_MODE": "required"}) as secured,
        agent_process(
            secured.database_url,
            secured.model_service_url,
            secured.workdir / "data",
            {"AUTH_MODE": "off"},
        ) as open_agent,
        httpx2.Client(timeout=60.0) as client,
    ):
        admin = create_key(secured.database_url)
        upload = client.post(
            f"{secured.agent_url}/api/upload",
            files={"image": ("board.png", png.getvalue())},
            headers={"X-API-Key": admin},
        ).json()
        img_id = upload["img_unique_id"]
        signin = client.post(
            f"{secured.agent_url}/signin",
            data={"key": admin},
            headers={"Origin": secured.agent_url},
        )
        cookie = {"aoi_session": signin.cookies["aoi_session"]}
        client.cookies.clear()
        cases: list[tuple[str, Callable[[], httpx2.Response]]] = [
            (
                "GET /api/images, auth off",
                lambda: client.get(f"{open_agent.url}/api/images?limit=20"),
            ),
            (
                "GET /api/images, key header",
                lambda: client.get(
                    f"{secured.agent_url}/api/images?limit=20", headers={"X-API-Key": admin}
                ),
            ),
            (
                "GET /api/images, session cookie",
                lambda: client.get(f"{secured.agent_url}/api/images?limit=20", cookies=cookie),
            ),
            (
                "GET /api/download/json, auth off",
                lambda: client.get(f"{open_agent.url}/api/download/json/{img_id}"),
            ),
            ("GET signed json_url, no key", lambda: client.get(upload["json_url"])),
        ]
        for label, send in cases:
            client.cookies.clear()
            time_requests(send, args.warmup)
            s = summarize(time_requests(send, args.requests))
            rows.append((label, s.n, s.median_ms, s.p95_ms, s.max_ms))
    print()
    print_table(["request", "n", "p50 ms", "p95 ms", "max ms"], rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
