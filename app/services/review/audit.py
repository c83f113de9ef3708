"""Reviewer figures (seconds per verdict, verdicts per hour, agreement) and the
double-review sample: which boards are audited, the audit queue and the blind second
verdicts."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import cast

from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import AgentError, ImageNotFound
from app.models.review import Verdict
from app.models.review_audit import (
    AuditBoard,
    AuditNext,
    AuditRegion,
    AuditVerdictIn,
    AuditVerdictOut,
    ReviewerAgreement,
    ReviewerFigures,
    ReviewerSpeed,
)
from app.services.database.queries import day_end, day_start
from app.services.history.dashboard import daily_range
from app.services.review.audit_repository import AuditRepository
from app.services.review.reasons import ReasonList
from app.services.review.repository import ReviewRepository
from app.services.review.service import RegionNotFound

IDLE_GAP_S = 300.0
"""A gap longer than this (5 minutes) between a reviewer's actions is a break, not time
spent on the verdict that follows: that verdict is left untimed."""

VERDICTS = ("real", "false_call", "unsure")


class AuditNotQueued(AgentError):
    """The board is not in the double-review sample."""

    status_code = 404
    error = "audit_not_queued"


class AuditNotAllowed(AgentError):
    """The reviewer gave first verdicts on the board, or another reviewer audits it."""

    status_code = 403
    error = "audit_not_allowed"


@dataclass(frozen=True)
class Agreement:
    """Agreement of two raters over n items: observed p_o, chance p_e and Cohen's kappa
    (p_o, p_e, kappa None when n is 0; kappa None when p_e is 1)."""

    n: int
    observed: float | None
    expected: float | None
    kappa: float | None


def cohen_kappa(pairs: Iterable[tuple[str, str, int]]) -> Agreement:
    """Cohen's kappa over (first rating, second rating, count) rows.

    κ = (p_o − p_e) / (1 − p_e), p_o the share of items rated the same, p_e = Σ_c
    p_first(c) · p_second(c) from each rater's marginal shares (J. Cohen, "A coefficient
    of agreement for nominal scales", Educ. Psychol. Meas. 20(1), 1960, 37-46).
    Undefined (None) when there is no item, or when p_e = 1 (both raters used the same
    single category: agreement cannot exceed chance).
    """
    first: Counter[str] = Counter()
    second: Counter[str] = Counter()
    n = same = 0
    for a, b, count in pairs:
        first[a] += count
        second[b] += count
        n += count
        same += count if a == b else 0
    if n == 0:
        return Agreement(0, None, None, None)
    observed = same / n
    expected = sum(first[c] * second[c] for c in first) / (n * n)
    kappa = None if expected >= 1 else (observed - expected) / (1 - expected)
    return Agreement(n, observed, expected, kappa)


def _agreement(
    a: Agreement, first: str | None = None, second: str | None = None
) -> ReviewerAgreement:
    return ReviewerAgreement(
        first_reviewer=first,
        second_reviewer=second,
        regions=a.n,
        observed_agreement=a.observed,
        expected_agreement=a.expected,
        kappa=a.kappa,
    )


class AuditService:
    """Reviewer figures and the audit workflow of one request (it only flushes)."""

    def __init__(
        self, session: AsyncSession, audit_rate: float = 0.0, reasons: Sequence[str] = ()
    ) -> None:
        self.audits = AuditRepository(session)
        self.reviews = ReviewRepository(session)
        self.audit_rate = audit_rate
        self.reasons = ReasonList(session, reasons)

    async def figures(
        self, start_date: date | None, end_date: date | None, viewer: str | None = None
    ) -> ReviewerFigures:
        """Per reviewer and per reviewer and UTC day of the verdicts given in the range
        (default: the last 30 days): verdicts, seconds per verdict (median, p90) and
        verdicts per hour; and Cohen's kappa of the boards queued for audit in the range,
        overall and per (first, second) reviewer pair. The kappa leaves out the boards
        whose first review is hidden from `viewer` (the reviewer reading: the boards they
        audit or may audit), or an auditor could read the first verdicts off its changes.

        Raises:
            BadDateRange: the start is after the end, or the range is over 731 days.
        """
        start, end, _ = daily_range(start_date, end_date)
        since, until = day_start(start), day_end(end)
        assert until is not None  # daily_range keeps the end below date.max
        speed = [
            _speed(row)
            for per_day in (False, True)
            for row in await self.audits.speed(since, until, IDLE_GAP_S, per_day)
        ]
        pairs = await self.audits.verdict_pairs(since, until, viewer)
        by_pair: dict[tuple[str, str], list[tuple[str, str, int]]] = {}
        for a, b, x, y, n in pairs:
            by_pair.setdefault((a, b), []).append((x, y, n))
        queued, done = await self.audits.audit_counts(since, until)
        reviewers = [s for s in speed if s.day is None]
        reviewers.sort(key=lambda s: (-s.verdicts, s.reviewer))
        return ReviewerFigures(
            start_date=start,
            end_date=end,
            idle_gap_s=IDLE_GAP_S,
            audit_rate=self.audit_rate,
            reviewers=reviewers,
            days=sorted((s for s in speed if s.day), key=lambda s: (s.day, s.reviewer)),
            agreement=_agreement(cohen_kappa((x, y, n) for _, _, x, y, n in pairs)),
            pairs=[_agreement(cohen_kappa(rows), a, b) for (a, b), rows in sorted(by_pair.items())],
            audits_queued=queued,
            audits_done=done,
        )

    async def next_board(
        self, reviewer: str, after: str | None, viewer_url: Callable[[str], str]
    ) -> AuditNext:
        """The oldest queued board `reviewer` may audit (not one they gave first verdicts
        on, not one another reviewer audits), other than `after`, and how many are open."""
        found, pending = await self.audits.next_audit(reviewer, after)
        if found is None and after is not None:
            found, pending = await self.audits.next_audit(reviewer, None)
        return AuditNext(
            img_unique_id=found,
            viewer_url=viewer_url(found) if found else None,
            pending=pending,
        )

    async def _check(self, img_unique_id: str, reviewer: str) -> None:
        if not await self.audits.is_queued(img_unique_id):
            raise AuditNotQueued(f"{img_unique_id} is not queued for a second review")
        if await self.audits.first_reviewed_by(img_unique_id, reviewer):
            raise AuditNotAllowed(
                f"{reviewer} gave first verdicts on {img_unique_id}: another reviewer audits it"
            )
        if (other := await self.audits.other_auditor(img_unique_id, reviewer)) is not None:
            raise AuditNotAllowed(f"{other} already audits {img_unique_id}")

    async def board(self, img_unique_id: str, reviewer: str) -> AuditBoard:
        """The board's regions with `reviewer`'s second verdicts; never the first ones.

        Raises:
            ImageNotFound: no such inspection result.
            AuditNotQueued: the board is not in the sample.
            AuditNotAllowed: `reviewer` gave first verdicts on it, or another audits it.
        """
        if not await self.reviews.image_exists(img_unique_id):
            raise ImageNotFound(f"no inspection result with id {img_unique_id}")
        await self._check(img_unique_id, reviewer)
        regions = await self.audits.board(img_unique_id)
        return AuditBoard(
            img_unique_id=img_unique_id,
            regions=[
                AuditRegion(region_unique_id=r, verdict=cast(Verdict | None, v), reason=why)
                for r, v, why in regions
            ],
            reviewed_regions=sum(v is not None for _, v, _ in regions),
        )

    async def set_verdict(
        self, region_unique_id: int, change: AuditVerdictIn, reviewer: str
    ) -> AuditVerdictOut:
        """Stores (or withdraws) `reviewer`'s second verdict on a region of an audited
        board; the first verdict is untouched.

        Raises:
            RegionNotFound: no such region (404).
            AuditNotQueued, AuditNotAllowed: as in `board`.
            UnknownReason: (422) the reason code is not in the reason list.
        """
        await self.reasons.check(change.reason)
        img_unique_id = await self.reviews.region_image(region_unique_id)
        if img_unique_id is None or not await self.reviews.lock_image(img_unique_id):
            raise RegionNotFound(f"no defect region with id {region_unique_id}")
        await self._check(img_unique_id, reviewer)
        if change.verdict is None:
            await self.audits.remove(region_unique_id)
        else:
            await self.audits.put(
                region_unique_id, img_unique_id, change.verdict, reviewer, change.reason
            )
        regions = await self.audits.board(img_unique_id)
        return AuditVerdictOut(
            region_unique_id=region_unique_id,
            img_unique_id=img_unique_id,
            verdict=change.verdict,
            reason=change.reason if change.verdict is not None else None,
            reviewer=reviewer,
            reviewed_regions=sum(v is not None for _, v, _ in regions),
            regions=len(regions),
        )


def _speed(
    row: tuple[str, date | None, int, int, float | None, float | None, float | None],
) -> ReviewerSpeed:
    reviewer, day, verdicts, timed, median, p90, total = row
    return ReviewerSpeed(
        reviewer=reviewer,
        day=day,
        verdicts=verdicts,
        timed_verdicts=timed,
        seconds_median=median,
        seconds_p90=p90,
        verdicts_per_hour=3600 * timed / total if total else None,
    )
