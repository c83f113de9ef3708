"""The CFX publisher: drains the outbox to an AMQP 1.0 broker (python-qpid-proton).

One publisher per deployment: every agent process runs the loop, but only the one that
holds a PostgreSQL session-level advisory lock (`CFX_PUBLISHER_LOCK`) publishes; the
others try again every few seconds (a killed publisher's lock goes with its connection).

The holder sends the `cfx` rows in `id` order (up to `BATCH` at a time on one link, which
the broker settles in order), and marks them published once the broker accepted them.
When the broker cannot be reached or refuses a message, the row stays first in line: the
publisher waits (CFX_RETRY_INITIAL_S, doubled per failure up to CFX_RETRY_MAX_S) and
tries it again. So a broker outage delays
messages and loses none, and no message overtakes an older one.

`CFX.EndpointConnected` (on each connection) and `CFX.Heartbeat` (every CFX_HEARTBEAT_S)
report the link itself, not a change of the agent's state: they are sent directly and
not queued while the broker is down.

proton's blocking API runs in one thread of its own (never on the event loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.services.cfx import messages
from app.services.cfx.outbox import CFX_SINK, OutboxRepository
from app.services.database.leader import lead

logger = logging.getLogger(__name__)

BATCH = 200
# Seconds between two looks at the outbox when it is empty (verdict → broker latency).
POLL_S = 0.1
# Seconds between two tries for the publisher's lock by a process that does not hold it.
LOCK_RETRY_S = 5.0
# Seconds between two removals of old published rows.
PRUNE_EVERY_S = 3600.0


class BrokerUnavailable(Exception):
    """The broker could not be reached, or did not accept a message."""


def amqp_message(payload: dict[str, Any]) -> Any:
    """A proton `Message` as the CFX SDK's `AmqpUtilities.MessageFromEnvelope` builds it
    (CFX/Transport/AmqpUtilities.cs): the envelope's UTF-8 JSON as a binary Data body,
    `message_id` = UniqueID, subject `<handle>.<MessageName>`, application properties
    `cfx-topic`, `cfx-message`, `cfx-handle`, `cfx-target`, durable."""
    from proton import Message

    name = payload["MessageName"]
    return Message(
        body=json.dumps(payload, ensure_ascii=False).encode(),
        inferred=True,
        id=payload["UniqueID"],
        durable=True,
        content_type='application/json; charset="utf-8"',
        subject=f"{payload['Source']}.{name}",
        reply_to=payload["Source"],
        creation_time=time.time(),
        properties={
            "cfx-topic": name.rsplit(".", 1)[0],
            "cfx-message": name,
            "cfx-handle": payload["Source"],
            "cfx-target": payload["Target"],
        },
    )


class BrokerLink:
    """One AMQP 1.0 connection and sender to CFX_ADDRESS, used from one thread only."""

    def __init__(self, url: str, address: str, timeout_s: float) -> None:
        self.url = url
        self.address = address
        self.timeout_s = timeout_s
        self._connection: Any = None
        self._sender: Any = None

    @property
    def connected(self) -> bool:
        """Whether a connection is open."""
        return self._sender is not None

    def connect(self) -> None:
        """Open the connection and the sender.

        Raises:
            BrokerUnavailable: the broker cannot be reached or refuses the link.
        """
        from proton import SSLDomain
        from proton.utils import BlockingConnection

        try:
            ssl = SSLDomain(SSLDomain.MODE_CLIENT) if self.url.startswith("amqps") else None
            self._connection = BlockingConnection(
                self.url, timeout=self.timeout_s, ssl_domain=ssl, allowed_mechs="PLAIN ANONYMOUS"
            )
            self._sender = self._connection.create_sender(self.address)
        except Exception as exc:
            self.close()
            raise BrokerUnavailable(f"{type(exc).__name__}: {exc}") from exc

    def send(self, payloads: Sequence[dict[str, Any]]) -> tuple[int, str | None]:
        """Send in order on one link and wait until the broker has settled them all;
        returns how many, from the first, it accepted and, when one was not, why (the
        connection is then closed: the rest are sent again from the first not accepted).

        The messages are pipelined (one wait for the lot, not one per message: a third
        of the CPU); the broker settles a link's deliveries in order.
        """
        from proton import Delivery

        deliveries: list[Any] = []
        error: str | None = None
        try:
            if not self.connected:
                self.connect()
            link = self._sender.link
            deliveries = [link.send(amqp_message(payload)) for payload in payloads]
            self._connection.wait(
                lambda: all(d.settled for d in deliveries),
                timeout=self.timeout_s,
                msg=f"sending to {self.address}",
            )
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        accepted = 0
        for delivery in deliveries:
            if delivery.remote_state != Delivery.ACCEPTED:
                error = error or f"the broker answered {delivery.remote_state} to a message"
                break
            accepted += 1
        for delivery in deliveries:
            delivery.settle()
        if error:
            self.close()
        return accepted, error

    def close(self) -> None:
        """Close the connection (quietly: it may already be gone)."""
        connection, self._connection, self._sender = self._connection, None, None
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()


class CfxPublisher:
    """The publisher loop of one agent process (see the module docstring)."""

    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
        if not settings.cfx_broker_url:
            raise ValueError("CFX_BROKER_URL is not set")
        self.settings = settings
        self.sessions = sessions
        self.link = BrokerLink(
            settings.cfx_broker_url, settings.cfx_address, settings.cfx_timeout_s
        )
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cfx-publisher")
        self._task: asyncio.Task[None] | None = None
        self._next_heartbeat = 0.0
        self._next_prune = 0.0
        self.holds_lock = False

    def start(self) -> None:
        """Run the loop in a task until `stop`."""
        self._task = asyncio.create_task(self._run(), name="cfx-publisher")

    async def stop(self) -> None:
        """Stop the loop and close the broker connection."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._in_thread(self.link.close)
        self._thread.shutdown(wait=False)

    async def _in_thread(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    async def _run(self) -> None:
        await lead(
            self.sessions,
            OutboxRepository,
            self._publish,
            name="CFX publisher",
            retry_s=LOCK_RETRY_S,
            holding=self._holding,
            released=lambda: self._in_thread(self.link.close),
        )

    def _holding(self, held: bool) -> None:
        self.holds_lock = held

    def _direct(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        return messages.new_envelope(name, body, self.settings.cfx_handle)

    async def _connect(self) -> None:
        await self._in_thread(self.link.connect)
        broker = urlsplit(self.settings.cfx_broker_url or "")
        shown = f"{broker.scheme}://{broker.hostname}:{broker.port or 5672}"
        hello = self._direct(
            messages.ENDPOINT_CONNECTED,
            messages.endpoint_connected(self.settings.cfx_handle, shown, self.settings.cfx_address),
        )
        _, error = await self._in_thread(self.link.send, [hello])
        if error:
            raise BrokerUnavailable(error)
        logger.info("CFX publisher connected", extra={"broker": shown})
        self._next_heartbeat = 0.0

    async def _publish(self, session: AsyncSession, outbox: OutboxRepository) -> None:
        """Drain the outbox for as long as this process holds the lock."""
        backoff = self.settings.cfx_retry_initial_s
        while True:
            try:
                if not self.link.connected:
                    await self._connect()
                await self._heartbeat_when_due()
                rows = await outbox.pending(CFX_SINK, BATCH)
                await session.commit()
                if rows:
                    sent, error = await self._in_thread(
                        self.link.send, [row.payload for row in rows]
                    )
                    await outbox.mark_published([row.id for row in rows[:sent]])
                    if error:
                        await outbox.mark_failed(rows[sent].id, error, backoff)
                    await session.commit()
                    if error:
                        raise BrokerUnavailable(error)
                else:
                    await self._prune_when_due(session, outbox)
                    await asyncio.sleep(POLL_S)
                backoff = self.settings.cfx_retry_initial_s
            except BrokerUnavailable as exc:
                # Once per outage at WARNING (an outage of hours would flood the log).
                first = backoff == self.settings.cfx_retry_initial_s
                logger.log(
                    logging.WARNING if first else logging.DEBUG,
                    "CFX broker unavailable; messages wait in the outbox",
                    extra={"error": str(exc), "retry_in_s": backoff},
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.settings.cfx_retry_max_s)

    async def _heartbeat_when_due(self) -> None:
        now = time.monotonic()
        if now < self._next_heartbeat:
            return
        self._next_heartbeat = now + self.settings.cfx_heartbeat_s
        beat = self._direct(
            messages.HEARTBEAT,
            messages.heartbeat(self.settings.cfx_handle, self.settings.cfx_heartbeat_s),
        )
        _, error = await self._in_thread(self.link.send, [beat])
        if error:
            raise BrokerUnavailable(error)

    async def _prune_when_due(self, session: AsyncSession, outbox: OutboxRepository) -> None:
        now = time.monotonic()
        if now < self._next_prune:
            return
        self._next_prune = now + PRUNE_EVERY_S
        await outbox.prune(CFX_SINK, self.settings.cfx_keep_published_hours)
        await session.commit()
