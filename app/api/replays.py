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
from app.services.replay.errors import NothingToReplay, ReplayNotFound
from app.services.replay.service import ReplaySelection, ReplayState, ReplayTasks

router = APIRouter(
    prefix="/replays",
    tags=["Models"],
    dependencies=[AdminAccess],
    responses={**AUTH_ERRORS, **VALIDATION_ERROR_RESPONSE},
)

RunId = Annotated[int, Path(ge=1, le=INT8_MAX, description="A replay's `run_id`.", examples=[7])]


def _out(runtime: AgentRuntime, state: ReplayState) -> ReplayRunOut:
    run, counts = state.run, state.counts
    here = runtime.replays is not None and runtime.replays.running(run.run_id)
    return ReplayRunOut(
        run_id=run.run_id,
        model_service_url=run.model_service_url,
        selection=run.selection,
        state="running" if here else "finished" if run.finished_at else "stopped",
        total=counts.total,
        pending=counts.pending,
        running=counts.running,
        done=counts.done,
        failed=counts.failed,
        created_at=run.created_at,
        resumed_at=run.resumed_at,
        finished_at=run.finished_at,
    )


def _tasks(runtime: AgentRuntime) -> ReplayTasks:
    assert runtime.replays is not None  # made with the runtime
    return runtime.replays


@router.post(
    "",
    response_model=ReplayRunOut,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Start a replay of stored inputs through another model service",
    responses={
        400: {"model": ErrorBody, "description": "The body is not valid JSON."},
        **responses(NothingToReplay),
    },
)
async def create_replay(body: ReplayCreate, runtime: RuntimeDep) -> ReplayRunOut:
    """Every stored inspection result of the batch / days / product is sent to
    `model_url`, its answer stored as a `replay` model answer (docs/replay.md). Runs in
    the background in this agent process; follow it with `GET /api/replays/{run_id}`.
    After a restart of the agent, `POST /api/replays/{run_id}/resume`."""
    service = _tasks(runtime).service
    selection = ReplaySelection(body.batch_id, body.start_date, body.end_date, body.product)
    state = await service.create(body.model_url, selection)
    _tasks(runtime).start(state.run.run_id, body.model_url)
    return _out(runtime, await service.state(state.run.run_id))


@router.get(
    "/{run_id}",
    response_model=ReplayRunOut,
    summary="A replay's progress",
    responses=responses(ReplayNotFound),
)
async def get_replay(run_id: RunId, runtime: RuntimeDep) -> ReplayRunOut:
    """Items pending, running, done and failed, and whether this agent runs it now."""
    return _out(runtime, await _tasks(runtime).service.state(run_id))


@router.post(
    "/{run_id}/resume",
    response_model=ReplayRunOut,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Resume a replay that was stopped (killed agent) or has failed items",
    responses=responses(ReplayNotFound),
)
async def resume_replay(run_id: RunId, runtime: RuntimeDep) -> ReplayRunOut:
    """Items left `running` by a runner that stopped, and `failed` items, go back to
    pending and this process runs the rest; an image whose answer is stored is never
    sent again. Nothing is reset while this process is running the replay already."""
    tasks = _tasks(runtime)
    if not tasks.running(run_id):
        await tasks.service.resume(run_id)
        tasks.start(run_id)
    return _out(runtime, await tasks.service.state(run_id))
