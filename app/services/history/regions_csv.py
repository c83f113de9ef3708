"""The regions export: every defect region matching the defect query's filters, as CSV.

Rows are read through a server-side cursor in chunks and written out one by one, so
memory stays constant however many regions match (docs/exports.md). Every cell passes
through `app.utils.spreadsheet` (no spreadsheet formula can hide in a file name or a
class name).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.services.history.repository import EXPORT_REGION_COLUMNS, DefectFilters, ImageRepository
from app.utils.spreadsheet import csv_line

# The region's verdict, its reason code and its image's disposition; empty while not
# reviewed (the reason: also when the verdict was given without one).
REVIEW_COLUMNS = ("verdict", "reason", "disposition")
REGION_CSV_COLUMNS = (*EXPORT_REGION_COLUMNS, *REVIEW_COLUMNS)
ROWS_PER_CHUNK = 1000
"""Rows fetched from the server-side cursor at a time (and joined into one write)."""


async def regions_csv(
    sessions: async_sessionmaker[AsyncSession], filters: DefectFilters
) -> AsyncIterator[bytes]:
    """The regions CSV as a stream of UTF-8 chunks: a header line, then one line per region
    (columns `REGION_CSV_COLUMNS`; pixels for geometry, ISO 8601 UTC timestamps).

    Opens its own session, held only while the stream runs (the request's session ends
    before a streamed body is sent).
    """
    yield csv_line(REGION_CSV_COLUMNS).encode("utf-8")
    async with sessions() as session, session.begin():
        lines: list[str] = []
        async for row in ImageRepository(session).stream_defects(filters, ROWS_PER_CHUNK):
            cells = [c.isoformat() if isinstance(c, datetime) else c for c in row]
            lines.append(csv_line(cells))
            if len(lines) >= ROWS_PER_CHUNK:
                yield "".join(lines).encode("utf-8")
                lines.clear()
        if lines:
            yield "".join(lines).encode("utf-8")
