"""Smoke test of the README's first command: start `python run.py` with the defaults,
check health, upload the README's sample DeepPCB board (samples/) at the PRD's path,
download its overlay, check that a second `run.py` on the same port refuses with one
`error:` line, stop with Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx2

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
    """Send Ctrl-C; 0 when the agent and its embedded PostgreSQL both stopped."""
    if agent.poll() is not None:
        return 1
    agent.send_signal(signal.SIGINT)
    try:
        code = agent.wait(30)
    except subprocess.TimeoutExpired:
        agent.kill()
        print("smoke: run.py did not stop on Ctrl-C")
        return 1
    print(f"smoke: run.py stopped on Ctrl-C with exit code {code}")
    if (data_dir / "postgres" / "postmaster.pid").exists():
        print("smoke: the embedded PostgreSQL is still running after Ctrl-C")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
