"""Which boards' first review a reader may not see: the blind second review (docs/review.md,
"Double review").

A board's first verdicts, reasons and disposition are hidden from a reviewer when the
board is in the double-review sample (`review_audits`), the reviewer gave none of its
first verdicts, and nobody else gives its second verdicts: the reviewer audits it, or may
still become its auditor. For such a reader every listing, filter, export and figure
treats the board as unreviewed and undecided.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, exists
from sqlalchemy.orm import aliased

from app.models.database import AuditVerdict, RegionVerdict, ReviewAudit


def blind_condition(img_unique_id: Any, reviewer: str) -> ColumnElement[bool]:
    """A condition, true when the board `img_unique_id` (the outer query's image id
    column) must not show its first review to `reviewer`.

    The tables are aliased, so the outer query may join `region_verdicts`,
    `audit_verdicts` or `review_audits` itself without the subquery correlating to them.
    One primary-key probe of `review_audits` per board; the rest runs only for sampled
    boards (a few per cent), through the `img_unique_id` indexes of both verdict tables.
    """
    audit = aliased(ReviewAudit)
    first = aliased(RegionVerdict)
    second = aliased(AuditVerdict)
    # The inner subqueries name the audit row's id, not `img_unique_id`: SQLAlchemy
    # correlates a subquery to its immediately enclosing SELECT only, and an outer
    # column two levels up would be added to the inner FROM (a cross join).
    return exists().where(
        audit.img_unique_id == img_unique_id,
        ~exists().where(first.img_unique_id == audit.img_unique_id, first.reviewer == reviewer),
        ~exists().where(second.img_unique_id == audit.img_unique_id, second.reviewer != reviewer),
    )


def seen_by(img_unique_id: Any, reviewer: str | None) -> list[ColumnElement[bool]]:
    """Conditions keeping only the boards whose first review `reviewer` may see (none
    when the reader is unknown: nothing is hidden from an anonymous reader)."""
    return [] if reviewer is None else [~blind_condition(img_unique_id, reviewer)]
