"""Replay routes (admin): re-run stored inputs through another model service."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status

from app.api.deps import RuntimeDep
from app.api.params import INT8_MAX
from app.api.security import AUTH_ERRORS, AdminAccess
from app.errors import VALIDATION_ERROR_RESPONSE, responses
from app.models.replay import ReplayCreate, ReplayRunOut
from app.models.schemas import ErrorBody
from app.runtime import AgentRuntime
from app.services.replay.errors import NothingToReplay, ReplayNotFound, UnstorableCredentials
from app.services.replay.queue import (
    ReplayJobs,
    check_job_url,
    defer_replay,
    replay_job_status,
)
from app.services.replay.service import ReplaySelection, ReplayState

router = APIRouter(
    prefix="/replays",
    tags=["Models"],
    dependencies=[AdminAccess],
    responses={**AUTH_ERRORS, **VALIDATION_ERROR_RESPONSE},
)

RunId = Annotated[int, Path(ge=1, le=INT8_MAX, description="A replay's `run_id`.", examples=[7])]


async def _out(runtime: AgentRuntime, state: ReplayState) -> ReplayRunOut:
    run, counts = state.run, state.counts
    job = await replay_job_status(runtime.queue, run.run_id)
    return ReplayRunOut(
        run_id=run.run_id,
        model_service_url=run.model_service_url,
        selection=run.selection,
        state="running"
        if job == "doing"
        else "queued"
        if job == "todo"
        else "finished"
        if run.finished_at
        else "stopped",
        total=counts.total,
        pending=counts.pending,
        running=counts.running,
        done=counts.done,
        failed=counts.failed,
        created_at=run.created_at,
        resumed_at=run.resumed_at,
        finished_at=run.finished_at,
    )


def _jobs(runtime: AgentRuntime) -> ReplayJobs:
    assert runtime.replays is not None  # made with the runtime
    return runtime.replays


@router.post(
    "",
    response_model=ReplayRunOut,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Start a replay of stored inputs through another model service",
    responses={
        400: {"model": ErrorBody, "description": "The body is not valid JSON."},
        **responses(NothingToReplay, UnstorableCredentials),
    },
)
async def create_replay(body: ReplayCreate, runtime: RuntimeDep) -> ReplayRunOut:
    """Every stored inspection result of the batch / days / product is sent to
    `model_url`, its answer stored as a `replay` model answer (docs/replay.md). Runs as a
    durable job on the agent's queue: a restarted or killed agent goes on with it by
    itself, never asking twice for an answer it stored. Follow it with
    `GET /api/replays/{run_id}`."""
    service = _jobs(runtime).service
    check_job_url(runtime.settings, body.model_url)
    selection = ReplaySelection(body.batch_id, body.start_date, body.end_date, body.product)
    state = await service.create(body.model_url, selection)
    await defer_replay(runtime.queue, state.run.run_id)
    return await _out(runtime, await service.state(state.run.run_id))


@router.get(
    "/{run_id}",
    response_model=ReplayRunOut,
    summary="A replay's progress",
    responses=responses(ReplayNotFound),
)
async def get_replay(run_id: RunId, runtime: RuntimeDep) -> ReplayRunOut:
    """Items pending, running, done and failed, and whether a worker runs it now."""
    return await _out(runtime, await _jobs(runtime).service.state(run_id))


@router.post(
    "/{run_id}/resume",
    response_model=ReplayRunOut,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Resume a stopped replay (a killed CLI run) or retry its failed items",
    responses=responses(ReplayNotFound),
)
async def resume_replay(run_id: RunId, runtime: RuntimeDep) -> ReplayRunOut:
    """Items left `running` by a runner that stopped, and `failed` items, go back to
    pending and the run's job is queued again; an image whose answer is stored is never
    sent again. Nothing is reset while the run's job is queued or running (a restarted
    agent goes on with those by itself)."""
    service = _jobs(runtime).service
    if await replay_job_status(runtime.queue, run_id) is None:
        await service.resume(run_id)
        await defer_replay(runtime.queue, run_id)
    return await _out(runtime, await service.state(run_id))
