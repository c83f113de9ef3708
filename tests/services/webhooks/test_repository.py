"""The webhook tables on a real PostgreSQL (`app/services/webhooks/repository.py`): the
fan-out of outbox events to subscribed, enabled endpoints (once, however often it runs),
the back-off formula, the backlog /health and /metrics show, parking at the end of the
retry window, and pruning. No HTTP here (test_webhooks.py delivers for real)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.models.webhooks import WebhookAttempt, WebhookEndpoint
from app.services.database.session import create_engine, create_session_factory, unit_of_work
from app.services.webhooks.dispatcher import retry_delay_s
from app.services.webhooks.events import add_event
from app.services.webhooks.repository import WebhookRepository
from tests.support import db_execute, db_rows


def _settings(tmp_path: Path, database_url: str, **extra: object) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database_url,
        data_dir=tmp_path,
        **extra,  # type: ignore[arg-type]
    )


@pytest.fixture
async def sessions(
    tmp_path: Path, database_url: str
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on the module's fresh database."""
    engine = create_engine(_settings(tmp_path, database_url), database_url)
    yield create_session_factory(engine)
    await engine.dispose()


def test_the_back_off_doubles_from_the_first_wait_up_to_the_cap(tmp_path: Path) -> None:
    settings = _settings(tmp_path, "", webhook_retry_initial_s=5, webhook_retry_max_s=1800)
    assert [retry_delay_s(settings, n) for n in range(1, 11)] == [
        5,
        10,
        20,
        40,
        80,
        160,
        320,
        640,
        1280,
        1800,
    ]


async def test_fan_out_backlog_parking_and_pruning(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with unit_of_work(sessions) as session:
        repo = WebhookRepository(session)
        both = await repo.add_endpoint(
            WebhookEndpoint(
                url="http://127.0.0.1:9/a",
                events=["inspection.completed", "spc.alarm"],
                secret="whsec_AAAA",
            )
        )
        alarms = await repo.add_endpoint(
            WebhookEndpoint(url="http://127.0.0.1:9/b", events=["spc.alarm"], secret="whsec_AAAA")
        )
        off = await repo.add_endpoint(
            WebhookEndpoint(
                url="http://127.0.0.1:9/c", events=["spc.alarm"], secret="whsec_AAAA", enabled=False
            )
        )
        add_event(session, "inspection.completed", "SN1", {"img_unique_id": "X1"})
        add_event(session, "spc.alarm", "spc:p:", {"chart": "p"})
    async with unit_of_work(sessions) as session:
        repo = WebhookRepository(session)
        backlog = await repo.backlog()
        assert backlog.pending == 2  # two events, not fanned out yet
        assert backlog.oldest_age_s is not None
        assert await repo.fan_out(200, retry_hours=24) == 2
        assert await repo.fan_out(200, retry_hours=24) == 0  # once
    rows = db_rows(
        database_url,
        "SELECT endpoint_id, event_type, status FROM webhook_deliveries ORDER BY id",
    )
    assert rows == [
        (both.id, "inspection.completed", "pending"),
        (both.id, "spc.alarm", "pending"),
        (alarms.id, "spc.alarm", "pending"),
    ]
    assert off.id not in {r[0] for r in rows}
    async with unit_of_work(sessions) as session:
        repo = WebhookRepository(session)
        assert (await repo.backlog()).pending == 3
        assert sorted(await repo.due_endpoints()) == sorted([both.id, alarms.id])
        head = await repo.head(both.id)
        assert head is not None
        delivery, _ = head
        assert delivery.event_type == "inspection.completed"  # the older event first
        # A failure whose next try would fall after the window parks the delivery.
        db_execute(
            database_url,
            "UPDATE webhook_deliveries SET retry_until = now() + interval '1 second' WHERE id = %s",
            delivery.id,
        )
        await session.refresh(delivery)
        attempt = WebhookAttempt(delivery_id=delivery.id, duration_s=0.1, error="HTTP 500")
        status = await repo.record_attempt(delivery, attempt, delivered=False, retry_in_s=60)
        assert status == "parked"
    async with unit_of_work(sessions) as session:
        repo = WebhookRepository(session)
        head = await repo.head(both.id)
        assert head is not None
        assert head[0].event_type == "spc.alarm"
        assert (await repo.backlog()).pending == 2  # parked ones are not in it
    db_execute(
        database_url,
        "UPDATE webhook_deliveries SET created_at = now() - interval '8 days'"
        " WHERE status = 'parked'",
    )
    db_execute(
        database_url,
        "UPDATE outbox SET published_at = now() - interval '2 days' WHERE sink = 'webhooks'",
    )
    async with unit_of_work(sessions) as session:
        assert await WebhookRepository(session).prune(keep_days=7, keep_events_hours=24) == 1
    assert db_rows(database_url, "SELECT count(*) FROM webhook_attempts") == [(0,)]
    assert db_rows(database_url, "SELECT count(*) FROM outbox WHERE sink = 'webhooks'") == [(0,)]
    assert db_rows(database_url, "SELECT count(*) FROM webhook_deliveries") == [(2,)]
