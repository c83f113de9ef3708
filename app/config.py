"""The agent's settings: one typed class read from the environment and `.env`.

Every variable is listed, with a comment, in `.env.example`.
"""

from __future__ import annotations

import ipaddress
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from croniter import croniter
from limits import parse as parse_rate_limit
from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.services.spc.charts import Rule
from app.services.spc.shifts import Shift, parse_shifts, zone

PRODUCTION_MODEL_SERVICE_URL = "http://140.96.77.124:8080/"
# THROTTLE_STORAGE_URL: this process's memory, or a Redis server (redis-py) all processes share.
THROTTLE_STORAGE_SCHEMES = ("memory://", "async+redis://", "async+rediss://")
DEFAULT_REVIEW_REASONS = ("dust", "oxidation", "registration", "marking")
REASON_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,31}$"
"""A review reason code: 1-32 lowercase letters, digits, `_` or `-`."""
REASONS_MAX = 9
"""Reason codes in the list at most: one key (Shift+1 ... Shift+9) each."""


def check_reasons(codes: list[str]) -> list[str]:
    """The reason codes, stripped, checked (pattern, no repeat, at most REASONS_MAX).

    Raises:
        ValueError: a code breaks REASON_PATTERN, repeats, or there are too many.
    """
    out = [c.strip() for c in codes]
    bad = [c for c in out if not re.fullmatch(REASON_PATTERN, c)]
    if bad:
        raise ValueError(
            f"reason codes are 1-32 lowercase letters, digits, _ or -, starting with a letter"
            f" or digit: {bad[0]!r} is not"
        )
    if len(set(out)) != len(out):
        raise ValueError("a reason code is listed twice")
    if len(out) > REASONS_MAX:
        raise ValueError(f"at most {REASONS_MAX} reason codes (one key each), not {len(out)}")
    return out


