"""Replay of stored inputs killed with SIGKILL midway and resumed: 0 repeats, 0 missing.

1. A fresh, migrated database; the agent (`python run.py`) with the reference model
   service inspects the six sample boards of the repository (real uploads), then stops.
2. Those six stored inspections are cloned by SQL into `--inputs` inspections (default
   1,000) of one batch: new ids, the same stored input and result files, the same
   classes and regions. Cloning instead of uploading 1,000 boards keeps the set-up to
   seconds; a replay reads each clone exactly as it reads any stored inspection (its
   row, its input file, its primary regions and mask).
3. `aoi-agent replay --model-url <reference service> --batch <that batch>` runs as a
   child process; once `--kill-at` of the items are done it is killed with SIGKILL
   (`Popen.kill`: TerminateProcess on Windows) — no clean-up runs.
4. `aoi-agent replay --resume RUN_ID` runs to the end.

   With `--api`, steps 3–4 go through the admin API instead: `POST /api/replays` to the
   agent (`python run.py`), whose replay job runs on the durable queue; once `--kill-at`
   of the items are done the *agent* is killed with SIGKILL, then started again, and
   with no resume call its stalled-job sweep queues the replay job again, which goes on
   to the end (`GET /api/replays/{id}` says `finished`).
5. Counted from the database: replay answers per image (`model_answers`, role
   `replay`): repeats (more than one answer for an image) and missing (none) must both
   be 0. Answer PNG folders left without a row by the kill (the files of the answer
   that was being stored) are reported too.

Usage::

    python benchmarks/replay_resume.py [--inputs 1000] [--kill-at 0.4] [--concurrency 2] [--api]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import psycopg
from _harness import (
    DEFAULT_SERVER_URL,
    REPO_ROOT,
    agent_process,
    machine_line,
    reference_service,
    temporary_database,
    verdict,
    workspace,
)

from app.services.storage.base import ANSWERS

SAMPLES = sorted((REPO_ROOT / "samples" / "deeppcb" / "images").glob("*.jpg"))


def upload_samples(agent_url: str) -> list[str]:
    """The six sample boards inspected by the agent, one by one; their ids."""
    ids = []
    with httpx2.Client(base_url=agent_url, timeout=120) as client:
        for path in SAMPLES:
            answer = client.post("/api/upload", files={"image": (path.name, path.read_bytes())})
            answer.raise_for_status()
            ids.append(answer.json()["img_unique_id"])
    return ids


def _columns(cur: psycopg.Cursor, table: str) -> list[str]:
    cur.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = %s"
        " ORDER BY ordinal_position",
        (table,),
    )
    return [row[0] for row in cur.fetchall()]


def clone(database_url: str, sources: list[str], count: int) -> str:
    """`count` inspections of a new batch copied from `sources` (rows of `inspections`,
    `images`, `classes`, `regions`; files shared); returns the batch id."""
    batch_id = "B_20261207_120000_REPLAY"
    with psycopg.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO batches (batch_id, total_images, rejected_files) VALUES (%s, %s, 0)",
            (batch_id, count),
        )
        columns = {t: _columns(cur, t) for t in ("inspections", "images", "classes", "regions")}
        for number in range(count):
            source = sources[number % len(sources)]
            new_id = f"20261207_120000_R{number:05d}"
            for table in ("inspections", "images"):
                cols = columns[table]
                values = []
                for c in cols:
                    if c == "img_unique_id":
                        values.append("%(new)s")
                    elif c == "batch_id":
                        values.append("%(batch)s")
                    elif c == "batch_position":
                        values.append("%(position)s")
                    elif c in ("repeat_of", "owner_process_id"):
                        values.append("NULL")
                    else:
                        values.append(c)
                cur.execute(
                    f"INSERT INTO {table} ({', '.join(cols)}) SELECT {', '.join(values)}"
                    f" FROM {table} WHERE img_unique_id = %(source)s",
                    {"new": new_id, "batch": batch_id, "position": number, "source": source},
                )
            class_cols = [c for c in columns["classes"] if c not in ("class_unique_id",)]
            cur.execute(
                "SELECT class_unique_id FROM classes WHERE img_unique_id = %s"
                " ORDER BY class_unique_id",
                (source,),
            )
            for (old_class,) in cur.fetchall():
                picked = ["%(new)s" if c == "img_unique_id" else c for c in class_cols]
                cur.execute(
                    f"INSERT INTO classes ({', '.join(class_cols)}) SELECT {', '.join(picked)}"
                    " FROM classes WHERE class_unique_id = %(old)s RETURNING class_unique_id",
                    {"new": new_id, "old": old_class},
                )
                new_class = cur.fetchone()[0]  # type: ignore[index]
                region_cols = [c for c in columns["regions"] if c != "region_unique_id"]
                chosen = [
                    "%(new)s"
                    if c == "img_unique_id"
                    else "%(class)s"
                    if c == "class_unique_id"
                    else c
                    for c in region_cols
                ]
                cur.execute(
                    f"INSERT INTO regions ({', '.join(region_cols)}) SELECT {', '.join(chosen)}"
                    " FROM regions WHERE class_unique_id = %(old)s",
                    {"new": new_id, "class": new_class, "old": old_class},
                )
        conn.commit()
    return batch_id


def count_items(database_url: str) -> tuple[int, int, int]:
    """(run id, done, total) of the newest replay run (0, 0, 0 before there is one)."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT r.run_id, count(*) FILTER (WHERE i.status = 'done'), count(i.*)"
            " FROM replay_runs r JOIN replay_items i USING (run_id)"
            " GROUP BY r.run_id ORDER BY r.run_id DESC LIMIT 1"
        ).fetchone()
    return (int(row[0]), int(row[1]), int(row[2])) if row else (0, 0, 0)


