"""The agent's version, and URLs as they may be stored or shown."""

from __future__ import annotations

from functools import cache
from importlib.metadata import PackageNotFoundError, version
from urllib.parse import urlsplit, urlunsplit


@cache
def installed_version() -> str:
    """The installed version of the agent (`0+unknown` when it runs uninstalled)."""
    try:
        return version("aoi-inference-agent")
    except PackageNotFoundError:
        return "0+unknown"


def without_userinfo(url: str) -> str:
    """`url` without a `user:password@` part, so no credential is stored or shown."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port is not None else "")
    return urlunsplit(parts._replace(netloc=netloc))
