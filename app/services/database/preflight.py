"""A first connection to DATABASE_URL at start-up, so a wrong URL gets one sentence that
says what to do instead of a driver traceback."""

from __future__ import annotations

import psycopg
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from app.services.database.session import libpq_conninfo

CONNECT_TIMEOUT_S = 10
"""How long the first connection may take before the database counts as unreachable."""


class DatabaseNotReady(RuntimeError):
    """DATABASE_URL does not lead to a usable database; the message says what to do."""


def check_database(database_url: str) -> None:
    """Connect once to `database_url` and run `SELECT 1`.

    Raises:
        DatabaseNotReady: the URL is malformed, the server does not answer, refuses the
            user or password, or has no such database (the message names which, never the
            password).
    """
    try:
        url = make_url(database_url)
        conninfo = libpq_conninfo(database_url)
    except ArgumentError as exc:
        raise DatabaseNotReady(
            "DATABASE_URL is not a valid URL; write it as"
            " postgresql://user:password@host:5432/aoi_db"
        ) from exc
    socket_dir = url.query.get("host")
    host = url.host or (socket_dir if isinstance(socket_dir, str) else None) or "localhost"
    where = f"{host}:{url.port or 5432}"
    try:
        with psycopg.connect(conninfo, connect_timeout=CONNECT_TIMEOUT_S) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        raise DatabaseNotReady(explain(exc, where, url.username or "", url.database or "")) from exc


def explain(exc: psycopg.Error, where: str, user: str, database: str) -> str:
    """One sentence for a failed first connection: what went wrong and what to do."""
    message = str(exc)
    lowered = message.lower()
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate == "28P01" or "password authentication failed" in lowered:
        return (
            f"PostgreSQL at {where} refused the password of user '{user}': put the right"
            " password in DATABASE_URL (postgresql://user:password@host:port/database)"
        )
    if "no password supplied" in lowered:
        return (
            f"PostgreSQL at {where} wants a password for user '{user}': add it to"
            " DATABASE_URL (postgresql://user:password@host:port/database)"
        )
    if sqlstate == "3D000" or ("database" in lowered and "does not exist" in lowered):
        return (
            f"PostgreSQL at {where} has no database '{database}': create it (e.g. createdb -h"
            f" {where.rsplit(':', 1)[0]} -U {user or 'postgres'} {database}) or fix the name"
            " in DATABASE_URL"
        )
    if "role" in lowered and "does not exist" in lowered:
        return (
            f"PostgreSQL at {where} has no user '{user}': create it (CREATE ROLE {user} LOGIN"
            " PASSWORD '...') or fix the user in DATABASE_URL"
        )
    if "no pg_hba.conf entry" in lowered:
        return (
            f"PostgreSQL at {where} does not let user '{user}' connect from this machine: add"
            " a host line for it to the server's pg_hba.conf, or fix DATABASE_URL"
        )
    if "resolve host" in lowered or "could not translate host name" in lowered:
        return (
            f"the host of DATABASE_URL ({where}) has no address: fix the host name in DATABASE_URL"
        )
    if "timeout" in lowered or "timed out" in lowered:
        return (
            f"PostgreSQL at {where} did not answer within {CONNECT_TIMEOUT_S} s: check that"
            " the server runs and that no firewall is in the way, or fix DATABASE_URL"
        )
    if "refused" in lowered or "connection failed" in lowered:
        return (
            f"nothing answers at {where} (PostgreSQL not running there?): start PostgreSQL,"
            " fix the host and port in DATABASE_URL, or leave DATABASE_URL unset to use the"
            " embedded database"
        )
    first_line = message.strip().splitlines()[0] if message.strip() else type(exc).__name__
    return f"cannot use the database at {where} ({first_line}); check DATABASE_URL"
