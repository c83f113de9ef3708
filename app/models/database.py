"""SQLAlchemy ORM models.

`images`, `classes` and `regions` hold exactly the columns the customer's schema
names; what else the product needs (the upload ledger and batches) lives in
tables of its own. Column types are explained in `docs/database.md`.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Double,
    Enum,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    Uuid,
    func,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

IMG_UNIQUE_ID_LENGTH = 22  # 20260225_103045_ABC123
MODEL_TEXT_LENGTH = 128  # model name / version as the model service reports them
# What a waiting batch image waits for (`inspections.waiting_for`, `waiting_for` in the API).
WAITING_FOR = ("model_service", "storage")

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base whose constraints get stable names in migrations."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Image(Base):
    """One inspected image: its size, timing and the paths of its four files."""

    __tablename__ = "images"
    # The listing's order as one index: a keyset page is a range scan with no sort.
    __table_args__ = (Index("ix_images_timestamp_img_unique_id", "timestamp", "img_unique_id"),)

    img_unique_id: Mapped[str] = mapped_column(String(IMG_UNIQUE_ID_LENGTH), primary_key=True)
    image_height: Mapped[int] = mapped_column(Integer)
    image_width: Mapped[int] = mapped_column(Integer)
    processing_time_seconds: Mapped[float] = mapped_column(Double)
    timestamp: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    input_image_path: Mapped[str] = mapped_column(Text)
    result_image_1_path: Mapped[str | None] = mapped_column(Text)  # combined
    result_image_2_path: Mapped[str | None] = mapped_column(Text)  # mask
    result_image_3_path: Mapped[str | None] = mapped_column(Text)  # overlay

    classes: Mapped[list[DefectClass]] = relationship(
        back_populates="image", lazy="raise", cascade="all, delete-orphan", passive_deletes=True
    )


class DefectClass(Base):
    """One defect class found in one image, with its region count and total area."""

    __tablename__ = "classes"
    __table_args__ = (Index("ix_classes_class_name_img_unique_id", "class_name", "img_unique_id"),)

    class_unique_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    img_unique_id: Mapped[str] = mapped_column(
        ForeignKey("images.img_unique_id", ondelete="CASCADE"), index=True
    )
    class_id: Mapped[int] = mapped_column(Integer)
    class_name: Mapped[str] = mapped_column(String(128))
    total_regions: Mapped[int] = mapped_column(Integer)
    total_area_pixels: Mapped[int] = mapped_column(BigInteger)

    image: Mapped[Image] = relationship(back_populates="classes", lazy="raise")
    regions: Mapped[list[Region]] = relationship(
        back_populates="defect_class",
        lazy="raise",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="Region.region_id",
    )


class Region(Base):
    """One connected defect region: geometry in pixels, shape descriptors unitless."""

    __tablename__ = "regions"
    __table_args__ = (Index("ix_regions_area_pixels", "area_pixels"),)

    region_unique_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    class_unique_id: Mapped[int] = mapped_column(
        ForeignKey("classes.class_unique_id", ondelete="CASCADE"), index=True
    )
    img_unique_id: Mapped[str] = mapped_column(
        ForeignKey("images.img_unique_id", ondelete="CASCADE"), index=True
    )
    region_id: Mapped[int] = mapped_column(Integer)
    centroid_x: Mapped[float] = mapped_column(Double)
    centroid_y: Mapped[float] = mapped_column(Double)
    bbox_x: Mapped[int] = mapped_column(Integer)
    bbox_y: Mapped[int] = mapped_column(Integer)
    bbox_width: Mapped[int] = mapped_column(Integer)
    bbox_height: Mapped[int] = mapped_column(Integer)
    area_pixels: Mapped[int] = mapped_column(BigInteger)
    perimeter: Mapped[float] = mapped_column(Double)
    major_axis: Mapped[float] = mapped_column(Double)
    minor_axis: Mapped[float] = mapped_column(Double)
    circularity: Mapped[float] = mapped_column(Double)
    aspect_ratio: Mapped[float] = mapped_column(Double)

    defect_class: Mapped[DefectClass] = relationship(back_populates="regions", lazy="raise")


class InspectionStatus(enum.StrEnum):
    """Where an accepted image is in the pipeline."""

    PENDING = "pending"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Batch(Base):
    """A group of images uploaded together."""

    __tablename__ = "batches"

    batch_id: Mapped[str] = mapped_column(String(IMG_UNIQUE_ID_LENGTH + 2), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), index=True
    )
    total_images: Mapped[int] = mapped_column(Integer)
    rejected_files: Mapped[int] = mapped_column(Integer, default=0)


class Inspection(Base):
    """The upload ledger: one row per accepted image, written before inference.

    The row outlives a failed inference (status `failed`, input kept) so the
    image can be retried; on success it points at the `images` row of the same id.
    """

    __tablename__ = "inspections"
    __table_args__ = (
        Index("ix_inspections_status_created_at", "status", "created_at"),
        # The History search: a prefix of the file name or the id, any letter case
        # (migration 20261202_0008; `text_pattern_ops` lets LIKE 'abc%' use the index
        # whatever the database's collation).
        Index(
            "ix_inspections_original_filename_lower",
            text("lower(original_filename) text_pattern_ops"),
        ),
        Index("ix_inspections_img_unique_id_upper", text("upper(img_unique_id) text_pattern_ops")),
        CheckConstraint("waiting_for IN ('model_service', 'storage')", name="waiting_for"),
    )

    img_unique_id: Mapped[str] = mapped_column(String(IMG_UNIQUE_ID_LENGTH), primary_key=True)
    batch_id: Mapped[str | None] = mapped_column(
        ForeignKey("batches.batch_id", ondelete="CASCADE"), index=True
    )
    # Order of the file within its batch request (0-based); None for single uploads.
    batch_position: Mapped[int | None] = mapped_column(Integer)
    original_filename: Mapped[str] = mapped_column(Text)
    input_image_path: Mapped[str] = mapped_column(Text)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    media_type: Mapped[str] = mapped_column(String(32))
    status: Mapped[InspectionStatus] = mapped_column(
        Enum(
            InspectionStatus,
            name="inspection_status",
            values_callable=lambda enum_cls: [member.value for member in enum_cls],
        ),
        default=InspectionStatus.PENDING,
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    error_status_code: Mapped[int | None] = mapped_column(Integer)
    # Round trip to the model service and the whole pipeline, for the overhead figures.
    model_service_seconds: Mapped[float | None] = mapped_column(Double)
    total_seconds: Mapped[float | None] = mapped_column(Double)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The agent process running this inspection now; the recovery sweep fails a
    # `processing` row only when this process has stopped beating (or is unknown). No
    # foreign key: a missing `agent_processes` row means the same as a stopped process.
    owner_process_id: Mapped[str | None] = mapped_column(String(32), index=True)
    # A batch image waiting for the model service or the store (`waiting_for`, one of
    # WAITING_FOR; migration 20261207_0027): when it is tried next, and since when the
    # outage has been failing it (the automatic retries stop BATCH_RETRY_WINDOW_S after).
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    waiting_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    waiting_for: Mapped[str | None] = mapped_column(String(16))
    # Hex SHA-256 of the input's bytes, computed while they streamed in (null on rows
    # accepted before migration 20261122_0005); duplicates are found by it.
    input_sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    # The first earlier inspection of the same bytes when this one is a re-test of them.
    repeat_of: Mapped[str | None] = mapped_column(
        ForeignKey("inspections.img_unique_id", ondelete="SET NULL")
    )
    # Provenance of the result (migration 20261122_0006): the model service it came from,
    # the model name and version that service reported (null when it reports none), and
    # the agent's version.
    model_service_url: Mapped[str | None] = mapped_column(Text)
    model_name: Mapped[str | None] = mapped_column(String(MODEL_TEXT_LENGTH))
    model_version: Mapped[str | None] = mapped_column(String(MODEL_TEXT_LENGTH), index=True)
    agent_version: Mapped[str | None] = mapped_column(String(64))


class AgentProcess(Base):
    """One running agent or worker process, with its heartbeat."""

    __tablename__ = "agent_processes"

    process_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    hostname: Mapped[str] = mapped_column(Text)
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class FileSweep(Base):
    """The deployment's orphan-file sweep (one row, `name` = `orphan_files`): when the last
    one started and how far back it made sure, so that one process sweeps per interval
    (`app.services.inspection.orphans`). Times are the database's clock."""

    __tablename__ = "file_sweeps"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    # The last sweep's start, also of one that failed (so a failing store is not listed
    # again at once by the next process).
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # The cut-off of the last completed sweep: objects last changed before it were checked.
    # Null: the next sweep lists the whole store.
    horizon: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The start of the last completed full listing.
    full_started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ApiKey(Base):
    """An API key: its name, scope and a salted scrypt hash; the key itself is never kept.

    `prefix` is the key's visible start (`aoi_` + 8 characters), shown in listings so a
    person can tell which key is which, and used to find the row a presented key claims.
    `key_check` is the first 8 hex digits (32 bits) of the key's SHA-256: a wrong key that
    reuses a real prefix is refused by it in microseconds, before any scrypt (NULL for keys
    made before it existed, which go straight to scrypt).
    """

    __tablename__ = "api_keys"
    __table_args__ = (CheckConstraint("scope IN ('read', 'write', 'admin')", name="scope"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(Text)
    scope: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    key_check: Mapped[str | None] = mapped_column(String(8))


class WebSession(Base):
    """A web-UI session, opened by signing in with an API key.

    The cookie carries a random token; only its SHA-256 is stored. A session is valid until
    `expires_at` unless `ended_at` is set (signed out, or its key revoked); rows past
    `expires_at` are deleted when someone signs in.
    """

    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    token_sha256: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    key_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("api_keys.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    last_seen_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class IdempotencyKey(Base):
    """The first answer to a request sent with an `Idempotency-Key` header, kept 24 h.

    `state` is `processing` while the first request runs (a lease: a row whose
    `lease_until` has passed was left by a dead agent and may be taken over) and
    `done` once its answer is stored.
    """

    __tablename__ = "idempotency_keys"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    # SHA-256 over the endpoint, its options and every file's name and SHA-256.
    request_digest: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    response_status: Mapped[int | None] = mapped_column(Integer)
    # The JSON body exactly as first sent (bytes, so a replay is byte for byte the same).
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary)
    lease_until: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


VERDICTS = ("real", "false_call", "unsure")
"""A reviewer's verdict on one region: a real defect, a false call of the model, unsure."""
DISPOSITIONS = ("pass", "repair", "scrap")
"""What happens to a reviewed board."""
REVIEWER_LENGTH = 64
REASON_LENGTH = 32  # app.config.REASON_PATTERN


class RegionVerdict(Base):
    """The current verdict on one region (migration 20261202_0007); its history is in
    `review_events`. `img_unique_id` repeats the region's image so one image's verdicts,
    and the review queue, are read through one index."""

    __tablename__ = "region_verdicts"
    __table_args__ = (
        CheckConstraint("verdict IN ('real', 'false_call', 'unsure')", name="verdict"),
    )

    region_unique_id: Mapped[int] = mapped_column(
        ForeignKey("regions.region_unique_id", ondelete="CASCADE"), primary_key=True
    )
    img_unique_id: Mapped[str] = mapped_column(
        ForeignKey("images.img_unique_id", ondelete="CASCADE"), index=True
    )
    verdict: Mapped[str] = mapped_column(String(16))
    # A reason code (REVIEW_REASONS or the admin's list) of a real or false_call verdict.
    reason: Mapped[str | None] = mapped_column(String(REASON_LENGTH))
    reviewer: Mapped[str] = mapped_column(String(REVIEWER_LENGTH))
    comment: Mapped[str | None] = mapped_column(Text)
    reviewed_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), index=True
    )


