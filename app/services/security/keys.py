"""API keys: creation, salted hashing, verification, scopes, revocation.

A key reads `aoi_<8 hex>_<43 url-safe characters>` (256 random bits after the prefix).
Only a salted scrypt hash (`hashlib.scrypt`, RFC 7914) of the whole key is stored; the
visible part `aoi_<8 hex>` identifies the key in listings and finds its row. A 32-bit
check value (the first 8 hex digits of the key's SHA-256) is stored too: a wrong key that
reuses a real key's prefix fails it (but for a 1-in-4-billion chance) and is refused
without the ~50 ms of scrypt. 32 bits of a hash of 256 random bits tell a thief of the
table nothing usable.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import ClassVar

from starlette.concurrency import run_in_threadpool

from app.errors import AgentError
from app.models.database import ApiKey
from app.services.security.repository import ApiKeyRepository, WebSessionRepository

KEY_PATTERN = re.compile(r"^(aoi_[0-9a-f]{8})_[A-Za-z0-9_-]{43}$")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# scrypt cost: 16 MiB and ~40 ms per hash (OWASP's minimum is N=2**17 for passwords; keys
# carry 256 random bits, so the cost only has to make a stolen table useless offline).
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
# last_used_at is written at most this often per key, so reads do not all become writes.
LAST_USED_RESOLUTION = timedelta(seconds=60)


class Scope(enum.StrEnum):
    """What a key may do; each scope includes the ones before it."""

    READ = "read"  # queries and downloads
    WRITE = "write"  # + uploads and retries
    ADMIN = "admin"  # + deletion and key management

    @property
    def rank(self) -> int:
        """0 for read, 1 for write, 2 for admin."""
        return list(Scope).index(self)

    def allows(self, needed: Scope) -> bool:
        """Whether a key of this scope may do what needs `needed`."""
        return self.rank >= needed.rank


class KeyNameTaken(AgentError):
    """Another key already has this name."""

    status_code = 409
    error = "key_name_taken"


class KeyNotFound(AgentError):
    """No key has this name."""

    status_code = 404
    error = "key_not_found"


class BadKeyName(AgentError):
    """Key names are 1-64 letters, digits, dots, dashes or underscores."""

    status_code = 422
    error = "invalid_key_name"


def hash_key(key: str) -> str:
    """A salted scrypt hash of `key`: `scrypt$N$r$p$<salt b64>$<hash b64>` (16-byte salt,
    32-byte hash). Blocking (~40 ms): call it in a thread from async code."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(key.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_key(key: str, stored: str) -> bool:
    """Whether `key` matches a hash made by `hash_key` (constant-time comparison)."""
    try:
        _, n, r, p, salt, digest = stored.split("$")
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            key.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
        )
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


def key_check(key: str) -> str:
    """The first 8 hex digits (32 bits) of the SHA-256 of `key`: the stored check value."""
    return hashlib.sha256(key.encode()).hexdigest()[:8]


def new_key() -> tuple[str, str]:
    """A fresh random key and its visible prefix."""
    prefix = f"aoi_{secrets.token_hex(4)}"
    return f"{prefix}_{secrets.token_urlsafe(32)}", prefix


def key_prefix(key: str) -> str | None:
    """The visible prefix of a well-formed key, or None when `key` is not one."""
    match = KEY_PATTERN.match(key)
    return match.group(1) if match else None


@dataclass(frozen=True)
class KeyIdentity:
    """Who a request is: the key's row id, name and scope."""

    key_id: int
    name: str
    scope: Scope


class KeyService:
    """Key management and verification over one session (the caller commits)."""

    # Keys already verified by this process: sha256(key) -> row id. Saves the scrypt cost
    # on every request; revocation still takes effect at once (the row is read each time).
    _verified: ClassVar[dict[bytes, int]] = {}

    def __init__(self, repository: ApiKeyRepository) -> None:
        self.keys = repository

    async def create(self, name: str, scope: Scope) -> tuple[ApiKey, str]:
        """Make a key; returns its row and the key itself (shown once, never stored).

        Raises:
            BadKeyName: `name` is not 1-64 letters, digits, `.`, `-` or `_`.
            KeyNameTaken: a key (revoked or not) already has this name.
        """
        if not NAME_PATTERN.match(name):
            raise BadKeyName(
                f"{name!r} is not a valid key name: use 1-64 letters, digits, '.', '-' or '_'"
            )
        if await self.keys.by_name(name) is not None:
            raise KeyNameTaken(f"a key named {name!r} already exists; choose another name")
        key, prefix = new_key()
        key_hash = await run_in_threadpool(hash_key, key)
        row = await self.keys.add(
            name=name, prefix=prefix, key_hash=key_hash, key_check=key_check(key), scope=scope.value
        )
        return row, key

    async def list(self) -> list[ApiKey]:
        """Every key, revoked ones included, oldest first."""
        return await self.keys.all()

    async def revoke(self, name: str) -> ApiKey:
        """Revoke a key now and end its web sessions; requests with it, or with a session
        opened with it, are refused from the commit on.

        Raises:
            KeyNotFound: no key has this name.
        """
        row = await self.keys.by_name(name)
        if row is None:
            raise KeyNotFound(f"no key named {name!r}; `aoi-agent keys list` shows the keys")
        if row.revoked_at is None:
            row.revoked_at = datetime.now(UTC)
            await self.keys.session.flush()
        await WebSessionRepository(self.keys.session).end_all_of_key(row.id, row.revoked_at)
        return row

    async def count_active(self) -> int:
        """Keys that are not revoked."""
        return await self.keys.count_active()

    async def authenticate(self, key: str) -> KeyIdentity | None:
        """The identity of a presented key, or None when it is malformed, unknown or
        revoked. Updates `last_used_at` (at most once a minute per key).

        Cost of a wrong key: one indexed select; scrypt (~50 ms) only for a key whose
        prefix and 32-bit check value both match a live key's, or for a key made before
        check values existed."""
        prefix = key_prefix(key)
        if prefix is None:
            return None
        row = await self.keys.by_prefix(prefix)
        if row is None or row.revoked_at is not None:
            return None
        fingerprint = hashlib.sha256(key.encode()).digest()
        if row.key_check is not None and not hmac.compare_digest(
            row.key_check, fingerprint.hex()[:8]
        ):
            return None
        if self._verified.get(fingerprint) != row.id:
            if not await run_in_threadpool(verify_key, key, row.key_hash):
                return None
            self._verified[fingerprint] = row.id
        await self.touch(row)
        return KeyIdentity(row.id, row.name, Scope(row.scope))

    async def touch(self, row: ApiKey) -> None:
        """Set `last_used_at` to now unless it was set within the last minute."""
        now = datetime.now(UTC)
        if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
            row.last_used_at = now
            await self.keys.session.flush()
