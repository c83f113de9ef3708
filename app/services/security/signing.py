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
from dataclasses import dataclass
from pathlib import Path

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


@dataclass(frozen=True)
class LinkSigner:
    """Signs a path with its expiry, `?expires=<unix s>&signature=<b64>`.

    Expiry is rounded up to a step (at most 10 minutes) so one resource gets the same
    link for a while: answers stay comparable and browsers can cache the images.
    """

    secret: bytes
    ttl_s: int

    def _signer(self) -> Signer:
        return Signer(self.secret, salt="aoi-download-link", digest_method=hashlib.sha256)

    def sign(self, path: str, now: float | None = None) -> str:
        """`path` (from the root, e.g. `/download/json/{id}`) with its signature query."""
        step = max(1, min(self.ttl_s, 600))
        expires = math.ceil(((now or time.time()) + self.ttl_s) / step) * step
        signature = self._signer().get_signature(f"{path}|{expires}").decode()
        return f"{path}?expires={expires}&signature={signature}"

    def verify(self, path: str, expires: str, signature: str, now: float | None = None) -> None:
        """Check a link presented for `path`.

        Raises:
            LinkInvalid: the signature does not match this path and expiry.
            LinkExpired: it matches, but the expiry has passed.
        """
        if not self._signer().verify_signature(f"{path}|{expires}", signature):
            raise LinkInvalid(
                "this download link is not valid (it was changed or cut short); ask the API"
                " again for the resource to get a fresh link, or send an API key"
            )
        if int(expires) < (now or time.time()):
            when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(int(expires)))
            raise LinkExpired(
                f"this download link expired at {when}; ask the API again (e.g. GET"
                " /api/images/{id}) for a fresh link, or send an API key"
            )