class ImageDisposition(Base):
    """The current disposition of one inspected board (pass, repair, scrap)."""

    __tablename__ = "image_dispositions"
    __table_args__ = (
        CheckConstraint("disposition IN ('pass', 'repair', 'scrap')", name="disposition"),
    )

    img_unique_id: Mapped[str] = mapped_column(
        ForeignKey("images.img_unique_id", ondelete="CASCADE"), primary_key=True
    )
    disposition: Mapped[str] = mapped_column(String(16))
    reviewer: Mapped[str] = mapped_column(String(REVIEWER_LENGTH))
    comment: Mapped[str | None] = mapped_column(Text)
    reviewed_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), index=True
    )


class ReviewBoard(Base):
    """Where one board's review stands, kept by triggers on `region_verdicts` and
    `image_dispositions` (migration 20261207_0016): a row per board with a verdict or a
    disposition, with its image's `timestamp` so that each review-state filter is a walk
    of one partial index in the listing's order. Read it, never write it."""

    __tablename__ = "review_boards"
    __table_args__ = (
        Index(
            "ix_review_boards_reviewed",
            "timestamp",
            "img_unique_id",
            postgresql_where=text("regions > 0 AND reviewed >= regions"),
        ),
        Index(
            "ix_review_boards_false_calls",
            "timestamp",
            "img_unique_id",
            postgresql_where=text("false_calls > 0"),
        ),
        Index(
            "ix_review_boards_disposition",
            "disposition",
            "timestamp",
            "img_unique_id",
            postgresql_where=text("disposition IS NOT NULL"),
        ),
    )

    img_unique_id: Mapped[str] = mapped_column(
        ForeignKey("images.img_unique_id", ondelete="CASCADE"), primary_key=True
    )
    timestamp: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    regions: Mapped[int] = mapped_column(Integer)
    reviewed: Mapped[int] = mapped_column(Integer, server_default="0")
    false_calls: Mapped[int] = mapped_column(Integer, server_default="0")
    disposition: Mapped[str | None] = mapped_column(String(16))


