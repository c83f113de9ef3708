"""Smoke test of the README's first command: start `python run.py` with the defaults,
check health, upload the README's sample DeepPCB board (samples/) at the PRD's path,
download its overlay, check that a second `run.py` on the same port refuses with one
`error:` line, stop with SIGTERM and check that nothing it started still runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx2
import psutil

ROOT = Path(__file__).resolve().parents[1]
IMAGE = ROOT / "samples/deeppcb/images/00041201.jpg"  # the README's first upload
PORT = "8765"


def main() -> int:
    """Run the smoke test; returns the exit code."""
    data_dir = Path(tempfile.mkdtemp(prefix="aoi-smoke-"))
    unset = ("DATABASE_URL", "SEGFORMER_SERVICE_URL")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env.update(DATA_DIR=str(data_dir), PORT=PORT)
    started = time.monotonic()
    agent = subprocess.Popen([sys.executable, "run.py"], cwd=ROOT, env=env)
    base = f"http://127.0.0.1:{PORT}"
    try:
        while True:
            if agent.poll() is not None:
                print(f"smoke: run.py exited with {agent.returncode}")
                return 1
            try:
                health = httpx2.get(f"{base}/health", timeout=2)
                if health.status_code == 200 and health.json()["status"] == "ok":
                    break
            except httpx2.HTTPError:
                pass
            if time.monotonic() - started > 120:
                print("smoke: the agent was not healthy within 120 s")
                stop(agent, data_dir)
                return 1
            time.sleep(0.5)
        print(f"smoke: healthy after {time.monotonic() - started:.1f} s")
        second = subprocess.run(
            [sys.executable, "run.py"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        refusal = second.stderr.strip().splitlines()
        if second.returncode != 1 or len(refusal) != 1 or not refusal[0].startswith("error:"):
            print(f"smoke: a second run.py on port {PORT} did not refuse cleanly: {second}")
            stop(agent, data_dir)
            return 1
        print(f"smoke: a second run.py on the same port says: {refusal[0]}")
        if not IMAGE.is_file():
            print(f"smoke: {IMAGE} missing (the repository ships it)")
            stop(agent, data_dir)
            return 1
        with IMAGE.open("rb") as fh:
            upload = httpx2.post(f"{base}/upload", files={"image": (IMAGE.name, fh)}, timeout=60)
        upload.raise_for_status()
        body = upload.json()
        overlay = httpx2.get(body["images"]["overlay"], timeout=30)
        overlay.raise_for_status()
        assert overlay.content.startswith(b"\x89PNG"), "overlay is not a PNG"
        print(
            f"smoke: uploaded {IMAGE.name} -> {body['img_unique_id']},"
            f" {body['total_defects']} defects, overlay {len(overlay.content)} bytes"
        )
        return stop(agent, data_dir)
    except BaseException:
        stop(agent, data_dir)
        raise


def stop(agent: subprocess.Popen[bytes], data_dir: Path) -> int:
    """Send SIGTERM (what systemd and `docker stop` send); 0 when run.py exited with 0
    and left nothing running: no process it started, no embedded PostgreSQL."""
    if agent.poll() is not None:
        return 1
    children = psutil.Process(agent.pid).children(recursive=True)
    started = time.monotonic()
    agent.send_signal(signal.SIGTERM)
    try:
        code = agent.wait(60)
    except subprocess.TimeoutExpired:
        agent.kill()
        print("smoke: run.py did not stop on SIGTERM")
        return 1
    print(f"smoke: run.py stopped on SIGTERM in {time.monotonic() - started:.1f} s, code {code}")
    _, alive = psutil.wait_procs(children, timeout=5)
    if alive:
        print(f"smoke: still running after SIGTERM: {[p.pid for p in alive]}")
        return 1
    if (data_dir / "postgres" / "postmaster.pid").exists():
        print("smoke: the embedded PostgreSQL is still running after SIGTERM")
        return 1
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
