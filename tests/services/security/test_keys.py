"""API keys: format, salted scrypt hashes, scope order (no database needed)."""

from __future__ import annotations

import pytest

from app.services.security.keys import Scope, hash_key, key_prefix, new_key, verify_key


def test_new_keys_are_random_and_carry_their_prefix() -> None:
    key, prefix = new_key()
    other, _ = new_key()
    assert key != other
    assert key.startswith(prefix + "_")
    assert key_prefix(key) == prefix
    assert len(key) == 56


@pytest.mark.parametrize(
    "text", ["", "aoi_", "aoi_12345678", "aoi_1234567g_" + "a" * 43, "x" * 56, "aoi_12345678_a"]
)
def test_malformed_keys_have_no_prefix(text: str) -> None:
    assert key_prefix(text) is None


def test_hash_is_salted_and_verifies_only_its_key() -> None:
    key, _ = new_key()
    first, second = hash_key(key), hash_key(key)
    assert first != second  # a fresh salt each time
    assert first.startswith("scrypt$16384$8$1$")
    assert key not in first
    assert verify_key(key, first)
    assert verify_key(key, second)
    assert not verify_key(key[:-1] + ("a" if key[-1] != "a" else "b"), first)
    assert not verify_key(key, "not a hash")


def test_each_scope_includes_the_smaller_ones() -> None:
    assert Scope.ADMIN.allows(Scope.WRITE)
    assert Scope.ADMIN.allows(Scope.READ)
    assert Scope.WRITE.allows(Scope.READ)
    assert not Scope.READ.allows(Scope.WRITE)
    assert not Scope.WRITE.allows(Scope.ADMIN)