class ReviewEvent(Base):
    """One change of a verdict or a disposition, append-only: who set what, when, and what
    it was before (`value` null: the verdict or disposition was withdrawn, e.g. by undo)."""

    __tablename__ = "review_events"
    __table_args__ = (
        CheckConstraint("kind IN ('verdict', 'disposition')", name="kind"),
        Index("ix_review_events_img_unique_id_id", "img_unique_id", "id"),
        # The reviewer figures (migration 20261207_0021): verdict events of a date range.
        Index("ix_review_events_created_at_reviewer", "created_at", "reviewer"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    img_unique_id: Mapped[str] = mapped_column(
        ForeignKey("images.img_unique_id", ondelete="CASCADE")
    )
    # No foreign key: the history outlives nothing but its image (cascade above).
    region_unique_id: Mapped[int | None] = mapped_column(BigInteger)
    # A verdict on a region only a shadow/replay answer has (`answer_regions`; migration
    # 20261208_0029): `region_unique_id` is then null.
    answer_region_id: Mapped[int | None] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(16))
    value: Mapped[str | None] = mapped_column(String(16))
    previous: Mapped[str | None] = mapped_column(String(16))
    # The reason code sent with a verdict (migration 20261207_0023); null for the rest.
    reason: Mapped[str | None] = mapped_column(String(REASON_LENGTH))
    reviewer: Mapped[str] = mapped_column(String(REVIEWER_LENGTH))
    comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


GOLDEN_ID_LENGTH = 128


class GoldenBoard(Base):
    """One golden (defect-free) board image of the agent's library (migration
    20261207_0015): added through the API (kept in the storage under `golden/`) or found in
    GOLDEN_DIR (`source` `folder`, `image_path` the file's absolute path). `product` and
    `side` are null until the line sends its board context; `version` changes whenever the
    image does (SHA-256 of the bytes, or size and mtime of a folder file)."""

    __tablename__ = "golden_boards"
    __table_args__ = (
        CheckConstraint("source IN ('api', 'folder')", name="source"),
        Index("ix_golden_boards_image_height_image_width", "image_height", "image_width"),
    )

    golden_id: Mapped[str] = mapped_column(String(GOLDEN_ID_LENGTH), primary_key=True)
    product: Mapped[str | None] = mapped_column(String(128), index=True)
    side: Mapped[str | None] = mapped_column(String(32))
    file_name: Mapped[str] = mapped_column(Text, index=True)
    image_path: Mapped[str] = mapped_column(Text)
    media_type: Mapped[str] = mapped_column(String(32))
    image_width: Mapped[int] = mapped_column(Integer)
    image_height: Mapped[int] = mapped_column(Integer)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    version: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class GoldenRegistration(Base):
    """The golden board of one stored inspection and where it lies in the image, computed
    once and kept (migration 20261207_0015). `golden_id` null: no golden board matched (kept
    too, so the search is not repeated; cleared whenever the library gains an image)."""

    __tablename__ = "golden_registrations"
    __table_args__ = (CheckConstraint("method IN ('model', 'agent', 'none')", name="method"),)

    img_unique_id: Mapped[str] = mapped_column(
        ForeignKey("images.img_unique_id", ondelete="CASCADE"), primary_key=True
    )
    golden_id: Mapped[str | None] = mapped_column(
        ForeignKey("golden_boards.golden_id", ondelete="CASCADE"), index=True
    )
    # Golden pixel (x, y) lies at (x + dx, y + dy) in the inspected image, pixels.
    dx: Mapped[float | None] = mapped_column(Double)
    dy: Mapped[float | None] = mapped_column(Double)
    score: Mapped[float | None] = mapped_column(Double)
    # `model`: the model service's template and offset; `agent`: the agent's own phase
    # correlation; `none`: no golden board.
    method: Mapped[str] = mapped_column(String(8))
    registered_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class ReviewAudit(Base):
    """A board sampled for a second, blind review (REVIEW_AUDIT_RATE, migration
    20261207_0021) when its first review became complete."""

    __tablename__ = "review_audits"

    img_unique_id: Mapped[str] = mapped_column(
        ForeignKey("images.img_unique_id", ondelete="CASCADE"), primary_key=True
    )
    queued_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), index=True
    )


