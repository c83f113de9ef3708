"""Guessing keys and spending quotas: failed authentications limited per client address
(AUTH_FAILURES_PER_MINUTE) and requests limited per key (KEY_RATE_LIMIT), against an agent
that requires keys, over real HTTP and real PostgreSQL.

The other client address is 127.0.0.2 (the client binds it; Linux routes all of
127.0.0.0/8 to loopback).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest

from app.services.model_service.reference import ReferenceService
from app.services.security import keys as keys_module
from app.services.security.repository import ApiKeyRepository
from tests.conftest import agent_settings
from tests.support import AgentServer, create_api_key, db_execute, serve_agent

FAILURES_PER_MINUTE = 10
QUOTA = 15  # requests per minute per key


@pytest.fixture(scope="module")
def guarded(
    tmp_path_factory: pytest.TempPathFactory,
    database_url: str,
    reference_service: ReferenceService,
) -> Iterator[AgentServer]:
    """An agent that requires keys, allows 10 wrong keys a minute per address and 15
    requests a minute per key."""
    settings = agent_settings(
        tmp_path_factory.mktemp("data"),
        database_url,
        reference_service.url,
        auth_mode="required",
        auth_failures_per_minute=FAILURES_PER_MINUTE,
        key_rate_limit=f"{QUOTA}/minute",
    )
    with serve_agent(settings) as server:
        yield server


def _other_address_available() -> bool:
    try:
        with socket.socket() as probe:
            probe.bind(("127.0.0.2", 0))
    except OSError:
        return False
    return True


def _client(agent: AgentServer, source: str = "127.0.0.1") -> httpx2.Client:
    """A client of `agent` whose requests come from the address `source`."""
    transport = httpx2.HTTPTransport(local_address=source)
    return httpx2.Client(base_url=agent.url, timeout=60, transport=transport)


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts the agent's key lookups (`ApiKeyRepository.by_prefix`) and scrypt
    verifications (`verify_key`): the agent runs in this process, so wrapping them is the
    one way to see that a throttled guess never reaches the database or scrypt."""
    calls = {"lookups": 0, "scrypt": 0}
    by_prefix = ApiKeyRepository.by_prefix
    verify_key = keys_module.verify_key

    async def counting_by_prefix(self: ApiKeyRepository, prefix: str) -> Any:
        calls["lookups"] += 1
        return await by_prefix(self, prefix)

    def counting_verify_key(key: str, stored: str) -> bool:
        calls["scrypt"] += 1
        return verify_key(key, stored)

    monkeypatch.setattr(ApiKeyRepository, "by_prefix", counting_by_prefix)
    monkeypatch.setattr(keys_module, "verify_key", counting_verify_key)
    return calls


def test_fifty_wrong_keys_are_throttled_before_any_lookup_or_scrypt(
    guarded: AgentServer, counted: dict[str, int]
) -> None:
    """50 guesses in a row that reuse a real key's visible prefix: the first 10 are 401,
    every later one 429 with Retry-After, and only the first 10 reached the key table and
    scrypt. The key is made as before key check values existed (key_check NULL), so each
    unthrottled guess pays scrypt: the worst case."""
    if not _other_address_available():
        pytest.skip("127.0.0.2 cannot be bound on this machine")
    database = guarded.settings.database_url or ""
    real = create_api_key(database, "line-1", "write")
    db_execute(database, "UPDATE api_keys SET key_check = NULL WHERE name = 'line-1'")
    guess = real[:-4] + ("AAAA" if not real.endswith("AAAA") else "BBBB")

    with _client(guarded) as attacker:
        answers = [attacker.get("/api/images", headers={"X-API-Key": guess}) for _ in range(50)]
        assert [a.status_code for a in answers[:FAILURES_PER_MINUTE]] == [401] * 10
        for answer in answers[FAILURES_PER_MINUTE:]:
            assert answer.status_code == 429
            assert answer.json()["error"] == "too_many_failed_authentications"
            assert 1 <= int(answer.headers["retry-after"]) <= 60
        assert counted == {"lookups": FAILURES_PER_MINUTE, "scrypt": FAILURES_PER_MINUTE}
        # The throttled address is refused even with the right key (it is not looked up).
        assert attacker.get("/api/images", headers={"X-API-Key": real}).status_code == 429
        # ... and the sign-in form of the web UI goes through the same limit.
        form = attacker.post("/signin", data={"key": real}, headers={"Origin": guarded.url})
        assert form.status_code == 429
        assert "set-cookie" not in form.headers
        assert "try again in" in form.text
        assert int(form.headers["retry-after"]) >= 1

    with _client(guarded, "127.0.0.2") as line_pc:
        assert line_pc.get("/api/images", headers={"X-API-Key": real}).status_code == 200
    assert counted["scrypt"] == FAILURES_PER_MINUTE + 1


def test_a_wrong_key_of_a_real_prefix_is_refused_without_scrypt(
    guarded: AgentServer, counted: dict[str, int]
) -> None:
    """A key made now stores a 32-bit check value: a wrong key that reuses its prefix is
    refused after the lookup, without the ~50 ms of scrypt; the right key still verifies."""
    if not _other_address_available():
        pytest.skip("127.0.0.2 cannot be bound on this machine")
    real = create_api_key(guarded.settings.database_url or "", "line-2", "read")
    guess = real[:-4] + ("AAAA" if not real.endswith("AAAA") else "BBBB")
    with _client(guarded, "127.0.0.2") as c:
        refused = c.get("/api/images", headers={"X-API-Key": guess})
        assert refused.status_code == 401
        assert counted == {"lookups": 1, "scrypt": 0}
        assert c.get("/api/images", headers={"X-API-Key": real}).status_code == 200
        assert counted == {"lookups": 2, "scrypt": 1}


def test_a_key_over_its_quota_gets_429_with_retry_after(guarded: AgentServer) -> None:
    """KEY_RATE_LIMIT counts a key's requests, by header and by its web session alike;
    over it, 429 `rate_limited`; another key is not affected."""
    if not _other_address_available():
        pytest.skip("127.0.0.2 cannot be bound on this machine")
    database = guarded.settings.database_url or ""
    busy = create_api_key(database, "busy-line", "read")
    calm = create_api_key(database, "calm-line", "read")
    with _client(guarded, "127.0.0.2") as c:
        signin = c.post("/signin", data={"key": busy}, headers={"Origin": guarded.url})
        assert signin.status_code == 303
        by_cookie = [c.get("/api/images").status_code for _ in range(5)]
        c.cookies.clear()
        by_key = [
            c.get("/api/images", headers={"X-API-Key": busy}).status_code for _ in range(QUOTA - 5)
        ]
        assert by_cookie + by_key == [200] * QUOTA
        over = c.get("/api/images", headers={"X-API-Key": busy})
        assert over.status_code == 429
        assert over.json()["error"] == "rate_limited"
        assert "busy-line" in over.json()["detail"]
        assert 1 <= int(over.headers["retry-after"]) <= 60
        assert c.get("/api/images", headers={"X-API-Key": calm}).status_code == 200
