"""Replays started through the admin API are durable queue jobs: the agent (`python
run.py`, a real child process) is killed with SIGKILL in the middle of one replay and
stopped (SIGTERM) in the middle of another; started again, it finishes both by itself
(no resume call) and every stored input has exactly one replay answer. The model
service is the reference service behind a proxy that slows each answer down, so the
replays are still running when the agent goes away."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from procrastinate.jobs import Job

from app.config import Settings
from app.services.model_service.reference import ReferenceService
from app.services.replay.errors import ReplayInterrupted, ReplayNotFound, UnstorableCredentials
from app.services.replay.queue import (
    MAX_ATTEMPTS,
    ReplayRetry,
    check_job_url,
    model_service_url,
)
from tests.support import AgentProcess, ModelServiceProxy, db_rows, sample_images, wait_until


@pytest.fixture
def agent_process(
    tmp_path: Path, database_url: str, reference_service: ReferenceService
) -> Iterator[AgentProcess]:
    process = AgentProcess.in_folder(
        tmp_path,
        database_url,
        reference_service.url,
        STALLED_JOB_AFTER_S="3",
        REPLAY_CONCURRENCY="1",
    )
    yield process
    process.stop()


@pytest.fixture
def slow_service(reference_service: ReferenceService) -> Iterator[ModelServiceProxy]:
    proxy = ModelServiceProxy(reference_service.url).start()
    proxy.delay_s = 0.8
    yield proxy
    proxy.stop()


def _progress(client: httpx2.Client, run_id: int) -> dict[str, Any]:
    answer = client.get(f"/api/replays/{run_id}")
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def _answers_per_image(database_url: str, run_id: int) -> dict[str, int]:
    rows = db_rows(
        database_url,
        "SELECT a.img_unique_id, count(*) FROM model_answers a"
        " JOIN replay_items i ON i.answer_id = a.answer_id"
        " WHERE i.run_id = %s AND a.role = 'replay' GROUP BY a.img_unique_id",
        run_id,
    )
    return {img: n for img, n in rows}


def _job_status(database_url: str, run_id: int) -> list[str]:
    rows = db_rows(
        database_url,
        "SELECT status::text FROM procrastinate_jobs WHERE lock = %s",
        f"replay-{run_id}",
    )
    return [r[0] for r in rows]


def test_api_replay_survives_a_kill_and_a_stop_with_no_repeats(
    agent_process: AgentProcess, slow_service: ModelServiceProxy, database_url: str
) -> None:
    agent_process.start()
    with httpx2.Client(base_url=agent_process.url, timeout=60) as client:
        files = [("images", (p.name, p.read_bytes())) for p in sample_images()]
        batch = client.post("/api/upload/batch", files=files).json()
        wait_until(lambda: client.get(f"/api/batches/{batch['batch_id']}").json()["done"])
        ids = [a["img_unique_id"] for a in batch["accepted"]]
        body = {"model_url": slow_service.url, "batch_id": batch["batch_id"]}
        killed = client.post("/api/replays", json=body)
        assert killed.status_code == 202, killed.text
        killed_id = killed.json()["run_id"]
        wait_until(lambda: _progress(client, killed_id)["done"] >= 2, timeout_s=60)
        assert _progress(client, killed_id)["state"] == "running"

    agent_process.kill()  # SIGKILL: no clean-up runs
    left = _answers_per_image(database_url, killed_id)
    assert 2 <= len(left) < len(ids)
    assert _job_status(database_url, killed_id) == ["doing"]  # as the killed worker left it

    agent_process.start()  # no resume call: the stalled job is queued again and goes on
    with httpx2.Client(base_url=agent_process.url, timeout=60) as client:
        finished = wait_until(
            lambda: (p := _progress(client, killed_id))["state"] == "finished" and p,
            timeout_s=120,
        )
        assert (finished["done"], finished["failed"], finished["pending"]) == (6, 0, 0)

        stopped = client.post("/api/replays", json=body)
        assert stopped.status_code == 202, stopped.text
        stopped_id = stopped.json()["run_id"]
        wait_until(lambda: _progress(client, stopped_id)["done"] >= 2, timeout_s=60)

    agent_process.stop()  # SIGTERM: the replay is interrupted and queued again at once
    assert _job_status(database_url, stopped_id) == ["todo"]
    assert len(_answers_per_image(database_url, stopped_id)) < len(ids)

    agent_process.start()
    with httpx2.Client(base_url=agent_process.url, timeout=60) as client:
        finished = wait_until(
            lambda: (p := _progress(client, stopped_id))["state"] == "finished" and p,
            timeout_s=120,
        )
        assert (finished["done"], finished["failed"], finished["pending"]) == (6, 0, 0)

    for run_id in (killed_id, stopped_id):
        assert _answers_per_image(database_url, run_id) == dict.fromkeys(ids, 1)
    total = db_rows(database_url, "SELECT count(*) FROM model_answers WHERE role = 'replay'")
    assert total[0][0] == 12  # no answer stored twice, none kept outside its item


def test_the_job_runs_again_after_a_stop_and_uses_configured_credentials() -> None:
    """The retry strategy (a stop → again in a second; the run gone → never; other errors
    → doubling delays, then give up) and the credentials found for a stored URL."""
    retry = ReplayRetry()

    def job(attempts: int) -> Job:
        return Job(
            id=1,
            queue="replays",
            lock=None,
            queueing_lock=None,
            task_name="run_replay",
            attempts=attempts,
        )

    stop = retry.get_retry_decision(exception=ReplayInterrupted("x"), job=job(50))
    assert stop is not None
    cancelled = retry.get_retry_decision(exception=asyncio.CancelledError(), job=job(50))
    assert cancelled is not None
    assert retry.get_retry_decision(exception=ReplayNotFound("gone"), job=job(0)) is None
    assert retry.get_retry_decision(exception=OSError("db"), job=job(0)) is not None
    assert retry.get_retry_decision(exception=OSError("db"), job=job(MAX_ATTEMPTS - 1)) is None

    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        segformer_service_url="http://u:secret@10.0.0.5:5000/",
        shadow_service_urls=["http://s:pw@10.0.0.7:5001"],
    )
    assert model_service_url(settings, "http://10.0.0.7:5001/") == "http://s:pw@10.0.0.7:5001"
    assert model_service_url(settings, "http://10.0.0.5:5000/") == "http://u:secret@10.0.0.5:5000/"
    assert model_service_url(settings, "http://10.0.0.9:5001/") == "http://10.0.0.9:5001/"
    check_job_url(settings, "http://s:pw@10.0.0.7:5001/")  # configured: its credentials
    check_job_url(settings, "http://10.0.0.9:5001/")  # no credentials to keep
    with pytest.raises(UnstorableCredentials):
        check_job_url(settings, "http://x:y@10.0.0.9:5001/")
    with pytest.raises(UnstorableCredentials):  # configured, but with other credentials
        check_job_url(settings, "http://s:other@10.0.0.7:5001/")
