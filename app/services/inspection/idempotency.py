"""`Idempotency-Key` on the upload endpoints: a repeated request gets the first answer again.

Follows the IETF draft "The Idempotency-Key HTTP Header Field"
(draft-ietf-httpapi-idempotency-key-header): the first request with a key is
handled and its answer kept for 24 hours; the same key with the same request
gets that answer again (header `Idempotent-Replayed: true`); with a different
request (other files, names or options) it gets 422; while the first is still
being handled, 409. Only successful (2xx) answers are kept: an error frees the
key, so the same request can simply be sent again.

The request is identified by its endpoint, options and each file's name and
SHA-256 (not the raw multipart body, whose boundary differs on every send).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import anyio
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.errors import IdempotencyKeyInUse, IdempotencyKeyReused
from app.services.database.idempotency import DONE, IdempotencyRepository
from app.services.database.session import unit_of_work
from app.services.inspection.receiver import ReceivedFile
from app.utils import fastjson
from app.utils.ids import utc_now

logger = logging.getLogger(__name__)

KEY_LIFETIME = timedelta(hours=24)
REPLAYED_HEADER = "Idempotent-Replayed"


@dataclass(frozen=True)
class Answer:
    """An endpoint's answer: status code and JSON body as sent (what a replay sends again)."""

    status_code: int
    content: bytes
    replayed: bool = False

    @classmethod
    def json(cls, status_code: int, body: dict[str, Any]) -> Answer:
        """An answer with `body` rendered as FastAPI renders JSON (through orjson: answers
        with `include_images=base64` are ~100 KB per image)."""
        return cls(status_code, fastjson.dumps(body))

    def response(self) -> Response:
        """The HTTP response; a replay carries `Idempotent-Replayed: true`."""
        headers = {REPLAYED_HEADER: "true"} if self.replayed else None
        return Response(
            self.content,
            status_code=self.status_code,
            media_type="application/json",
            headers=headers,
        )


def request_digest(
    endpoint: str, options: Mapping[str, object], files: Sequence[ReceivedFile]
) -> str:
    """Hex SHA-256 identifying a request: endpoint, options, each file's name and SHA-256.

    A file dropped for being too large counts by its name and size (bytes).
    """
    payload = {
        "endpoint": endpoint,
        "options": {k: options[k] for k in sorted(options)},
        "files": [[f.filename, f.sha256 or f"dropped:{f.size_bytes}"] for f in files],
    }
    return hashlib.sha256(json.dumps(payload, default=str).encode("utf-8")).hexdigest()


class IdempotencyKeys:
    """Runs a request at most once per Idempotency-Key and replays its answer for 24 h."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    async def answer(
        self,
        key: str | None,
        digest: str,
        lease_s: float,
        produce: Callable[[], Awaitable[Answer]],
    ) -> Answer:
        """The answer to a request: `produce()`'s, or the kept answer of an earlier send.

        Args:
            key: the request's Idempotency-Key header (None: just `produce()`).
            digest: `request_digest(...)` of this request.
            lease_s: how long the first request may take before its key counts as
                abandoned (the agent died while handling it), seconds.
            produce: handles the request.

        Raises:
            IdempotencyKeyInUse: a request with this key is still being handled (409).
            IdempotencyKeyReused: this key came with a different request (422).
            (and whatever `produce` raises; the key is then freed)
        """
        if key is None:
            return await produce()
        now = utc_now()
        async with unit_of_work(self.sessions) as session:
            repo = IdempotencyRepository(session)
            await repo.purge_expired()
            claimed = await repo.claim(
                key, digest, now + timedelta(seconds=lease_s), now + KEY_LIFETIME
            )
            existing = None if claimed else await repo.get(key)
        if not claimed:
            if existing is None:  # freed between the two statements: try once more
                return await self.answer(key, digest, lease_s, produce)
            if existing.request_digest != digest:
                raise IdempotencyKeyReused(
                    f"the Idempotency-Key {key!r} was already used, within the last 24 h, for"
                    " a different request (other files, file names, endpoint or options);"
                    " use a new key for a new request"
                )
            if existing.state != DONE or existing.response_body is None:
                raise IdempotencyKeyInUse(
                    f"a request with the Idempotency-Key {key!r} is still being handled;"
                    " send it again in a few seconds to get its answer"
                )
            return Answer(existing.response_status or 200, existing.response_body, replayed=True)
        try:
            answer = await produce()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._release(key)
            raise
        with anyio.CancelScope(shield=True):
            if 200 <= answer.status_code < 300:
                async with unit_of_work(self.sessions) as session:
                    await IdempotencyRepository(session).store_answer(
                        key, answer.status_code, answer.content
                    )
            else:
                await self._release(key)
        return answer

    async def _release(self, key: str) -> None:
        try:
            async with unit_of_work(self.sessions) as session:
                await IdempotencyRepository(session).release(key)
        except Exception:  # the lease frees it later
            logger.exception("could not free an idempotency key", extra={"key": key})