CONTEXT_TEXT_COLUMN_LENGTH = 64  # app.models.context.CONTEXT_TEXT_LENGTH


class BoardContext(Base):
    """The board context of one inspection (migration 20261207_0018): serial, panel,
    product, line, side, lot... as sent with the upload (`app.models.context`). Absent
    when none was sent; deleted with its ledger row. The PRD's tables are untouched."""

    __tablename__ = "inspection_contexts"
    __table_args__ = (CheckConstraint("side IN ('top', 'bottom')", name="side"),)

    img_unique_id: Mapped[str] = mapped_column(
        ForeignKey("inspections.img_unique_id", ondelete="CASCADE"), primary_key=True
    )
    board_serial: Mapped[str | None] = mapped_column(String(CONTEXT_TEXT_COLUMN_LENGTH), index=True)
    panel_id: Mapped[str | None] = mapped_column(String(CONTEXT_TEXT_COLUMN_LENGTH))
    panel_position: Mapped[int | None] = mapped_column(Integer)
    product: Mapped[str | None] = mapped_column(String(CONTEXT_TEXT_COLUMN_LENGTH), index=True)
    recipe_revision: Mapped[str | None] = mapped_column(String(CONTEXT_TEXT_COLUMN_LENGTH))
    line: Mapped[str | None] = mapped_column(String(CONTEXT_TEXT_COLUMN_LENGTH), index=True)
    station: Mapped[str | None] = mapped_column(String(CONTEXT_TEXT_COLUMN_LENGTH))
    # The conveyor lane, from 1 (migration 20261208_0030).
    lane: Mapped[int | None] = mapped_column(Integer)
    side: Mapped[str | None] = mapped_column(String(8))
    lot: Mapped[str | None] = mapped_column(String(CONTEXT_TEXT_COLUMN_LENGTH), index=True)


