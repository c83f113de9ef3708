"""An object-store outage during a batch (issue 17): does every image end stored, with no
manual retry, and how long after the store is back does the batch finish?

    python benchmarks/storage_outage.py [--images 60] [--outage 30] [--deeppcb DIR]

The agent (`python run.py`) stores on moto's S3 server (an emulator of the S3 API, not a
real store) on a loopback port, with the reference model service and a throw-away
database. A batch of `--images` DeepPCB images is uploaded; once the first images have
succeeded the store is frozen (SIGSTOP: requests hang until S3_TIMEOUT_S, as with a store
that stopped answering; its objects survive, as a real store's do, which killing moto
would lose) for `--outage` seconds, then thawed (SIGCONT). The batch is polled once a
second: how many images wait for storage, and when it is done. POSIX only.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx2
from _harness import (
    DEFAULT_DEEPPCB,
    DEFAULT_SERVER_URL,
    BenchmarkError,
    agent_stack,
    deeppcb_images,
    free_loopback_port,
    machine_line,
    print_table,
    verdict,
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--outage", type=float, default=30.0, help="seconds the store is down")
    parser.add_argument("--s3-timeout", type=float, default=5.0, help="S3_TIMEOUT_S")
    parser.add_argument("--deeppcb", type=Path, default=DEFAULT_DEEPPCB)
    parser.add_argument("--server-url", default=DEFAULT_SERVER_URL)
    parser.add_argument("--time-limit", type=float, default=900.0, help="seconds")
    return parser.parse_args()


def start_moto(log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """moto's S3 server on a free loopback port; returns (process, endpoint URL)."""
    port = free_loopback_port()
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx2.get(url + "/", timeout=1).status_code < 500:
                return process, url
        except httpx2.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise BenchmarkError(f"moto did not start on {url}")


def create_bucket(url: str) -> str:
    """A new bucket on the emulator; returns its name."""
    import boto3

    name = f"aoi-bench-{secrets.token_hex(4)}"
    boto3.client(
        "s3",
        endpoint_url=url,
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        region_name="us-east-1",
    ).create_bucket(Bucket=name)
    return name


def main() -> int:
    if sys.platform == "win32":
        raise BenchmarkError("freezing the store needs SIGSTOP (POSIX)")
    args = parse_args()
    images = deeppcb_images(args.deeppcb, args.images)
    print(
        f"storage outage: {args.images} images, store down {args.outage:g} s,"
        f" S3_TIMEOUT_S={args.s3_timeout:g}, {machine_line()}"
    )
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"moto-bench-{os.getpid()}.log"
    moto, endpoint = start_moto(log)
    try:
        bucket = create_bucket(endpoint)
        env = {
            "STORAGE_URL": f"s3://{bucket}/bench",
            "S3_ENDPOINT_URL": endpoint,
            "S3_TIMEOUT_S": f"{args.s3_timeout:g}",
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_REGION": "us-east-1",
            "SECRET_KEY": secrets.token_hex(32),
        }
        with (
            agent_stack(args.server_url, extra_env=env) as stack,
            httpx2.Client(base_url=stack.agent_url, timeout=300) as client,
        ):
            files = [("images", (name, data, "image/jpeg")) for name, data in images]
            started = time.monotonic()
            answer = client.post("/api/upload/batch", files=files)
            if answer.status_code != 202:
                raise BenchmarkError(f"batch answered {answer.status_code}: {answer.text[:300]}")
            url = f"/api/batches/{answer.json()['batch_id']}"
            while client.get(url).json()["succeeded"] < 3:
                time.sleep(0.2)
            os.kill(moto.pid, signal.SIGSTOP)
            stopped = time.monotonic()
            print(f"store stopped {stopped - started:.1f} s after the upload")
            most_waiting, message, resumed, status = 0, None, None, {}
            while True:
                if time.monotonic() - started > args.time_limit:
                    raise BenchmarkError("the batch did not finish within --time-limit")
                if resumed is None and time.monotonic() - stopped >= args.outage:
                    os.kill(moto.pid, signal.SIGCONT)
                    resumed = time.monotonic()
                    print(f"store back after {resumed - stopped:.1f} s")
                status = client.get(url).json()
                if status["waiting_for_storage"] > most_waiting:
                    most_waiting, message = status["waiting_for_storage"], status["message"]
                if status["done"] and resumed is not None:
                    break
                time.sleep(1.0)
            finished = time.monotonic()
            attempts = [item["attempts"] for item in status["items"]]
    finally:
        if moto.poll() is None:
            os.kill(moto.pid, signal.SIGCONT)
            moto.terminate()
            moto.wait(30)
    assert resumed is not None
    print(f"while down: {message}")
    print()
    print_table(
        [
            "images",
            "succeeded",
            "failed",
            "most waiting for storage",
            "max attempts",
            "store down s",
            "done after store back s",
            "wall s",
        ],
        [
            (
                status["total"],
                status["succeeded"],
                status["failed"],
                most_waiting,
                max(attempts),
                resumed - stopped,
                finished - resumed,
                finished - started,
            )
        ],
    )
    passed = status["succeeded"] == args.images and most_waiting > 0
    print()
    print(f"every image stored with no manual retry, waiting shown: {verdict(passed)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
