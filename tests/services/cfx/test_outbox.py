"""The CFX outbox (`app.services.cfx.outbox`) on a real PostgreSQL: messages are written
in the transaction of the change they report (and vanish with it when it rolls back),
nothing is written when CFX is off, a failed inspection is reported as one, and the
backlog figures /health and /metrics show count what waits. No broker is needed here
(tests/services/cfx/test_publisher.py publishes to a real one).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.models.spc import SpcAlarm
from app.services.cfx.outbox import CFX_SINK, CfxOutbox, OutboxRepository
from app.services.database.session import create_engine, create_session_factory, unit_of_work
from app.services.webhooks.events import WebhookEvents
from tests.services.cfx.sdk import check_envelope
from tests.support import db_rows


def _settings(tmp_path: Path, database_url: str, **extra: object) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database_url,
        data_dir=tmp_path,
        secret_key="test-secret",
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


def _outbox_rows(database_url: str, key: str) -> list[tuple[str, dict]]:
    return [
        (name, payload)
        for name, payload in db_rows(
            database_url,
            "SELECT message_name, payload FROM outbox WHERE ordering_key = %s ORDER BY id",
            key,
        )
    ]


async def test_a_failed_inspection_is_reported_in_its_own_transaction(
    tmp_path: Path, database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    cfx = CfxOutbox(_settings(tmp_path, database_url, cfx_broker_url="amqp://127.0.0.1:1"))
    accepted = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
    async with unit_of_work(sessions) as session:
        await cfx.inspection_finished(
            session, "20261207_100000_FAILED", accepted, error="the model service refused it"
        )
    rows = _outbox_rows(database_url, "20261207_100000_FAILED")
    assert [name for name, _ in rows] == [
        "CFX.Production.WorkStarted",
        "CFX.Production.TestAndInspection.UnitsInspected",
        "CFX.Production.WorkCompleted",
    ]
    started, inspected, completed = (check_envelope(payload) for _, payload in rows)
    assert started["TransactionID"] == inspected["TransactionId"] == completed["TransactionID"]
    unit = inspected["InspectedUnits"][0]
    assert unit["OverallResult"] == "Error"
    assert unit["Inspections"][0]["Error"] == "the model service refused it"
    assert unit["Inspections"][0]["InspectionStartTime"].startswith("2026-12-07T10:00:00")
    assert completed["Result"] == "Failed"


async def test_messages_vanish_with_a_rolled_back_change(
    tmp_path: Path, database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    cfx = CfxOutbox(_settings(tmp_path, database_url, cfx_broker_url="amqp://127.0.0.1:1"))

    async def change_that_fails() -> None:
        async with unit_of_work(sessions) as session:
            await cfx.inspection_finished(session, "20261207_100000_ROLLBK", None, error="x")
            raise RuntimeError("the change failed after the messages were added")

    with pytest.raises(RuntimeError, match="the change failed"):
        await change_that_fails()
    assert _outbox_rows(database_url, "20261207_100000_ROLLBK") == []


async def test_nothing_is_written_when_cfx_is_off(
    tmp_path: Path, database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    cfx = CfxOutbox(_settings(tmp_path, database_url))
    assert not cfx.enabled
    async with unit_of_work(sessions) as session:
        await cfx.inspection_finished(session, "20261207_100000_OFFOFF", None, error="x")
        await cfx.disposition(session, "20261207_100000_OFFOFF", "scrap", "qc", None)
    assert _outbox_rows(database_url, "20261207_100000_OFFOFF") == []


async def test_the_backlog_counts_unpublished_messages_and_the_oldest_age(
    tmp_path: Path, database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    cfx = CfxOutbox(_settings(tmp_path, database_url, cfx_broker_url="amqp://127.0.0.1:1"))
    async with unit_of_work(sessions) as session:
        before = await OutboxRepository(session).backlog(CFX_SINK)
        await cfx.disposition(session, "20261207_100000_BACKLG", "scrap", "qc-anna", "cracked")
    async with unit_of_work(sessions) as session:
        outbox = OutboxRepository(session)
        after = await outbox.backlog(CFX_SINK)
        assert after.messages == before.messages + 2  # UnitsInspected + UnitsDisqualified
        assert after.oldest_age_s is not None
        assert after.oldest_age_s >= 0
        pending = await outbox.pending(CFX_SINK, 1000)
        await outbox.mark_published([row.id for row in pending])
    async with unit_of_work(sessions) as session:
        assert await OutboxRepository(session).backlog(CFX_SINK) == type(after)(0, None)
    verified, disqualified = (
        check_envelope(p) for _, p in _outbox_rows(database_url, "20261207_100000_BACKLG")
    )
    assert verified["InspectedUnits"][0]["Verification"] == "DefectConfirmed"
    assert verified["Inspector"]["OperatorIdentifier"] == "qc-anna"
    assert disqualified["Reason"] == "DefectiveRepairNotPossible"
    assert disqualified["Comments"] == "cracked"


async def test_an_spc_alarm_is_a_cfx_log_entry_and_a_webhook_event_in_one_transaction(
    tmp_path: Path, database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """An SPC alarm: `CFX.ResourcePerformance.LogEntryRecorded` (the SDK has no SPC
    message) and the `spc.alarm` webhook event, both rolled back with a failed change."""
    cfx = CfxOutbox(_settings(tmp_path, database_url, cfx_broker_url="amqp://127.0.0.1:1"))
    webhooks = WebhookEvents()
    alarm = SpcAlarm(
        chart="u",
        rule=2,
        rule_text="two of three points beyond 2 sigma, same side",
        side="above",
        class_name="Short",
        product="PX-7",
        line="L3",
        first_key="2026-03-21",
        last_key="2026-03-22",
        open=True,
    )

    async def record(fail: bool) -> None:
        async with unit_of_work(sessions) as session:
            cfx.spc_alarm(session, alarm, "day")
            webhooks.spc_alarm(session, alarm, "day")
            if fail:
                raise RuntimeError("the alarm's row was not written")

    with pytest.raises(RuntimeError):
        await record(fail=True)
    assert _outbox_rows(database_url, "spc:u:Short") == []
    await record(fail=False)
    (cfx_row,) = db_rows(
        database_url,
        "SELECT payload FROM outbox WHERE ordering_key = 'spc:u:Short' AND sink = 'cfx'",
    )
    body = check_envelope(cfx_row[0])
    assert cfx_row[0]["MessageName"] == "CFX.ResourcePerformance.LogEntryRecorded"
    assert body["InformationId"] == "SPC.u.rule2"
    assert body["Importance"] == "Warning"
    assert "rule 2" in body["Message"]
    assert "class Short, product PX-7, line L3" in body["Message"]
    ((name, payload),) = db_rows(
        database_url,
        "SELECT message_name, payload FROM outbox"
        " WHERE ordering_key = 'spc:u:Short' AND sink = 'webhooks'",
    )
    assert name == payload["type"] == "spc.alarm"
    assert payload["data"] == {
        "chart": "u",
        "subgroup": "day",
        "rule": 2,
        "rule_text": "two of three points beyond 2 sigma, same side",
        "side": "above",
        "class_name": "Short",
        "product": "PX-7",
        "line": "L3",
        "first_key": "2026-03-21",
        "last_key": "2026-03-22",
    }