class OutboxMessage(Base):
    """A message to an external system, written in the transaction of the change it
    reports and published later, in `id` order per `sink` (docs/cfx.md)."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_pending", "sink", "id", postgresql_where=text("published_at IS NULL")),
        Index("ix_outbox_ordering_key", "ordering_key", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    # Where it goes: `cfx` (the IPC-CFX broker); webhooks get their own sinks.
    sink: Mapped[str] = mapped_column(String(32))
    # The board: its serial when known, else the inspection's img_unique_id.
    ordering_key: Mapped[str] = mapped_column(String(128))
    message_name: Mapped[str] = mapped_column(String(128))
    unique_id: Mapped[uuid.UUID] = mapped_column(Uuid, unique=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)


class AuditVerdict(Base):
    """The second reviewer's verdict on a region of an audited board, kept apart from
    `region_verdicts` so it never replaces the first verdict."""

    __tablename__ = "audit_verdicts"
    __table_args__ = (
        CheckConstraint("verdict IN ('real', 'false_call', 'unsure')", name="verdict"),
    )

    region_unique_id: Mapped[int] = mapped_column(
        ForeignKey("regions.region_unique_id", ondelete="CASCADE"), primary_key=True
    )
    img_unique_id: Mapped[str] = mapped_column(
        ForeignKey("review_audits.img_unique_id", ondelete="CASCADE"), index=True
    )
    verdict: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(REASON_LENGTH))
    reviewer: Mapped[str] = mapped_column(String(REVIEWER_LENGTH))
    reviewed_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class ReviewReason(Base):
    """One reason code of the admin's list (PUT /api/review/reasons, migration
    20261207_0023), in `position` order. While the table has rows they are the list;
    empty, REVIEW_REASONS is."""

    __tablename__ = "review_reasons"

    code: Mapped[str] = mapped_column(String(REASON_LENGTH), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    set_by: Mapped[str | None] = mapped_column(String(REVIEWER_LENGTH))
    set_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


ANSWER_ROLES = ("shadow", "replay")
"""Why a model answer was asked for: a sampled shadow run or a replay of stored inputs."""
ANSWER_STATUSES = ("succeeded", "failed")


class ModelAnswer(Base):
    """One answer of a model service that is not the primary one (migration
    20261207_0024): a shadow run or a replay of a stored input. Never read by the PRD's
    tables, the exports or the line messages; `app.services.models` writes it.

    `analysis` is the analysis JSON as received (validated and bounded like a primary
    answer); the PNG keys lie under the store's `answers/` prefix, never under `results/`.
    A `failed` answer has `error` and no analysis or files."""

    __tablename__ = "model_answers"
    __table_args__ = (
        CheckConstraint("role IN ('shadow', 'replay')", name="role"),
        CheckConstraint("status IN ('succeeded', 'failed')", name="status"),
        Index("ix_model_answers_model_version_img_unique_id", "model_version", "img_unique_id"),
    )

    answer_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    img_unique_id: Mapped[str] = mapped_column(
        ForeignKey("images.img_unique_id", ondelete="CASCADE"), index=True
    )
    role: Mapped[str] = mapped_column(String(16))
    model_service_url: Mapped[str] = mapped_column(Text)
    model_name: Mapped[str | None] = mapped_column(String(MODEL_TEXT_LENGTH))
    model_version: Mapped[str | None] = mapped_column(String(MODEL_TEXT_LENGTH))
    status: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    # The whole round trip to the model service, retries included, seconds.
    model_service_seconds: Mapped[float | None] = mapped_column(Double)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    analysis: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    mask_path: Mapped[str | None] = mapped_column(Text)
    overlay_path: Mapped[str | None] = mapped_column(Text)
    combined_path: Mapped[str | None] = mapped_column(Text)
    # Counted when stored (null for a failed answer): its regions, those matched to a
    # primary region, and the primary answer's regions. A primary result never changes,
    # so these tell at once whether the two answers disagree on the image.
    region_count: Mapped[int | None] = mapped_column(Integer)
    matched_count: Mapped[int | None] = mapped_column(Integer)
    primary_region_count: Mapped[int | None] = mapped_column(Integer)
    # Also counted when stored (migration 20261208_0028): its unmatched regions that overlap
    # a same-class primary region, and the primary regions matching none of its regions
    # but overlapping one ("same defect, different extent"; docs/models.md).
    overlapping_count: Mapped[int | None] = mapped_column(Integer)
    primary_overlapping_count: Mapped[int | None] = mapped_column(Integer)


class AnswerRegion(Base):
    """One region of a model answer, and the primary region it matches (same defect
    class, mask IoU at least MODEL_MATCH_MIN_IOU; docs/models.md), if any. Geometry in
    pixels, as the model service reported it."""

    __tablename__ = "answer_regions"
    __table_args__ = (
        CheckConstraint("verdict IN ('real', 'false_call', 'unsure')", name="verdict"),
    )

    answer_region_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    answer_id: Mapped[int] = mapped_column(
        ForeignKey("model_answers.answer_id", ondelete="CASCADE"), index=True
    )
    region_id: Mapped[int] = mapped_column(Integer)
    class_name: Mapped[str] = mapped_column(String(128))
    bbox_x: Mapped[int] = mapped_column(Integer)
    bbox_y: Mapped[int] = mapped_column(Integer)
    bbox_width: Mapped[int] = mapped_column(Integer)
    bbox_height: Mapped[int] = mapped_column(Integer)
    area_pixels: Mapped[int] = mapped_column(BigInteger)
    centroid_x: Mapped[float] = mapped_column(Double)
    centroid_y: Mapped[float] = mapped_column(Double)
    confidence: Mapped[float | None] = mapped_column(Double)
    matched_region_unique_id: Mapped[int | None] = mapped_column(
        ForeignKey("regions.region_unique_id", ondelete="SET NULL"), index=True
    )
    match_iou: Mapped[float | None] = mapped_column(Double)
    # Unmatched, but overlapping this primary region of the same class (the highest IoU):
    # the same defect outlined differently (migration 20261208_0028; docs/models.md).
    overlap_region_unique_id: Mapped[int | None] = mapped_column(
        ForeignKey("regions.region_unique_id", ondelete="SET NULL"), index=True
    )
    # A reviewer's verdict on a region the primary answer does not have (unmatched): the
    # primary regions' verdicts stay in `region_verdicts`, and a matched region takes its
    # primary region's verdict (docs/models.md).
    verdict: Mapped[str | None] = mapped_column(String(16))
    reviewer: Mapped[str | None] = mapped_column(String(REVIEWER_LENGTH))
    reviewed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The verdict's reason code (migration 20261208_0029), as `region_verdicts.reason`.
    reason: Mapped[str | None] = mapped_column(String(REASON_LENGTH))


class PrimaryOverlap(Base):
    """A primary region that matches no region of a stored answer but overlaps one of the
    same class (migration 20261208_0028): for that answer's comparison it is neither a
    miss of the answer's model nor a call the primary alone has (docs/models.md)."""

    __tablename__ = "primary_overlaps"

    answer_id: Mapped[int] = mapped_column(
        ForeignKey("model_answers.answer_id", ondelete="CASCADE"), primary_key=True
    )
    region_unique_id: Mapped[int] = mapped_column(
        ForeignKey("regions.region_unique_id", ondelete="CASCADE"), primary_key=True, index=True
    )


