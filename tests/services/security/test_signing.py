"""Signed download links (no database needed)."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qsl

import pytest

from app.services.security.signing import (
    LinkExpired,
    LinkInvalid,
    LinkSigner,
    load_secret,
)

PATH = "/download/image/20261122_050144_H39XTO/overlay"
THUMB = "/images/20261122_050144_H39XTO/thumbnail"


def _split(link: str) -> tuple[str, str]:
    path, _, query = link.partition("?")
    return path, query


def test_a_link_verifies_until_it_expires() -> None:
    signer = LinkSigner(b"s" * 32, ttl_s=3600)
    path, query = _split(signer.sign(PATH, now=1_000_000))
    assert path == PATH
    expires = int(dict(parse_qsl(query))["expires"])
    assert 1_003_600 <= expires <= 1_003_600 + 600
    signer.verify(PATH, query, now=1_003_599)
    with pytest.raises(LinkExpired, match="expired at"):
        signer.verify(PATH, query, now=expires + 1)


def test_one_resource_keeps_one_link_within_a_step() -> None:
    signer = LinkSigner(b"s" * 32, ttl_s=86400)
    assert signer.sign(PATH, now=1_200_001) == signer.sign(PATH, now=1_200_300)


def test_a_link_with_parameters_verifies_in_any_order() -> None:
    signer = LinkSigner(b"s" * 32, ttl_s=3600)
    path, query = _split(signer.sign(THUMB, {"size": "512", "kind": "input"}))
    assert path == THUMB
    signer.verify(THUMB, query)
    reordered = "&".join(reversed(query.split("&")))
    signer.verify(THUMB, reordered)


def _flip_signature(query: str) -> str:
    # The first character: the last one of a base64 HMAC also holds unused padding bits,
    # so changing it may not change the signature at all.
    head, signature = query.rsplit("signature=", 1)
    return head + "signature=" + ("A" if signature[0] != "A" else "B") + signature[1:]


@pytest.mark.parametrize(
    "change",
    [
        lambda p, q: (p.replace("input", "overlay"), q),
        lambda p, q: (p, re.sub(r"expires=(\d+)", lambda m: f"expires={int(m[1]) + 1}", q)),
        lambda p, q: (p, _flip_signature(q)),
        lambda p, q: (p, re.sub(r"signature=[^&]*", "signature=", q)),
        lambda p, q: (p, re.sub(r"expires=\d+", "expires=soon", q)),
        lambda p, q: (p, re.sub(r"expires=\d+&", "", q)),
        lambda p, q: (p, q + "&size=1024"),
        lambda p, q: (p, "size=1024&" + q),
        lambda p, q: (p, q + "&kind=input"),
        lambda p, q: (p, q + "&size="),
        lambda p, q: (p, q + "&" + q),
        lambda p, q: (p, q + "&signature=" + q.rsplit("signature=", 1)[1]),
        lambda p, q: (p, q + "&&"),
        lambda p, q: (p, q + "&junk"),
    ],
    ids=[
        "other-path",
        "later-expiry",
        "changed-signature",
        "empty-signature",
        "expiry-not-a-number",
        "expiry-missing",
        "one-more-parameter",
        "one-more-parameter-first",
        "another-rendition",
        "empty-parameter",
        "everything-twice",
        "signature-twice",
        "empty-pairs",
        "name-without-value",
    ],
)
def test_a_changed_link_is_invalid(change: object) -> None:
    signer = LinkSigner(b"s" * 32, ttl_s=3600)
    path, query = change(*_split(signer.sign("/download/image/20261122_050144_H39XTO/input")))  # type: ignore[operator]
    with pytest.raises(LinkInvalid):
        signer.verify(path, query)


@pytest.mark.parametrize(
    "change",
    [
        lambda q: q.replace("size=512", "size=1024"),
        lambda q: q.replace("&kind=input", "").replace("kind=input&", ""),
        lambda q: q + "&kind=overlay",
    ],
    ids=["changed-parameter", "removed-parameter", "repeated-parameter"],
)
def test_a_link_with_parameters_serves_only_them(change: object) -> None:
    signer = LinkSigner(b"s" * 32, ttl_s=3600)
    _, query = _split(signer.sign(THUMB, {"size": "512", "kind": "input"}))
    with pytest.raises(LinkInvalid):
        signer.verify(THUMB, change(query))  # type: ignore[operator]


def test_a_link_cannot_be_made_with_its_own_parameters() -> None:
    with pytest.raises(ValueError, match="own parameters"):
        LinkSigner(b"s" * 32, ttl_s=60).sign(THUMB, {"expires": "9999999999"})


def test_links_of_another_secret_are_invalid() -> None:
    link = LinkSigner(b"a" * 32, ttl_s=60).sign(PATH)
    with pytest.raises(LinkInvalid):
        LinkSigner(b"b" * 32, ttl_s=60).verify(*_split(link))


def test_secret_file_is_made_once_and_kept(tmp_path: Path) -> None:
    first = load_secret(None, tmp_path)
    assert len(first) == 64
    assert load_secret(None, tmp_path) == first
    assert load_secret("configured", tmp_path) == b"configured"