def is_loopback(host: str) -> bool:
    """Whether `host` (HOST) is reachable only from this machine: localhost, 127.0.0.0/8, ::1."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class Settings(BaseSettings):
    """Configuration of the agent; units are in the field names (`_s`, `_mb`)."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True
    )

    # Database. Unset: `run.py` starts an embedded PostgreSQL under DATA_DIR.
    database_url: str | None = None
    db_pool_min_size: int = Field(default=5, ge=1)
    db_pool_max_size: int = Field(default=20, ge=1)

    # Model service. Unset: `run.py` starts the reference model service on loopback.
    segformer_service_url: str | None = None
    # Several model services, comma-separated; when set it wins over SEGFORMER_SERVICE_URL.
    # Each image goes to the service with the fewest requests in flight (docs/model-services.md).
    segformer_service_urls: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Requests in flight per service, comma-separated in the order of the URLs; a service
    # without a figure gets SEGFORMER_MAX_CONCURRENCY.
    segformer_service_max_concurrency: Annotated[list[int], NoDecode] = Field(default_factory=list)
    # A failing service (unreachable, 5xx, timeout) is left out this long, then probed back
    # in (GET /health); each further failure doubles it, up to the maximum (seconds).
    segformer_failover_backoff_s: float = Field(default=5.0, gt=0)
    segformer_failover_backoff_max_s: float = Field(default=60.0, gt=0)
    segformer_timeout_s: float = Field(default=30.0, gt=0)
    segformer_max_retries: int = Field(default=3, ge=1, le=10)
    segformer_max_concurrency: int = Field(default=4, ge=1, le=256)
    # Back-off before retry n is `segformer_backoff_base_s * 2**(n-1)`: 1 s, 2 s, 4 s.
    segformer_backoff_base_s: float = Field(default=1.0, ge=0)
    # One inference, every attempt and back-off included, ends after this long (seconds).
    segformer_deadline_s: float = Field(default=60.0, gt=0)
    # Most bytes the agent reads from a model service for one inference (the answer and
    # any result image it fetches), counted raw and decompressed (gzip/deflate): more is a
    # bad answer (502). Memory per call in flight is about 3 x this at most (MB).
    model_service_max_answer_mb: float = Field(default=128.0, gt=0)
    # Batch images that fail because the model service is unreachable are tried again,
    # after BATCH_RETRY_BACKOFF_BASE_S, then twice as long each time (at most 5 min), until
    # the service has been failing for them this long (seconds).
    batch_retry_window_s: float = Field(default=1800.0, ge=0)
    batch_retry_backoff_base_s: float = Field(default=10.0, gt=0)

    # Shadow model services (docs/models.md): after the primary answer is stored, a sampled
    # share SHADOW_SAMPLE_RATE (0..1) of inspections is also sent to each of these URLs
    # (comma-separated, any number) by the durable queue; their answers are stored apart
    # and never change the primary one. SHADOW_CONCURRENCY: shadow jobs run at once per
    # worker (and requests in flight per shadow service). A failing shadow call is tried
    # SHADOW_MAX_ATTEMPTS times in all, SHADOW_RETRY_BASE_S apart, doubling (seconds).
    shadow_service_urls: Annotated[list[str], NoDecode] = Field(default_factory=list)
    shadow_sample_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    shadow_concurrency: int = Field(default=1, ge=1, le=64)
    shadow_max_attempts: int = Field(default=3, ge=1, le=20)
    shadow_retry_base_s: float = Field(default=30.0, ge=0)
    # Two answers' regions of one class match when the IoU of their pixels is at least
    # this (0..1; docs/models.md).
    model_match_min_iou: float = Field(default=0.5, gt=0.0, le=1.0)
    # Replays (docs/replay.md): stored inputs a replay started by the admin API sends to
    # its model service at once (the CLI has --concurrency).
    replay_concurrency: int = Field(default=2, ge=1, le=64)

    # Storage. UPLOAD_DIR and RESULT_DIR default to DATA_DIR/uploads and DATA_DIR/results.
    data_dir: Path = Path("data")
    upload_dir: Path | None = None
    result_dir: Path | None = None
    # Where inputs, results and thumbnails are kept (docs/storage.md): unset = DATA_DIR,
    # a folder, or `s3://bucket/prefix` for an S3-compatible object store.
    storage_url: str | None = None
    # The S3 API's address when not AWS (MinIO, Ceph RGW...); credentials and region come
    # from the standard AWS variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION).
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    # The standard AWS variables, read here too so that `.env` may hold them (the process
    # environment and the instance's role work as well).
    aws_access_key_id: str | None = None
    aws_secret_access_key: SecretStr | None = None
    aws_session_token: SecretStr | None = None
    aws_region: str | None = None
    s3_timeout_s: float = Field(default=30.0, gt=0)
    # Downloads answer 307 to a presigned URL of the object store instead of passing the
    # bytes through the agent; the URL is valid this long (seconds).
    s3_presigned_downloads: bool = False
    s3_presigned_ttl_s: int = Field(default=900, ge=1, le=7 * 86400)
    # Local folder for uploads being received (removed once stored); default
    # UPLOAD_DIR/.incoming with a folder store, DATA_DIR/scratch with an object store.
    scratch_dir: Path | None = None

    # Largest accepted upload in MiB (1,048,576 bytes), the PRD's "50 MB".
    max_file_size_mb: float = Field(default=50, gt=0)
    max_batch_size: int = Field(default=100, ge=1)
    # Largest accepted width x height, pixels; the reference model service started by
    # run.py gets the same limit (the customer's service: set it to that service's limit).
    max_image_pixels: int = Field(default=50_000_000, ge=1, le=2**31 - 1)
    # Full image decodes (upload validation) at once; each takes up to pixels x 4 bytes.
    max_concurrent_decodes: int = Field(default=2, ge=1, le=64)
    # Uploads are refused (507) while the disk holding DATA_DIR has less free space.
    min_free_disk_mb: float = Field(default=500, ge=0)
    # An upload whose body sends nothing for this long is answered 408, seconds.
    upload_idle_timeout_s: float = Field(default=30.0, gt=0)
    # Every request (line, headers, body) must arrive at REQUEST_MIN_RATE_KB_S or faster
    # after REQUEST_GRACE_S seconds, else 408; its line + headers may hold REQUEST_HEAD_MAX_KB
    # (431 beyond). docs/security.md gives the arithmetic.
    request_head_max_kb: float = Field(default=64, ge=1, le=1024)
    request_min_rate_kb_s: float = Field(default=16, gt=0)
    request_grace_s: float = Field(default=30.0, gt=0)
    # The largest body of any request but an upload (JSON, forms), KB (413 beyond).
    max_request_body_kb: float = Field(default=1024, ge=1)

    # Queue: images of batches processed at once by one in-process worker.
    run_worker_in_process: bool = True
    worker_concurrency: int | None = Field(default=None, ge=1)
    # A worker silent for this long is considered dead and its jobs are retried.
    stalled_job_after_s: float = Field(default=15.0, gt=0)
    # Files no row names (left by a killed agent) are removed once this old (seconds).
    orphan_file_grace_s: float = Field(default=900.0, ge=0)

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    # API worker processes on this host (`aoi-agent serve`, `run.py`), sharing the port.
    web_concurrency: int = Field(default=1, ge=1, le=64)
    public_base_url: str | None = None

    # Security (docs/security.md). auto: API keys required unless HOST is a loopback address.
    auth_mode: Literal["auto", "required", "off"] = "auto"
    # Signs download links; default: DATA_DIR/secret_key, made on first use.
    secret_key: str | None = None
    download_link_ttl_s: int = Field(default=86400, ge=1, le=366 * 86400)
    session_ttl_s: int = Field(default=12 * 3600, ge=60, le=366 * 86400)
    # Wrong API keys (header or sign-in form) allowed per client address in any 60 s; more
    # are answered 429 with Retry-After before any key check. 0: no limit. Per process.
    auth_failures_per_minute: int = Field(default=10, ge=0)
    # Requests per key (header or web session), in the `limits` syntax: `600/minute`,
    # `20/second`; over it, 429 with Retry-After. Unset: no quota. Per process.
    key_rate_limit: str | None = None
    # Where those counts live: `memory://` (each process its own) or a Redis server every
    # process shares, `async+redis://host:6379/0` (docs/security.md).
    throttle_storage_url: str = "memory://"
    # Origins allowed to call the API from their pages (CORS), comma-separated; default none.
    cors_origins: str = ""

    # Double-review sample (docs/review.md): this share (0-1) of boards whose review is
    # complete is queued, by a hash of img_unique_id, for a blind second review. 0: off.
    review_audit_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    # Reason codes a `real` or `false_call` verdict may carry (docs/review.md), comma-
    # separated, at most 9 (one key each): lowercase letters, digits, `_`, `-`, 1-32
    # characters. Empty: none. A list an admin stores (PUT /api/review/reasons) replaces it.
    review_reasons: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_REVIEW_REASONS)
    )

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_dir: Path | None = None

    # Retention (docs/retention.md): inspections older than this many days are deleted,
    # files and rows; unset: kept for ever. PASS: no defect found (or reviewed as pass);
    # DEFECT: every other finished inspection (defects found, or failed).
    retention_days_pass: float | None = Field(default=None, gt=0)
    retention_days_defect: float | None = Field(default=None, gt=0)
    # Report what retention would delete (in the log) without deleting anything.
    retention_dry_run: bool = False
    # When the retention job runs (cron, UTC), and finished queue jobs are kept this long.
    retention_cron: str = "*/15 * * * *"
    queue_job_retention_hours: int = Field(default=24, ge=1)

    # Hot folders (docs/ingestion.md): image files appearing here are inspected. Several
    # folders are separated by `;` (or the OS path separator). Empty: none watched.
    watch_dirs: Annotated[list[Path], NoDecode] = Field(default_factory=list)
    # Poll instead of waiting for OS events (SMB/NFS shares deliver none).
    watch_polling: bool = False
    # A file is taken once its size and mtime have not changed for this long.
    watch_settle_s: float = Field(default=2.0, gt=0)
    # Files complete within this long of the first one are inspected as one batch.
    watch_batch_window_s: float = Field(default=2.0, ge=0)
    # Board context from a hot-folder file's name (docs/boards.md): a regular expression
    # whose named groups are context fields, searched in the file name, e.g.
    # (?P<board_serial>[A-Z0-9]+)_(?P<side>top|bottom). Empty: none.
    watch_name_pattern: re.Pattern[str] | None = None

    @field_validator("watch_name_pattern", mode="before")
    @classmethod
    def _empty_pattern_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("watch_name_pattern")
    @classmethod
    def _check_name_pattern(cls, value: re.Pattern[str] | None) -> re.Pattern[str] | None:
        from app.models.context import check_name_pattern

        return None if value is None else check_name_pattern(value)

    # Golden boards (docs/golden.md): a folder of golden images (JPEG, PNG, TIFF, BMP; the
    # file name's stem is the golden id), indexed on first use; unset: only those added
    # through the API. A board whose best golden image correlates less than this (-1..1)
    # is shown without one.
    golden_dir: Path | None = None
    golden_min_match_score: float = Field(default=0.5, ge=-1, le=1)
    # Register each stored inspection with its golden board at once, in the background,
    # so the review station finds the registration ready (else: on the first view).
    golden_register_on_store: bool = True

    # IPC-CFX publisher (docs/cfx.md): off when CFX_BROKER_URL is unset. `amqp://` or
    # `amqps://user:pass@host:port`; the AMQP 1.0 target address; this agent's CFX handle.
    cfx_broker_url: str | None = None
    cfx_address: str = "/exchange/amq.topic/cfx"
    cfx_handle: str = "aoi-agent"
    cfx_heartbeat_s: float = Field(default=60.0, ge=1)
    # Back-off while the broker is down: first wait, doubled per failure up to the cap.
    cfx_retry_initial_s: float = Field(default=1.0, gt=0)
    cfx_retry_max_s: float = Field(default=30.0, gt=0)
    # Seconds to connect and to have one message settled by the broker.
    cfx_timeout_s: float = Field(default=10.0, gt=0)
    # Published outbox rows are removed once this old.
    cfx_keep_published_hours: float = Field(default=24.0, ge=0)

    # Signed webhooks (docs/webhooks.md): seconds for one delivery attempt (connect, send,
    # read the answer); hours a delivery is retried before it is parked; the back-off
    # between attempts (first wait, doubled per failure up to the cap, seconds); delivered
    # and parked deliveries (with their attempts) are deleted once this many days old.
    webhook_timeout_s: float = Field(default=10.0, gt=0, le=300)
    webhook_retry_hours: float = Field(default=24.0, gt=0)
    webhook_retry_initial_s: float = Field(default=5.0, gt=0)
    webhook_retry_max_s: float = Field(default=1800.0, gt=0)
    webhook_keep_days: float = Field(default=7.0, gt=0)
    # Seconds after a secret rotation during which deliveries are signed with the old
    # secret too (both signatures in `webhook-signature`); 0: the old one stops at once.
    webhook_secret_overlap_s: float = Field(default=86_400.0, ge=0, le=30 * 86_400)

    # SPC (docs/spc.md): shifts as NAME=HH:MM-HH:MM,... in local time of SPC_TIMEZONE (an
    # IANA name; days of the SPC charts are its days too); empty: per-day subgroups only.
    shifts: str = ""
    spc_timezone: str = "UTC"
    # Subgroups (days or shifts with boards) at the start of a chart that set its limits.
    spc_baseline_subgroups: int = Field(default=20, ge=2, le=1000)
    # The rules (comma-separated) that raise an alarm: Western Electric 1-4, and 5 the
    # p-chart's binomial CUSUM for a doubled defective rate (docs/spc.md).
    spc_rules: str = "1,2,3,4"
    # The CUSUM's decision interval h (natural-log likelihood-ratio units, rule 5).
    spc_cusum_h: float = Field(default=5.0, gt=0, le=1000)
    # When the alarm check records new and cleared excursions (cron, UTC; empty: never).
    spc_check_cron: str = "*/10 * * * *"
    # Reports mailed on REPORT_SCHEDULE (cron, UTC; empty: none) to REPORT_RECIPIENTS
    # (comma-separated) through SMTP_URL (smtp://user:pass@host:587 or smtps://...:465).
    report_schedule: str = ""
    report_recipients: str = ""
    report_sender: str = "aoi-agent@localhost"
    smtp_url: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_timeout_s: float = Field(default=30.0, gt=0)

    @field_validator("report_schedule", "spc_check_cron")
    @classmethod
    def _check_optional_cron(cls, value: str, info: ValidationInfo) -> str:
        if value.strip() and not croniter.is_valid(value):
            raise ValueError(
                f"{str(info.field_name).upper()} must be a cron line of 5 fields, e.g. 5 6 * * *"
            )
        return value.strip()

    @field_validator("smtp_url", mode="before")
    @classmethod
    def _check_smtp_url(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        if isinstance(value, str) and not value.startswith(("smtp://", "smtps://")):
            raise ValueError("SMTP_URL must be smtp://[user:password@]host[:port] or smtps://...")
        return value

    @field_validator("shifts", "spc_timezone")
    @classmethod
    def _check_spc_time(cls, value: str, info: ValidationInfo) -> str:
        check = parse_shifts if info.field_name == "shifts" else zone
        try:
            check(value)
        except ValueError as exc:
            raise ValueError(f"{str(info.field_name).upper()}: {exc}") from exc
        return value

    @field_validator("spc_rules")
    @classmethod
    def _check_spc_rules(cls, value: str) -> str:
        parts = [p.strip() for p in value.split(",") if p.strip()]
        if not parts or any(p not in ("1", "2", "3", "4", "5") for p in parts):
            raise ValueError(
                "SPC_RULES must list rules 1-5 (Western Electric 1-4, 5 the CUSUM), e.g. 1,2,3,4"
            )
        return value

    @field_validator("watch_dirs", mode="before")
    @classmethod
    def _split_watch_dirs(cls, value: object) -> object:
        if isinstance(value, str):
            parts = value.replace(os.pathsep, ";").split(";")
            return [Path(part.strip()) for part in parts if part.strip()]
        return value

    @field_validator("review_reasons", mode="before")
    @classmethod
    def _split_reasons(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("review_reasons")
    @classmethod
    def _check_reasons(cls, value: list[str]) -> list[str]:
        try:
            return check_reasons(value)
        except ValueError as exc:
            raise ValueError(f"REVIEW_REASONS: {exc}") from exc

    @field_validator(
        "segformer_service_urls",
        "segformer_service_max_concurrency",
        "shadow_service_urls",
        mode="before",
    )
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("retention_days_pass", "retention_days_defect", mode="before")
    @classmethod
    def _blank_days_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("key_rate_limit", mode="before")
    @classmethod
    def _check_key_rate_limit(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        if isinstance(value, str):
            try:
                parse_rate_limit(value)
            except ValueError as exc:
                raise ValueError(
                    f"KEY_RATE_LIMIT {value!r} is not a rate such as 600/minute or 20/second"
                ) from exc
        return value

    @field_validator("throttle_storage_url", mode="before")
    @classmethod
    def _check_throttle_storage_url(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return "memory://"
        if isinstance(value, str) and not value.startswith(THROTTLE_STORAGE_SCHEMES):
            raise ValueError(
                f"THROTTLE_STORAGE_URL must start with one of {', '.join(THROTTLE_STORAGE_SCHEMES)}"
            )
        return value

    @field_validator("golden_dir", mode="before")
    @classmethod
    def _blank_golden_dir_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator(
        "segformer_service_url", "database_url", "storage_url", "s3_endpoint_url", mode="before"
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.db_pool_min_size > self.db_pool_max_size:
            raise ValueError("DB_POOL_MIN_SIZE must not exceed DB_POOL_MAX_SIZE")
        if not croniter.is_valid(self.retention_cron):
            raise ValueError(
                "RETENTION_CRON must be a cron line of 5 fields (minute hour day month"
                " weekday), e.g. */15 * * * *"
            )
        if any(limit < 1 for limit in self.segformer_service_max_concurrency):
            raise ValueError("SEGFORMER_SERVICE_MAX_CONCURRENCY figures must be at least 1")
        if len(self.segformer_service_max_concurrency) > max(1, len(self.model_service_urls)):
            raise ValueError(
                "SEGFORMER_SERVICE_MAX_CONCURRENCY has more figures than there are model"
                " services in SEGFORMER_SERVICE_URLS"
            )
        if self.database_url is not None and not self.database_url.startswith("postgresql"):
            raise ValueError(
                "DATABASE_URL must be a PostgreSQL URL (postgresql://user:pass@host:5432/aoi_db);"
                " other databases are not supported"
            )
        if self.storage_url and "://" in self.storage_url:
            scheme = self.storage_url.split("://", 1)[0]
            bucket = self.storage_url.split("://", 1)[1].split("/", 1)[0]
            if scheme not in ("s3", "file") or (scheme == "s3" and not bucket):
                raise ValueError("STORAGE_URL must be a folder or s3://bucket/prefix")
        return self

    @property
    def uses_object_store(self) -> bool:
        """Whether STORAGE_URL names an S3 object store."""
        return bool(self.storage_url and self.storage_url.startswith("s3://"))

    @property
    def max_file_size_bytes(self) -> int:
        """The largest accepted image, in bytes."""
        return int(self.max_file_size_mb * 1024 * 1024)

    @property
    def model_service_max_answer_bytes(self) -> int:
        """MODEL_SERVICE_MAX_ANSWER_MB in bytes."""
        return int(self.model_service_max_answer_mb * 1024 * 1024)

    @property
    def min_free_disk_bytes(self) -> int:
        """Free space below which uploads are refused, bytes."""
        return int(self.min_free_disk_mb * 1024 * 1024)

    @property
    def resolved_data_dir(self) -> Path:
        """DATA_DIR as an absolute path."""
        return self.data_dir.expanduser().resolve()

    @property
    def resolved_upload_dir(self) -> Path:
        """Where input images are kept (absolute)."""
        return (self.upload_dir or self.resolved_data_dir / "uploads").expanduser().resolve()

    @property
    def resolved_result_dir(self) -> Path:
        """Where result images and analysis JSON are kept (absolute)."""
        return (self.result_dir or self.resolved_data_dir / "results").expanduser().resolve()

    @property
    def resolved_log_dir(self) -> Path:
        """Where app.log and error.log go (absolute)."""
        return (self.log_dir or self.resolved_data_dir / "logs").expanduser().resolve()

    @property
    def auth_required(self) -> bool:
        """Whether requests need an API key (or a web session, or a signed link)."""
        if self.auth_mode == "auto":
            return not is_loopback(self.host)
        return self.auth_mode == "required"

    @property
    def cors_origin_list(self) -> list[str]:
        """CORS_ORIGINS as a list, without trailing slashes."""
        return [o.strip().rstrip("/") for o in self.cors_origins.split(",") if o.strip()]

    @property
    def retention_enabled(self) -> bool:
        """Whether RETENTION_DAYS_PASS or RETENTION_DAYS_DEFECT is set."""
        return self.retention_days_pass is not None or self.retention_days_defect is not None

    @property
    def model_service_urls(self) -> list[str]:
        """The model services to use: SEGFORMER_SERVICE_URLS when set, else
        SEGFORMER_SERVICE_URL, else none (`run.py` then starts the reference service)."""
        if self.segformer_service_urls:
            return list(dict.fromkeys(self.segformer_service_urls))
        return [self.segformer_service_url] if self.segformer_service_url else []

    @property
    def shadow_urls(self) -> list[str]:
        """The shadow model services (SHADOW_SERVICE_URLS), each once, in order."""
        return list(dict.fromkeys(self.shadow_service_urls))

    @property
    def model_service_url_setting(self) -> str:
        """The name of the setting the model services' URLs come from, for messages that
        tell an operator what to check: SEGFORMER_SERVICE_URLS when it is set, else
        SEGFORMER_SERVICE_URL."""
        return "SEGFORMER_SERVICE_URLS" if self.segformer_service_urls else "SEGFORMER_SERVICE_URL"

    def model_service_limit(self, index: int) -> int:
        """Requests in flight at once to the `index`-th model service (0-based)."""
        limits = self.segformer_service_max_concurrency
        return limits[index] if index < len(limits) else self.segformer_max_concurrency

    @property
    def effective_worker_concurrency(self) -> int:
        """Images of batches in flight at once in one worker: WORKER_CONCURRENCY, else as
        many as the model services take together."""
        if self.worker_concurrency:
            return self.worker_concurrency
        count = max(1, len(self.model_service_urls))
        return sum(self.model_service_limit(i) for i in range(count))

    @property
    def spc_shifts(self) -> tuple[Shift, ...]:
        """SHIFTS parsed (empty when unset)."""
        return parse_shifts(self.shifts)

    @property
    def spc_zone(self) -> ZoneInfo:
        """SPC_TIMEZONE as a time zone."""
        return zone(self.spc_timezone)

    @property
    def report_recipient_list(self) -> list[str]:
        """REPORT_RECIPIENTS as a list of addresses."""
        return [a.strip() for a in self.report_recipients.split(",") if a.strip()]

    @property
    def spc_rule_set(self) -> frozenset[Rule]:
        """SPC_RULES as rules (Western Electric 1-4, 5 the p-chart's CUSUM)."""
        return frozenset(Rule(int(p)) for p in self.spc_rules.split(",") if p.strip())


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment and `.env`."""
    return Settings()
