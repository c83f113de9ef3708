"""The reason codes a `real` or `false_call` verdict may carry (docs/review.md).

The list is the admin's (`review_reasons`, PUT /api/review/reasons) while that table has
rows; with none, it is REVIEW_REASONS. Verdicts keep the code they were given when the
list changes later; only new verdicts are checked against the current list.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import AgentError
from app.models.database import ReviewReason as ReviewReasonRow
from app.models.review import ReviewReason, ReviewReasons


class UnknownReason(AgentError):
    """The verdict's reason code is not in the reason list."""

    status_code = 422
    error = "unknown_reason"

    def __init__(self, detail: str, reason: str) -> None:
        problem = {"type": "unknown_reason", "loc": ["body", "reason"], "msg": detail}
        super().__init__(detail, errors=[{**problem, "input": reason}])


class ReasonRepository:
    """The admin's reason list over one session."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def codes(self) -> list[str]:
        """The admin's codes in key order (empty: no admin list)."""
        stmt = select(ReviewReasonRow.code).order_by(ReviewReasonRow.position, ReviewReasonRow.code)
        return list((await self.session.execute(stmt)).scalars())

    async def replace(self, codes: Sequence[str], admin: str | None) -> None:
        """Replaces the admin's list with `codes` (in this order; empty: none)."""
        await self.session.execute(delete(ReviewReasonRow))
        self.session.add_all(
            ReviewReasonRow(code=c, position=i, set_by=admin) for i, c in enumerate(codes)
        )
        await self.session.flush()


def _answer(codes: Sequence[str], source: str) -> ReviewReasons:
    return ReviewReasons(
        reasons=[ReviewReason(code=c, key=f"Shift+{i + 1}") for i, c in enumerate(codes)],
        source="admin" if source == "admin" else "setting",
    )


class ReasonList:
    """The reason list of one request: the admin's, else `setting` (REVIEW_REASONS)."""

    def __init__(self, session: AsyncSession, setting: Sequence[str]) -> None:
        self.reasons = ReasonRepository(session)
        self.setting = list(setting)

    async def current(self) -> ReviewReasons:
        """The codes in key order (Shift+1 first) and where they come from."""
        stored = await self.reasons.codes()
        return _answer(stored, "admin") if stored else _answer(self.setting, "setting")

    async def replace(self, codes: Sequence[str], admin: str | None) -> ReviewReasons:
        """Stores the admin's list (empty: removes it, REVIEW_REASONS applies again) and
        answers the list now in force. `codes` are checked by the request schema."""
        await self.reasons.replace(codes, admin)
        return await self.current()

    async def check(self, reason: str | None) -> None:
        """Nothing when `reason` is None or in the current list.

        Raises:
            UnknownReason: (422) the code is not in the list.
        """
        if reason is None:
            return
        current = [r.code for r in (await self.current()).reasons]
        if reason not in current:
            known = ", ".join(current) or "none (the list is empty)"
            raise UnknownReason(
                f"reason {reason!r} is not in the reason list (GET /api/review/reasons): {known}",
                reason,
            )
