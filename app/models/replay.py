"""Request and response schemas of the replay routes (`/api/replays`)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx2
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.models.context import CONTEXT_TEXT_LENGTH

_BATCH_ID_PATTERN = r"^B_[0-9]{8}_[0-9]{6}_[A-Z0-9]{6}$"
_URL_PATTERN = r"^https?://[^\s\x00-\x1f\x7f]+$"


class ReplayCreate(BaseModel):
    """A replay to start: the model service, and which stored inputs (at least one of
    batch, dates, product; all given ones must match)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "model_url": "http://127.0.0.1:5001/",
                    "start_date": "2026-02-24",
                    "end_date": "2026-02-25",
                }
            ]
        },
    )

    model_url: str = Field(
        min_length=8,
        max_length=2048,
        pattern=_URL_PATTERN,
        description="The model service to replay through (http:// or https://); stored"
        " without credentials. With credentials it must be one of the configured model"
        " services (SEGFORMER_SERVICE_URL(S), SHADOW_SERVICE_URLS), whose credentials the"
        " queued job takes from there.",
    )
    batch_id: str | None = Field(default=None, pattern=_BATCH_ID_PATTERN)
    start_date: date | None = Field(default=None, description="First UTC day, inclusive.")
    end_date: date | None = Field(default=None, description="Last UTC day, inclusive.")
    product: str | None = Field(
        default=None,
        min_length=1,
        max_length=CONTEXT_TEXT_LENGTH,
        pattern=r"^[^\x00-\x1f\x7f]*$",
        description="The board context's product, exactly as sent with the uploads.",
    )

    @field_validator("model_url")
    @classmethod
    def _a_url_the_job_can_call(cls, url: str) -> str:
        """A URL that the standard library splits (host, port) and httpx2 accepts, as the
        queued job will use it; anything else is a 422, not an error in the job."""
        try:
            parts = urlsplit(url)
            _ = parts.port  # raises ValueError for a port out of range or not a number
            httpx2.URL(url)
        except (ValueError, httpx2.InvalidURL) as exc:
            raise ValueError(f"not a usable model service URL: {exc}") from None
        if not parts.hostname:
            raise ValueError("not a usable model service URL: no host")
        return url

    @model_validator(mode="after")
    def _dates_in_order(self) -> ReplayCreate:
        if self.start_date and self.end_date and self.start_date > self.end_date:
            raise ValueError("start_date is after end_date")
        return self


class ReplayRunOut(BaseModel):
    """A replay run and its progress."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "run_id": 7,
                    "model_service_url": "http://127.0.0.1:5001/",
                    "selection": {"start_date": "2026-02-24", "end_date": "2026-02-25"},
                    "state": "running",
                    "total": 1000,
                    "pending": 610,
                    "running": 2,
                    "done": 386,
                    "failed": 2,
                    "created_at": "2026-02-25T10:30:45Z",
                    "resumed_at": None,
                    "finished_at": None,
                }
            ]
        }
    )

    run_id: int
    model_service_url: str
    selection: dict[str, Any]
    state: Literal["queued", "running", "stopped", "finished"] = Field(
        description="`queued`: its job waits for a replay worker (another replay runs, or"
        " the agent restarts); `running`: a worker of the agent runs its job; `finished`:"
        " every item was done or failed (`finished_at`); `stopped`: items are left and"
        " no job runs them (a CLI run that was killed, or a job that failed for good):"
        " resume it."
    )
    total: int
    pending: int
    running: int = Field(description="Items claimed by a runner, being answered now.")
    done: int
    failed: int
    created_at: datetime
    resumed_at: datetime | None = None
    finished_at: datetime | None = None
