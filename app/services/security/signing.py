"""Signed, expiring download links (itsdangerous, HMAC-SHA256).

The secret comes from SECRET_KEY, or else from `DATA_DIR/secret_key`, made on first use,
so links survive a restart and every process of one agent agrees. (Web sessions are
records in the database: `app/services/security/sessions.py`.)
"""

from __future__ import annotations

import hashlib
import math
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

from itsdangerous import Signer

from app.errors import AgentError

SECRET_FILE = "secret_key"


class LinkInvalid(AgentError):
    """The download link's signature does not match (changed or truncated link)."""

    status_code = 403
    error = "link_invalid"


class LinkExpired(AgentError):
    """The download link is past its expiry."""

    status_code = 403
    error = "link_expired"


def load_secret(configured: str | None, data_dir: Path) -> bytes:
    """The signing secret: `configured` (SECRET_KEY) when set, else the content of
    `data_dir/secret_key`, written with 32 random bytes (hex) when missing."""
    if configured:
        return configured.encode()
    path = data_dir / SECRET_FILE
    if not path.is_file():
        data_dir.mkdir(parents=True, exist_ok=True)
        # Exclusive create: two processes starting at once keep the first one's secret.
        try:
            with path.open("x", encoding="ascii") as out:
                out.write(secrets.token_hex(32))
            path.chmod(0o600)  # owner only (on Windows this only clears read-only)
        except FileExistsError:
            pass
    return path.read_text(encoding="ascii").strip().encode()


LINK_PARAMS = ("expires", "signature")
_INVALID_LINK = (
    "this download link is not valid (it was changed, cut short, or has a query parameter"
    " added, removed or repeated); ask the API again for the resource to get a fresh link,"
    " or send an API key"
)


def _canonical(path: str, expires: str, params: list[tuple[str, str]]) -> str:
    """What a link's signature covers: its path, its expiry and every other query
    parameter, sorted by name (the order a client sends them in does not matter)."""
    message = f"{path}|{expires}"
    if params:
        message += "|" + urlencode(sorted(params))
    return message


@dataclass(frozen=True)
class LinkSigner:
    """Signs a path and its whole query: `?<params>&expires=<unix s>&signature=<b64>`. The
    signature covers the path, the expiry and every other parameter, so a link serves
    exactly the resource, and the rendition, it was made for.

    Expiry is rounded up to a step (at most 10 minutes) so one resource gets the same
    link for a while: answers stay comparable and browsers can cache the images.
    """

    secret: bytes
    ttl_s: int

    def _signer(self) -> Signer:
        return Signer(self.secret, salt="aoi-download-link", digest_method=hashlib.sha256)

    def sign(
        self, path: str, params: Mapping[str, str] | None = None, now: float | None = None
    ) -> str:
        """`path` (from the root, e.g. `/download/json/{id}`) with `params` (none may be
        `expires` or `signature`) and its expiry and signature, as a root-relative URL."""
        step = max(1, min(self.ttl_s, 600))
        expires = str(math.ceil(((now or time.time()) + self.ttl_s) / step) * step)
        pairs = sorted((params or {}).items())
        if any(name in LINK_PARAMS for name, _ in pairs):
            raise ValueError(f"a signed link's own parameters cannot be set: {LINK_PARAMS}")
        signature = self._signer().get_signature(_canonical(path, expires, pairs)).decode()
        query = urlencode([*pairs, ("expires", expires), ("signature", signature)])
        return f"{path}?{query}"

    def verify(self, path: str, query: str, now: float | None = None) -> None:
        """Check a link presented for `path` with the raw query string `query`.

        Raises:
            LinkInvalid: the signature does not match this path, expiry and the other
                parameters exactly (one added, removed, changed or repeated), or the query
                cannot be read.
            LinkExpired: it matches, but the expiry has passed.
        """
        try:
            pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
        except ValueError as exc:
            raise LinkInvalid(_INVALID_LINK) from exc
        names = [name for name, _ in pairs]
        if len(set(names)) != len(names) or not all(name in names for name in LINK_PARAMS):
            raise LinkInvalid(_INVALID_LINK)
        values = dict(pairs)
        expires, signature = values["expires"], values["signature"]
        others = [(name, value) for name, value in pairs if name not in LINK_PARAMS]
        if not expires.isascii() or not expires.isdigit():
            raise LinkInvalid(_INVALID_LINK)
        if not self._signer().verify_signature(_canonical(path, expires, others), signature):
            raise LinkInvalid(_INVALID_LINK)
        if int(expires) < (now or time.time()):
            when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(int(expires)))
            raise LinkExpired(
                f"this download link expired at {when}; ask the API again (e.g. GET"
                " /api/images/{id}) for a fresh link, or send an API key"
            )
