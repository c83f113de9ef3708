"""Test helpers: real PostgreSQL databases, the agent served over real HTTP, data makers."""

from __future__ import annotations

import concurrent.futures
import contextlib
import io
import os
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import uvicorn
from PIL import Image as PILImage
from psycopg import sql
from sqlalchemy.engine import make_url

from app.config import Settings
from app.main import create_app
from app.services.model_service.reference import free_loopback_port

REPO_ROOT = Path(__file__).resolve().parents[1]
DEEPPCB_DIR = Path(os.environ.get("DEEPPCB_DIR", REPO_ROOT.parent / "shared/datasets/deeppcb"))
# One per test run, so that several runs can share a server (CI, parallel worktrees).
TEMPLATE_DB = f"aoi_test_template_{os.getpid()}"


def deeppcb_images(count: int | None = None) -> list[Path]:
    """DeepPCB tested images, sorted by name (empty when the data set is absent)."""
    folder = DEEPPCB_DIR / "images"
    images = sorted(folder.glob("*.jpg")) if folder.is_dir() else []
    return images[:count] if count else images


def database_url(server_url: str, name: str) -> str:
    """`server_url` pointed at database `name`."""
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def admin_connect(server_url: str) -> psycopg.Connection[Any]:
    """An autocommit connection to the server's maintenance database."""
    url = make_url(server_url).set(drivername="postgresql", database="postgres")
    return psycopg.connect(url.render_as_string(hide_password=False), autocommit=True)


def create_database(server_url: str, template: str | None = None) -> str:
    """Create a fresh database (optionally a copy of `template`); returns its URL."""
    name = f"aoi_test_{secrets.token_hex(4)}"
    with admin_connect(server_url) as conn:
        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            query = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        conn.execute(query)
    return database_url(server_url, name)


def drop_database(url: str) -> None:
    """Drop a test database, closing its connections first."""
    name = make_url(url).database
    with admin_connect(url) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def db_rows(url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    """Run a read query directly against the database (not through the agent)."""
    conn_url = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conn_url) as conn:
        return list(conn.execute(query, params).fetchall())


class AgentServer:
    """The agent served by uvicorn in a background thread on a free loopback port."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings.model_copy(update={"port": free_loopback_port()})
        self.url = f"http://127.0.0.1:{self.settings.port}"
        self.api_key: str | None = None  # a key for tests of an agent that requires keys
        self._server = uvicorn.Server(
            uvicorn.Config(
                create_app(self.settings),
                host="127.0.0.1",
                port=self.settings.port,
                log_config=None,
                log_level="warning",
                lifespan="on",
            )
        )
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def start(self) -> AgentServer:
        """Start serving; waits until the agent accepts requests."""
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the agent did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        """Stop serving and wait for the lifespan to finish."""
        self._server.should_exit = True
        self._thread.join(timeout=30)


@contextlib.contextmanager
def serve_agent(settings: Settings) -> Iterator[AgentServer]:
    """Serve the agent for the duration of the block."""
    server = AgentServer(settings).start()
    try:
        yield server
    finally:
        server.stop()


def make_image(fmt: str = "PNG", size: tuple[int, int] = (64, 48)) -> bytes:
    """A small synthetic image in `fmt`, bytes."""
    buffer = io.BytesIO()
    PILImage.new("L", size, color=200).save(buffer, fmt)
    return buffer.getvalue()


def wait_until(predicate: Any, timeout_s: float = 60.0, interval_s: float = 0.2) -> Any:
    """Poll `predicate()` until it returns something truthy; returns it.

    Raises:
        TimeoutError: it never did within `timeout_s`.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise TimeoutError(f"condition not met within {timeout_s} s")


def create_api_key(database_url: str, name: str, scope: str) -> str:
    """Create an API key directly in the agent's database (as `aoi-agent keys create`
    does); returns the key."""
    import asyncio

    from app.services.database.session import create_engine, create_session_factory, unit_of_work
    from app.services.security.keys import KeyService, Scope
    from app.services.security.repository import ApiKeyRepository

    async def create() -> str:
        engine = create_engine(
            Settings(_env_file=None, db_pool_min_size=1),  # type: ignore[call-arg]
            database_url,
        )
        try:
            async with unit_of_work(create_session_factory(engine)) as session:
                _, key = await KeyService(ApiKeyRepository(session)).create(name, Scope(scope))
                return key
        finally:
            await engine.dispose()

    # In a thread of its own: Playwright's sync API keeps an event loop running in this one.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, create()).result()
