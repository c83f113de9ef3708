"""Replays: `POST /api/replays`, `GET /api/replays/{id}`, `.../resume` and `aoi-agent
replay`, with real parts: the agent inspects the six sample boards with the reference
service, and a replay sends the stored inputs to the reference service again over real
HTTP. A killed runner is played by claiming items under a token nobody finishes (what a
kill -9 leaves); benchmarks/replay_resume.py kills a real process."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx2
import pytest

from app.services.database.session import create_engine, create_session_factory, unit_of_work
from app.services.model_service.reference import ReferenceService
from app.services.models.answers import run_model_answer
from app.services.replay.errors import ClaimLost
from app.services.replay.repository import ReplayRepository
from app.services.replay.service import ReplaySelection, ReplayService
from app.services.storage import open_storage
from tests.support import AgentServer, db_rows, run_cli, sample_images, wait_until


@pytest.fixture(scope="module")
def batch(agent: AgentServer) -> dict[str, Any]:
    """The six sample boards inspected in one batch."""
    with httpx2.Client(base_url=agent.url, timeout=60) as c:
        files = [("images", (p.name, p.read_bytes())) for p in sample_images()]
        body = c.post("/api/upload/batch", files=files).json()
        wait_until(lambda: c.get(f"/api/batches/{body['batch_id']}").json()["done"])
    return {"batch_id": body["batch_id"], "ids": [a["img_unique_id"] for a in body["accepted"]]}


def _answers_per_image(agent: AgentServer, run_id: int) -> dict[str, int]:
    """Replay answers of each image of the run: its item's answer (the only way a replay
    answer is kept) counted per image."""
    rows = db_rows(
        agent.settings.database_url or "",
        "SELECT i.img_unique_id, count(a.answer_id) FROM replay_items i"
        " LEFT JOIN model_answers a ON a.answer_id = i.answer_id AND a.role = 'replay'"
        " WHERE i.run_id = %s GROUP BY i.img_unique_id",
        run_id,
    )
    return {img: n for img, n in rows}


def _replay_answers(agent: AgentServer) -> int:
    rows = db_rows(
        agent.settings.database_url or "",
        "SELECT count(*) FROM model_answers WHERE role = 'replay'",
    )
    return int(rows[0][0])


def test_api_replay_answers_every_stored_input_once(
    client: httpx2.Client,
    agent: AgentServer,
    batch: dict[str, Any],
    reference_service: ReferenceService,
) -> None:
    db = agent.settings.database_url or ""
    primary_before = db_rows(db, "SELECT count(*) FROM regions")
    answers_before = _replay_answers(agent)
    started = client.post(
        "/api/replays", json={"model_url": reference_service.url, "batch_id": batch["batch_id"]}
    )
    assert started.status_code == 202, started.text
    run = started.json()
    assert run["total"] == len(batch["ids"])
    assert run["selection"] == {"batch_id": batch["batch_id"]}

    def finished() -> dict[str, Any] | None:
        body = client.get(f"/api/replays/{run['run_id']}").json()
        return body if body["state"] == "finished" else None

    body = wait_until(finished, timeout_s=120)
    assert (body["done"], body["failed"], body["pending"], body["running"]) == (6, 0, 0, 0)
    assert body["finished_at"] is not None
    assert _answers_per_image(agent, run["run_id"]) == dict.fromkeys(batch["ids"], 1)
    rows = db_rows(
        db,
        "SELECT a.role, a.status, a.img_unique_id = i.img_unique_id FROM replay_items i"
        " JOIN model_answers a ON a.answer_id = i.answer_id WHERE i.run_id = %s",
        run["run_id"],
    )
    assert rows == [("replay", "succeeded", True)] * 6
    assert _replay_answers(agent) == answers_before + 6
    # The primary results are untouched.
    assert db_rows(db, "SELECT count(*) FROM regions") == primary_before

    # Resuming a finished run sends nothing again.
    again = client.post(f"/api/replays/{run['run_id']}/resume")
    assert again.status_code == 202
    wait_until(finished, timeout_s=60)
    assert _answers_per_image(agent, run["run_id"]) == dict.fromkeys(batch["ids"], 1)
    assert _replay_answers(agent) == answers_before + 6


def test_bad_replays_are_refused(
    client: httpx2.Client, reference_service: ReferenceService
) -> None:
    unknown = client.get("/api/replays/999999")
    assert unknown.status_code == 404
    assert unknown.json()["error"] == "replay_not_found"
    assert client.post("/api/replays/999999/resume").status_code == 404
    nothing = client.post("/api/replays", json={"model_url": reference_service.url})
    assert nothing.status_code == 422
    no_match = client.post(
        "/api/replays",
        json={"model_url": reference_service.url, "end_date": "2001-01-01"},
    )
    assert no_match.status_code == 422
    assert "no stored inspection result" in no_match.json()["detail"]
    for body in (
        {"model_url": "ftp://x", "product": "A"},
        {"model_url": reference_service.url, "product": "A\x00"},
        {"model_url": reference_service.url, "start_date": "2026-02-02", "end_date": "2026-02-01"},
    ):
        assert client.post("/api/replays", json=body).status_code == 422, body


def test_resume_after_a_killed_runner_and_a_late_runner_gives_one_answer_each(
    agent: AgentServer, batch: dict[str, Any], reference_service: ReferenceService
) -> None:
    """A runner "killed" holding two claims (left `running`, its answers never stored) and
    one still alive, which finishes an answer after the resume took its item over: the
    resumed run answers every image once, and the late answer is rolled back."""
    settings = agent.settings

    async def scenario() -> tuple[int, str]:
        engine = create_engine(settings, settings.database_url or "")
        sessions = create_session_factory(engine)
        storage = open_storage(settings)
        service = ReplayService(settings, sessions, storage)
        try:
            run = (
                await service.create(reference_service.url, ReplaySelection(batch["batch_id"]))
            ).run
            async with unit_of_work(sessions) as session:
                repo = ReplayRepository(session)
                killed = [await repo.claim(run.run_id, "killed") for _ in range(2)]
                late = await repo.claim(run.run_id, "late")
            assert None not in killed
            assert late is not None
            state = await service.resume(run.run_id)
            assert (state.counts.pending, state.counts.running) == (6, 0)
            counts = await service.run(run.run_id, concurrency=2)
            assert (counts.done, counts.failed) == (6, 0)

            # The late runner now stores its answer: its claim is gone, so it rolls back.
            async def mark_done(session: Any, answer_id: int) -> None:
                await ReplayRepository(session).mark_done(run.run_id, late, "late", answer_id)

            with pytest.raises(ClaimLost):
                await run_model_answer(
                    settings,
                    sessions,
                    storage,
                    late,
                    reference_service.url,
                    "replay",
                    in_transaction=mark_done,
                )
            return run.run_id, late
        finally:
            await storage.aclose()
            await engine.dispose()

    db = settings.database_url or ""
    answers_before = _replay_answers(agent)
    run_id, _ = asyncio.run(scenario())
    assert _answers_per_image(agent, run_id) == dict.fromkeys(batch["ids"], 1)
    assert _replay_answers(agent) == answers_before + 6  # the late answer was not kept
    attempts = db_rows(db, "SELECT sum(attempts) FROM replay_items WHERE run_id = %s", run_id)[0][0]
    assert attempts == 6 + 3  # three claims were given up and made again


def test_cli_replay_and_resume(
    agent: AgentServer, batch: dict[str, Any], reference_service: ReferenceService
) -> None:
    env = {
        "DATABASE_URL": agent.settings.database_url or "",
        "DATA_DIR": str(agent.settings.data_dir),
        "STORAGE_URL": "",
    }
    done = run_cli(
        "replay",
        "--model-url",
        reference_service.url,
        "--batch",
        batch["batch_id"],
        "--json",
        env=env,
    )
    answers_before = _replay_answers(agent)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["total"], report["done"], report["failed"]) == (6, 6, 0)
    assert f"replay run {report['run_id']}: 6 stored inputs" in done.stderr
    assert _answers_per_image(agent, report["run_id"]) == dict.fromkeys(batch["ids"], 1)
    resumed = run_cli("replay", "--resume", str(report["run_id"]), env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert "6 of 6 answered, 0 failed" in resumed.stdout
    assert _answers_per_image(agent, report["run_id"]) == dict.fromkeys(batch["ids"], 1)
    assert _replay_answers(agent) == answers_before
    usage = run_cli("replay", "--model-url", reference_service.url, env=env)
    assert usage.returncode == 2
    assert "--batch" in usage.stderr