STALLED_JOB_AFTER_S = 5
"""The agents' STALLED_JOB_AFTER_S with `--api`: how soon a killed agent's job is retried."""


def replay_through_api(
    database_url: str,
    model_url: str,
    data_dir: Path,
    batch_id: str,
    inputs: int,
    kill_at_share: float,
    concurrency: int,
) -> tuple[int, int, int, bool, float]:
    """`POST /api/replays`, the agent killed (SIGKILL) at `kill_at_share` of the items
    done, started again, and waited for until the run is finished with no resume call.

    Returns:
        (run id, items done at the kill, total items, finished, seconds from the restart
        to finished).
    """
    extra = {
        "REPLAY_CONCURRENCY": str(concurrency),
        "STALLED_JOB_AFTER_S": str(STALLED_JOB_AFTER_S),
    }
    began = time.perf_counter()
    with agent_process(database_url, model_url, data_dir, extra) as agent:
        with httpx2.Client(base_url=agent.url, timeout=60) as client:
            answer = client.post(
                "/api/replays", json={"model_url": model_url, "batch_id": batch_id}
            )
            answer.raise_for_status()
            run_id = int(answer.json()["run_id"])
        kill_at = int(inputs * kill_at_share)
        while count_items(database_url)[1] < kill_at:
            time.sleep(0.05)
        # SIGKILL (TerminateProcess on Windows): nothing of the agent's clean-up runs.
        os.kill(agent.pid, getattr(signal, "SIGKILL", signal.SIGTERM))
        with contextlib.suppress(ChildProcessError):
            os.waitpid(agent.pid, 0)
    _, done_at_kill, total = count_items(database_url)
    with psycopg.connect(database_url) as conn:
        running, job = conn.execute(
            "SELECT (SELECT count(*) FROM replay_items WHERE run_id = %s AND status = 'running'),"
            " (SELECT string_agg(status::text, ',') FROM procrastinate_jobs WHERE lock = %s)",
            (run_id, f"replay-{run_id}"),
        ).fetchone()  # type: ignore[misc]
    print(
        f"killed the agent (SIGKILL) during run {run_id} after {time.perf_counter() - began:.1f}"
        f" s: {done_at_kill} of {total} done, {running} claimed (running), job {job}",
        flush=True,
    )
    restarted = time.perf_counter()
    finished = False
    with (
        agent_process(database_url, model_url, data_dir, extra) as agent,
        httpx2.Client(base_url=agent.url, timeout=60) as client,
    ):
        deadline = time.monotonic() + 3600
        while time.monotonic() < deadline:
            body = client.get(f"/api/replays/{run_id}").json()
            if body["state"] == "finished":
                finished = True
                break
            time.sleep(0.5)
        seconds = time.perf_counter() - restarted
        print(
            f"restarted agent finished run {run_id} by itself in {seconds:.1f} s (includes"
            f" {STALLED_JOB_AFTER_S} s stall detection): {body['done']} done,"
            f" {body['failed']} failed",
            flush=True,
        )
    return run_id, done_at_kill, total, finished, seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=1000)
    parser.add_argument("--kill-at", type=float, default=0.4, help="share done when killed")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--server-url", default=DEFAULT_SERVER_URL)
    parser.add_argument(
        "--api", action="store_true", help="start the replay through the agent's admin API"
    )
    args = parser.parse_args()
    how = "admin API, agent killed" if args.api else "CLI runner killed"
    print(f"replay resume ({how}): {args.inputs} stored inputs, {machine_line()}", flush=True)
    with (
        workspace() as workdir,
        temporary_database(args.server_url) as database_url,
        reference_service(workdir / "reference-service.log") as model,
    ):
        data_dir = workdir / "data"
        with agent_process(database_url, model.url, data_dir) as agent:
            sources = upload_samples(agent.url)
        started = time.perf_counter()
        batch_id = clone(database_url, sources, args.inputs)
        print(f"cloned {args.inputs} inspections in {time.perf_counter() - started:.1f} s")
        if args.api:
            run_id, done_at_kill, total, ok, resume_s = replay_through_api(
                database_url,
                model.url,
                data_dir,
                batch_id,
                args.inputs,
                args.kill_at,
                args.concurrency,
            )
            return report(database_url, data_dir, run_id, done_at_kill, total, ok, resume_s, args)
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO_ROOT),
            "DATABASE_URL": database_url,
            "DATA_DIR": str(data_dir),
            "STORAGE_URL": "",
            "LOG_LEVEL": "WARNING",
        }
        command = [sys.executable, "-m", "app.cli", "replay"]
        log = (workdir / "replay.log").open("ab")
        began = time.perf_counter()
        start = ["--model-url", model.url, "--batch", batch_id]
        first = subprocess.Popen(
            [*command, *start, "--concurrency", str(args.concurrency)],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        kill_at = int(args.inputs * args.kill_at)
        while True:
            run_id, done, total = count_items(database_url)
            if done >= kill_at or first.poll() is not None:
                break
            time.sleep(0.05)
        first.kill()  # SIGKILL: nothing of the runner's clean-up runs
        first.wait()
        run_id, done_at_kill, total = count_items(database_url)
        with psycopg.connect(database_url) as conn:
            running = conn.execute(
                "SELECT count(*) FROM replay_items WHERE run_id = %s AND status = 'running'",
                (run_id,),
            ).fetchone()[0]  # type: ignore[index]
        print(
            f"killed run {run_id} (SIGKILL) after {time.perf_counter() - began:.1f} s:"
            f" {done_at_kill} of {total} done, {running} claimed (running)",
            flush=True,
        )
        resumed_at = time.perf_counter()
        second = subprocess.run(
            [*command, "--resume", str(run_id), "--concurrency", str(args.concurrency)],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=3600,
        )
        resume_s = time.perf_counter() - resumed_at
        log.close()
        print(second.stdout.strip() or second.stderr.strip()[-500:])
        return report(
            database_url,
            data_dir,
            run_id,
            done_at_kill,
            total,
            second.returncode == 0,
            resume_s,
            args,
        )


def report(
    database_url: str,
    data_dir: Path,
    run_id: int,
    done_at_kill: int,
    total: int,
    resumed_ok: bool,
    resume_s: float,
    args: argparse.Namespace,
) -> int:
    """Print the counts from the database and the store; 0 when there is no repeat and
    nothing missing."""
    with psycopg.connect(database_url) as conn:
        per_image = dict(
            conn.execute(
                "SELECT i.img_unique_id, count(a.answer_id) FROM replay_items i"
                " LEFT JOIN model_answers a"
                " ON a.img_unique_id = i.img_unique_id AND a.role = 'replay'"
                " WHERE i.run_id = %s GROUP BY i.img_unique_id",
                (run_id,),
            ).fetchall()
        )
        rows = conn.execute("SELECT count(*) FROM model_answers WHERE role = 'replay'").fetchone()[
            0
        ]  # type: ignore[index]
        folders = {
            row[0].rsplit("/", 1)[0]
            for row in conn.execute("SELECT mask_path FROM model_answers").fetchall()
            if row[0]
        }
    on_disk = {
        p.relative_to(data_dir).as_posix() for p in (data_dir / ANSWERS).glob("*/*/*") if p.is_dir()
    }
    repeats = sum(n - 1 for n in per_image.values() if n > 1)
    missing = sum(1 for n in per_image.values() if n == 0)
    stray = len(on_disk - folders)
    answered = total - done_at_kill
    print(
        f"resume: {total - done_at_kill} left, answered in {resume_s:.1f} s"
        f" ({answered / resume_s:.1f} inputs/s at concurrency {args.concurrency})"
    )
    print(
        f"images: {len(per_image)}; replay answers: {rows}; repeats: {repeats};"
        f" missing: {missing}; answer folders without a row (files of the answer being"
        f" stored at the kill): {stray}"
    )
    passed = resumed_ok and repeats == 0 and missing == 0 and rows == total
    print(f"target 0 repeats, 0 missing: {verdict(passed)}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
