"""Errors of the replay domain, with their HTTP meaning."""

from __future__ import annotations

from typing import Any

from app.errors import AgentError


class ReplayNotFound(AgentError):
    """No replay run with this id."""

    status_code = 404
    error = "replay_not_found"


class NothingToReplay(AgentError):
    """The selection names no stored inspection result (or no selection was given)."""

    status_code = 422
    error = "invalid_request"

    def __init__(self, detail: str) -> None:
        problem: list[dict[str, Any]] = [
            {"type": "value_error", "loc": ["body"], "msg": detail, "input": None}
        ]
        super().__init__(detail, errors=problem)


class UnstorableCredentials(AgentError):
    """The model URL carries credentials that no configured model service has: a queued
    replay job could not send them (they are never written to the database)."""

    status_code = 422
    error = "invalid_request"

    def __init__(self, detail: str) -> None:
        problem: list[dict[str, Any]] = [
            {"type": "value_error", "loc": ["body", "model_url"], "msg": detail, "input": None}
        ]
        super().__init__(detail, errors=problem)


class ClaimLost(Exception):
    """The item was given to another runner (a resume reset it) while this one asked the
    model service: this runner's answer must not be stored (rolled back)."""


class ReplayInterrupted(Exception):
    """The agent process is stopping: its replay job stops at once and is queued again
    (its claimed items are put back when the job runs next)."""
