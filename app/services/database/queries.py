"""Query helpers shared by the domain repositories: counts, day ranges, the driver connection."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import psycopg
from sqlalchemy import (
    ColumnElement,
    Select,
    func,
    select,
    text,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

REVIEW_STATES = ("unreviewed", "reviewed", "has_false_calls")


_CLASS_NAME_SPELLINGS = text(
    """
    WITH RECURSIVE names(class_name) AS (
        (SELECT class_name FROM classes ORDER BY class_name LIMIT 1)
        UNION ALL
        SELECT (SELECT c.class_name FROM classes c WHERE c.class_name > n.class_name
                ORDER BY c.class_name LIMIT 1)
        FROM names n WHERE n.class_name IS NOT NULL
    )
    SELECT class_name FROM names
    WHERE class_name IS NOT NULL AND lower(class_name) = lower(:name)
    """
)


async def class_name_spellings(session: AsyncSession, name: str) -> list[str]:
    """The stored spellings of defect class `name` in any letter case (`pi_particle` gives
    `["PI_Particle"]`); empty when no stored class has that name.

    Filters then compare `class_name IN (spellings)`, which uses the class_name index;
    `lower(class_name) = lower(name)` could not (a page of /query/defects on 10,000 images:
    70 ms instead of 0.4 ms). The distinct names are walked through that index one step
    per name ("loose index scan", PostgreSQL wiki): about 0.05 ms.
    """
    rows = await session.execute(_CLASS_NAME_SPELLINGS, {"name": name})
    return list(rows.scalars())


TOTAL_EXACT_UP_TO = 10_000


async def planner_rows(session: AsyncSession, stmt: Select[Any]) -> int:
    """PostgreSQL's estimate of the rows `stmt` returns (`EXPLAIN`, no execution; the
    statistics are ANALYZE's, kept by autovacuum), as the PostgreSQL wiki's
    "count estimate" does."""
    connection = await session.connection()
    compiled = stmt.compile(dialect=connection.dialect, compile_kwargs={"render_postcompile": True})
    result = await connection.exec_driver_sql(
        "EXPLAIN (FORMAT JSON) " + str(compiled), compiled.params
    )
    plan = result.scalar_one()
    return int(plan[0]["Plan"]["Plan Rows"])


async def bounded_count(
    session: AsyncSession, rows: Select[Any], up_to: int | None = None
) -> tuple[int, bool]:
    """How many rows `rows` selects, and whether that number is exact.

    Counts at most `up_to` (default TOTAL_EXACT_UP_TO) + 1 rows (in `rows`' order, if it
    has one); past that, answers the planner's estimate (never less than `up_to` + 1,
    which is known) with False.
    """
    up_to = TOTAL_EXACT_UP_TO if up_to is None else up_to
    capped = select(func.count()).select_from(rows.limit(up_to + 1).subquery())
    counted = int((await session.execute(capped)).scalar_one())
    if counted <= up_to:
        return counted, True
    return max(await planner_rows(session, rows.order_by(None)), up_to + 1), False


def rollup_day_range(day: Any, start: date | None, end: date | None) -> list[ColumnElement[bool]]:
    """WHERE conditions keeping rollup rows whose UTC `day` is in [start, end]."""
    conditions: list[ColumnElement[bool]] = []
    if start:
        conditions.append(day >= start)
    if end:
        conditions.append(day <= end)
    return conditions


def day_start(day: date) -> datetime:
    """Midnight UTC at the start of `day`."""
    return datetime.combine(day, time.min, tzinfo=UTC)


def day_end(day: date) -> datetime | None:
    """Midnight UTC after `day` (an exclusive upper bound), or None after 9999-12-31,
    the last day Python's `date` has (then nothing is later: no bound is needed)."""
    return None if day == date.max else day_start(day + timedelta(days=1))


async def driver_connection(session: AsyncSession) -> psycopg.AsyncConnection[Any]:
    """The psycopg connection under `session`'s transaction.

    The write path of every inspection (ledger row, image, classes, regions) sends its
    statements through it directly: the same transaction, without SQLAlchemy's statement
    compilation, cache-key and greenlet hand-offs, which cost about 0.5 ms of CPU per
    statement (docs/performance.md). Statements sent here are plain SQL with psycopg
    parameters; values must be plain Python (an enum as its `.value`). Send them inside
    `sqlalchemy_errors`, so that callers see the errors the session would raise.
    """
    connection = await (await session.connection()).get_raw_connection()
    return connection.driver_connection  # type: ignore[return-value]


@contextlib.contextmanager
def sqlalchemy_errors(statement: str) -> Iterator[None]:
    """Raise psycopg's errors as SQLAlchemy's (`DBAPIError.instance`: a unique violation
    as `IntegrityError`, a lost server as `OperationalError`...), as the session does for
    its own statements: the app's 503 for an unreachable database, the duplicate-store
    path and the hot folder's retry all catch SQLAlchemy's classes.

    Raises:
        sqlalchemy.exc.DBAPIError (a subclass): what psycopg raised, as `orig`.
    """
    try:
        yield
    except psycopg.Error as exc:
        raise DBAPIError.instance(statement, None, exc, psycopg.Error) from exc
