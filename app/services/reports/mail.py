"""Reports by mail: which report a schedule tick is due for, and sending it through SMTP.

SMTP_URL is `smtp://user:password@host:587` (plain, or STARTTLS with SMTP_STARTTLS=true)
or `smtps://user:password@host:465` (TLS from the start); the user and password are
optional. The standard library's smtplib runs in a worker thread; a failed send is tried
again (tenacity, exponential back-off) and, when every attempt fails, logged: a mail
outage never stops the agent or its queue.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo

from fastapi.concurrency import run_in_threadpool
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from app.config import Settings
from app.services.reports.content import Report, build_report
from app.services.reports.render import render, summary_rows
from app.services.spc.shifts import Shift, shift_window

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SmtpServer:
    """Where and how to send: host, port, TLS from the start (`smtps`), STARTTLS, login."""

    host: str
    port: int
    implicit_tls: bool
    starttls: bool
    username: str | None
    password: str | None


def parse_smtp_url(url: str, starttls: bool) -> SmtpServer:
    """The server of an SMTP_URL (`smtp://` default port 25, `smtps://` 465).

    Raises:
        ValueError: another scheme, or no host.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ValueError("SMTP_URL must be smtp://[user:password@]host[:port] or smtps://…")
    implicit = parts.scheme == "smtps"
    return SmtpServer(
        host=parts.hostname,
        port=parts.port or (465 if implicit else 25),
        implicit_tls=implicit,
        starttls=starttls and not implicit,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def due_report(at: datetime, shifts: tuple[Shift, ...], tz: ZoneInfo) -> tuple[date, str | None]:
    """The report a schedule tick at `at` sends: the latest shift (with SHIFTS) or local
    day (without) that has ended by then, as (production day, shift or None)."""
    today = at.astimezone(tz).date()
    if not shifts:
        return (today - timedelta(days=1), None)
    ended = [
        (shift_window(day, s, tz)[1], day, s.name)
        for day in (today - timedelta(days=d) for d in range(3))
        for s in shifts
        if shift_window(day, s, tz)[1] <= at
    ]
    _, day, name = max(ended)
    return day, name


def report_message(
    report: Report, files: list[tuple[bytes, str, str]], sender: str, recipients: list[str]
) -> EmailMessage:
    """The mail: the title as subject, the summary as text, the files attached."""
    message = EmailMessage()
    message["Subject"] = report.title
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message.set_content("\n".join(f"{k}: {v}" for k, v in summary_rows(report)) + "\n")
    for data, media_type, name in files:
        maintype, subtype = media_type.split("/", 1)
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return message


def send_message(server: SmtpServer, message: EmailMessage, timeout_s: float) -> None:
    """Send `message` (blocking: call it in a thread).

    Raises:
        OSError, smtplib.SMTPException: the server is unreachable or refuses the mail.
    """
    context = ssl.create_default_context()
    client: smtplib.SMTP
    if server.implicit_tls:
        client = smtplib.SMTP_SSL(server.host, server.port, timeout=timeout_s, context=context)
    else:
        client = smtplib.SMTP(server.host, server.port, timeout=timeout_s)
    with client:
        if server.starttls:
            client.starttls(context=context)
        if server.username:
            client.login(server.username, server.password or "")
        client.send_message(message)


class ReportMailer:
    """Builds a report and mails it (PDF and XLSX) to REPORT_RECIPIENTS."""

    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        attempts: int = 5,
        first_wait_s: float = 5.0,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.attempts = attempts
        self.first_wait_s = first_wait_s

    async def send_due(self, timestamp: float) -> bool:
        """Mail the report due at the schedule tick `timestamp` (Unix seconds); see
        `send`."""
        at = datetime.fromtimestamp(timestamp, UTC)
        day, shift = due_report(at, self.settings.spc_shifts, self.settings.spc_zone)
        return await self.send(day, shift)

    async def send(self, day: date, shift: str | None) -> bool:
        """Mail the report of `day` (and `shift`); True once the server took it. False,
        with the reason logged, when SMTP_URL or REPORT_RECIPIENTS is not set or every
        attempt failed. Never raises for a mail problem."""
        recipients = self.settings.report_recipient_list
        if self.settings.smtp_url is None or not recipients:
            logger.warning("report not mailed: SMTP_URL and REPORT_RECIPIENTS must be set")
            return False
        server = parse_smtp_url(
            self.settings.smtp_url.get_secret_value(), self.settings.smtp_starttls
        )
        async with self.sessions() as session:
            report = await build_report(session, self.settings, day, shift)
        files = [await render(report, "pdf"), await render(report, "xlsx")]
        message = report_message(report, files, self.settings.report_sender, recipients)
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self.attempts),
                wait=wait_exponential(multiplier=self.first_wait_s, max=300),
                retry=retry_if_exception_type((OSError, smtplib.SMTPException)),
                reraise=True,
            ):
                with attempt:
                    await run_in_threadpool(
                        send_message, server, message, self.settings.smtp_timeout_s
                    )
        except (OSError, smtplib.SMTPException) as exc:
            logger.error(
                "%s not mailed to %s after %d attempts: %s",
                report.title,
                server.host,
                self.attempts,
                exc,
            )
            return False
        logger.info("%s mailed to %d recipients", report.title, len(recipients))
        return True
