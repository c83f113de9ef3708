"""Mailed reports (app/services/reports/mail.py) through a real SMTP server on loopback
(aiosmtpd), attachments opened as a reader would (openpyxl, pypdf), and the schedule's
choice of report; boards come from the SPC service tests' database (inserted directly, 21
days of 40 boards in March 2026, 08:00 UTC)."""

from __future__ import annotations

import asyncio
import email
import email.policy
import io
import logging
import socket
import types
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from openpyxl import load_workbook
from pypdf import PdfReader

from app.config import Settings
from app.services.database.session import create_engine, create_session_factory, libpq_conninfo
from app.services.inspection.queue import MAINTENANCE_QUEUE, REPORT_TASK, create_queue
from app.services.reports.mail import ReportMailer, due_report, parse_smtp_url
from app.services.spc.shifts import parse_shifts, zone
from tests.services.spc.test_service import db

__all__ = ["db"]
RECIPIENTS = "qa@example.com, line-lead@example.com"


class Inbox:
    """aiosmtpd handler keeping every envelope it receives."""

    def __init__(self) -> None:
        self.envelopes: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=_free_port())
    controller.start()
    try:
        yield inbox, controller.port
    finally:
        controller.stop()


def _settings(db_url: str, smtp_port: int, **extra: Any) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=db_url,
        smtp_url=f"smtp://127.0.0.1:{smtp_port}",
        report_recipients=RECIPIENTS,
        **extra,
    )


async def _mail(settings: Settings, run: Any, **mailer_options: Any) -> bool:
    engine = create_engine(settings, settings.database_url or "")
    try:
        mailer = ReportMailer(settings, create_session_factory(engine), **mailer_options)
        return bool(await run(mailer))
    finally:
        await engine.dispose()


def test_scheduled_job_mails_yesterdays_report_with_both_files(
    db: str, smtp: tuple[Inbox, int]
) -> None:
    inbox, port = smtp
    settings = _settings(db, port, report_schedule="5 0 * * *")
    queue = create_queue(libpq_conninfo(db), 2, report_cron=settings.report_schedule)
    assert queue.tasks[REPORT_TASK].queue == MAINTENANCE_QUEUE
    assert REPORT_TASK in {name for name, _ in queue.periodic_registry.periodic_tasks}
    tick = datetime(2026, 3, 22, 0, 5, tzinfo=UTC).timestamp()

    async def run(mailer: ReportMailer) -> None:
        context = types.SimpleNamespace(additional_context={"report_mailer": mailer})
        await queue.tasks[REPORT_TASK].func(context, timestamp=int(tick))  # type: ignore[call-arg]

    asyncio.run(_mail(settings, run))
    [envelope] = inbox.envelopes
    assert envelope.rcpt_tos == ["qa@example.com", "line-lead@example.com"]
    message = email.message_from_bytes(envelope.content, policy=email.policy.default)
    assert message["Subject"] == "AOI report 2026-03-21"
    files = {
        part.get_filename(): part.get_payload(decode=True) for part in message.iter_attachments()
    }
    assert set(files) == {"aoi-report-2026-03-21.pdf", "aoi-report-2026-03-21.xlsx"}
    book = load_workbook(io.BytesIO(files["aoi-report-2026-03-21.xlsx"]))
    summary = {r[0]: r[1] for r in book["Summary"].iter_rows(min_row=2, values_only=True)}
    assert (summary["Boards inspected"], summary["Defective boards (≥ 1 region)"]) == (40, 30)
    assert summary["Yield"] == "25.0 %"
    assert summary["Open p-chart alarms"] == 1
    pdf = PdfReader(io.BytesIO(files["aoi-report-2026-03-21.pdf"]))
    text = " ".join(" ".join(p.extract_text() for p in pdf.pages).split())
    assert "Boards inspected 40" in text
    assert "Alarm (open): rule 1" in text


def test_an_unreachable_server_is_retried_logged_and_survived(
    db: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = _settings(db, _free_port())  # nothing listens there
    with caplog.at_level(logging.ERROR, logger="app.services.reports.mail"):
        sent = asyncio.run(
            _mail(
                settings,
                lambda m: m.send(date(2026, 3, 21), None),
                attempts=3,
                first_wait_s=0.01,
            )
        )
    assert sent is False
    assert "AOI report 2026-03-21 not mailed to 127.0.0.1 after 3 attempts" in caplog.text


def test_the_tick_sends_the_shift_or_day_that_ended_last() -> None:
    shifts = parse_shifts("A=06:00-14:00,B=14:00-22:00,C=22:00-06:00")
    berlin = zone("Europe/Berlin")
    # 14:05 in Berlin (CET): shift A of that day has just ended.
    assert due_report(datetime(2026, 3, 10, 13, 5, tzinfo=UTC), shifts, berlin) == (
        date(2026, 3, 10),
        "A",
    )
    # 06:30 in Berlin: the night shift C of the day before.
    assert due_report(datetime(2026, 3, 10, 5, 30, tzinfo=UTC), shifts, berlin) == (
        date(2026, 3, 9),
        "C",
    )
    assert due_report(datetime(2026, 3, 10, 0, 5, tzinfo=UTC), (), zone("UTC")) == (
        date(2026, 3, 9),
        None,
    )


def test_smtp_urls() -> None:
    tls = parse_smtp_url("smtps://anna:p%40ss@mail.example.com", starttls=True)
    assert (tls.port, tls.implicit_tls, tls.starttls, tls.password) == (465, True, False, "p@ss")
    plain = parse_smtp_url("smtp://mail.example.com:587", starttls=True)
    assert (plain.port, plain.starttls, plain.username) == (587, True, None)
    with pytest.raises(ValueError, match="SMTP_URL"):
        parse_smtp_url("http://mail.example.com", starttls=False)