class CompareCount(Base):
    """The comparison's counts of one answer on one image, per defect class (migration
    20261208_0028): `answer_id` 0 is the primary answer, else a stored (shadow/replay)
    answer. Kept by triggers on `classes`, `region_verdicts`, `answer_regions` and
    `primary_overlaps`, so a comparison sums a few rows per image instead of joining
    every region with its verdict. Read it, never write it.

    `calls`, `real`, `false_call`, `unsure`: the answer's regions of the class and their
    verdicts (a matched region's verdict is its primary region's). For a stored answer,
    against the primary answer of the image: `matched` (and of them judged real),
    `overlapping` (unmatched regions overlapping a same-class primary region, and of them
    judged real), `primary_overlapping` (the primary regions overlapping one of its
    regions without a match, and of them judged real)."""

    __tablename__ = "compare_counts"

    img_unique_id: Mapped[str] = mapped_column(
        ForeignKey("images.img_unique_id", ondelete="CASCADE"), primary_key=True
    )
    answer_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    class_name: Mapped[str] = mapped_column(String(128), primary_key=True)
    calls: Mapped[int] = mapped_column(Integer, server_default="0")
    real: Mapped[int] = mapped_column(Integer, server_default="0")
    false_call: Mapped[int] = mapped_column(Integer, server_default="0")
    unsure: Mapped[int] = mapped_column(Integer, server_default="0")
    matched: Mapped[int] = mapped_column(Integer, server_default="0")
    matched_real: Mapped[int] = mapped_column(Integer, server_default="0")
    overlapping: Mapped[int] = mapped_column(Integer, server_default="0")
    overlapping_real: Mapped[int] = mapped_column(Integer, server_default="0")
    primary_overlapping: Mapped[int] = mapped_column(Integer, server_default="0")
    primary_overlapping_real: Mapped[int] = mapped_column(Integer, server_default="0")
