"""The SPC alarm record: one row per excursion (migration 20261207_0020, docs/spc.md)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Identity, SmallInteger, String, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql.elements import conv

from app.models.database import Base

EXCURSION_KEY = ("chart", "subgroup", "rule", "side", "class_name", "product", "line", "first_key")
"""The columns that name an excursion (its unique key)."""


class SpcAlarmRecord(Base):
    """One excursion of a control chart: which chart (`p`/`u`, per `day`/`shift`), rule
    (1-4), side (+1 above, -1 below), class ('' on a p-chart), product and line ('' until
    the board context exists), first and last flagged subgroup, when it was raised and
    cleared (null: still open)."""

    __tablename__ = "spc_alarms"
    __table_args__ = (UniqueConstraint(*EXCURSION_KEY, name=conv("uq_spc_alarms_excursion")),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    chart: Mapped[str] = mapped_column(String(1))
    subgroup: Mapped[str] = mapped_column(String(8))
    rule: Mapped[int] = mapped_column(SmallInteger)
    side: Mapped[int] = mapped_column(SmallInteger)
    class_name: Mapped[str] = mapped_column(String(128))
    product: Mapped[str] = mapped_column(String(128))
    line: Mapped[str] = mapped_column(String(128))
    first_key: Mapped[str] = mapped_column(String(32))
    last_key: Mapped[str] = mapped_column(String(32))
    raised_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    cleared_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
