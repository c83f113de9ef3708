"""Web-UI sessions kept on the server: opened by signing in with an API key, ended by
signing out or by revoking the key, each checked by one indexed select per request.

The `aoi_session` cookie carries a random token (256 bits, `secrets.token_urlsafe(32)`);
the `web_sessions` table keeps only its SHA-256, so a copy of the table opens nothing.
Nothing about a session is cached in a process: an ended session is refused on the very
next request, by every process of the agent.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from app.services.security.keys import KeyIdentity, KeyService, Scope
from app.services.security.repository import ApiKeyRepository, WebSessionRepository

TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9_-]{43}$")
# last_seen_at is written at most this often per session, so reads do not all become writes.
LAST_SEEN_RESOLUTION = timedelta(seconds=60)


def token_hash(token: str) -> bytes:
    """The SHA-256 of a session token (32 bytes), the value stored and looked up."""
    return hashlib.sha256(token.encode()).digest()


class WebSessionService:
    """Opens, reads and ends web sessions over one database session (the caller commits)."""

    def __init__(self, session: AsyncSession) -> None:
        self.sessions = WebSessionRepository(session)
        self.keys = KeyService(ApiKeyRepository(session))

    async def open(self, key_id: int, ttl_s: int) -> str:
        """A new session of key `key_id`, valid `ttl_s` seconds; returns the cookie's token
        (shown to the browser only, never stored). Deletes expired sessions first, so the
        table holds at most the sessions of the last `ttl_s` seconds."""
        now = datetime.now(UTC)
        await self.sessions.delete_expired(now)
        token = secrets.token_urlsafe(32)
        await self.sessions.add(
            token_sha256=token_hash(token), key_id=key_id, expires_at=now + timedelta(seconds=ttl_s)
        )
        return token

    async def identity(self, token: str) -> KeyIdentity | None:
        """Who the session of `token` is signed in as, or None when the token is malformed,
        unknown, ended (signed out, key revoked) or expired. Updates the session's
        `last_seen_at` and the key's `last_used_at` at most once a minute."""
        if not TOKEN_PATTERN.match(token):
            return None
        now = datetime.now(UTC)
        found = await self.sessions.active(token_hash(token), now)
        if found is None:
            return None
        web_session, key = found
        if now - web_session.last_seen_at >= LAST_SEEN_RESOLUTION:
            web_session.last_seen_at = now
        await self.keys.touch(key)
        return KeyIdentity(key.id, key.name, Scope(key.scope))

    async def end(self, token: str) -> bool:
        """End the session of `token` (sign-out); returns whether one was open."""
        if not TOKEN_PATTERN.match(token):
            return False
        return await self.sessions.end(token_hash(token), datetime.now(UTC)) > 0
