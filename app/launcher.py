"""`python run.py`: everything the agent needs, started in order, stopped on Ctrl-C or SIGTERM.

1. settings from the environment and `.env`; logging; storage folders;
2. the listening socket on HOST:PORT (so a busy port is reported before anything starts);
   the object store's bucket and credentials (a probe object written and deleted);
3. the embedded PostgreSQL when DATABASE_URL is unset, else a first connection to it;
4. Alembic migrations;
5. the reference model service on a loopback port when SEGFORMER_SERVICE_URL(S) is unset;
6. the API (with the queue worker in-process); the "running at" line once it serves.
   With WEB_CONCURRENCY > 1, that many API worker processes share the socket (uvicorn's
   process manager), each with its own database pool and queue worker.

A start-up problem prints one `error:` line on stderr saying what to do, and exit status 1.

Ctrl-C, SIGTERM (`kill`, `timeout`, systemd, `docker stop`) and CTRL_BREAK on Windows stop
everything in the reverse order, each step bounded in time, and exit with status 0: the
API stops taking requests and finishes those in flight (REQUESTS_GRACE_S), the queue
worker finishes or releases its jobs, then the reference model service and the embedded
PostgreSQL stop. While it runs, the reference model service is restarted when it exits
(`app.services.model_service.supervision`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import importlib.util
import logging
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import uvicorn
from pydantic import ValidationError
from uvicorn.supervisors import Multiprocess

from app.api.http_protocol import AgentServerConfig, RequestLimits
from app.config import Settings
from app.errors import StorageMisconfigured, StorageUnavailable
from app.services.database.embedded import EmbeddedPostgresError, start_embedded_postgres
from app.services.database.migrations import upgrade_database
from app.services.database.preflight import DatabaseNotReady, check_database
from app.services.model_service.reference import ReferenceServiceError
from app.services.model_service.supervision import ReferenceSupervisor
from app.services.security.signing import load_secret
from app.services.storage import open_storage
from app.utils.logging import configure_logging

# prometheus_client's multi-process folder (docs/metrics.md).
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"

logger = logging.getLogger("app.launcher")

# Seconds the API gives requests in flight once asked to stop (uvicorn's graceful shutdown).
REQUESTS_GRACE_S = 10
# Seconds an API worker process (WEB_CONCURRENCY > 1) gets to stop before it is killed:
# its requests' grace, then its queue worker's and database pool's shutdown.
WORKER_PROCESS_STOP_S = REQUESTS_GRACE_S + 15


class StartupError(RuntimeError):
    """Something the agent needs is missing; the message says what to do."""


def error_message(exc: BaseException) -> str | None:
    """The one-line message (without `error: `) for what an operator must fix, shared by
    `run.py` and every `aoi-agent` command; None for anything else (a bug: let it raise).
    A message of several lines (some libraries add a debug dump) is cut to its first.

    Covers: invalid settings (pydantic `ValidationError`, every refused setting named by
    its variable, never its value, which may be a secret), `StartupError`, the agent's
    domain errors (`AgentError`: their `detail`), `OSError` (what and which file), and
    exception groups made only of these (their messages joined with `; `).
    """
    message = _operator_message(exc)
    if message is None:
        return None
    lines = message.strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _operator_message(exc: BaseException) -> str | None:
    from app.errors import AgentError

    if isinstance(exc, ValidationError):
        problems = [
            f"{'.'.join(str(part) for part in e['loc']).upper() or 'settings'}: {e['msg']}"
            for e in exc.errors()
        ]
        return f"invalid setting {'; '.join(problems)} (check your environment and .env)"
    if isinstance(exc, StartupError):
        return str(exc)
    if isinstance(exc, AgentError):
        return exc.detail
    if isinstance(exc, OSError):
        if exc.strerror and exc.filename is not None:
            return f"{exc.strerror}: {exc.filename}"
        return str(exc) or type(exc).__name__
    if isinstance(exc, BaseExceptionGroup):
        messages = [error_message(inner) for inner in exc.exceptions]
        if all(messages):
            return "; ".join(dict.fromkeys(m for m in messages if m))
    return None


# errno of "address in use" / "access denied" / "address not available", POSIX and Windows.
_IN_USE = {errno.EADDRINUSE, 10048}
_DENIED = {errno.EACCES, 10013}
_NOT_HERE = {errno.EADDRNOTAVAIL, 10049}


def listen(host: str, port: int) -> socket.socket:
    """A socket listening on `host`:`port`, for uvicorn to serve on.

    Raises:
        StartupError: the port is taken, not allowed, or `host` is not this machine's.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=2048)
    except OSError as exc:
        code = exc.errno if exc.errno is not None else getattr(exc, "winerror", None)
        if code in _IN_USE:
            message = (
                f"port {port} on {host} is already in use (is the agent already running?):"
                f" stop the other program, or start on another port, e.g. PORT={port + 1}"
            )
        elif code in _DENIED:
            message = (
                f"not allowed to listen on {host}:{port}: choose a port from 1024 up"
                " (PORT=8000), or run with the rights this port needs"
            )
        elif code in _NOT_HERE or isinstance(exc, socket.gaierror):
            message = (
                f"HOST={host} is not an address of this machine: use 127.0.0.1 (this machine"
                " only) or 0.0.0.0 (every network interface)"
            )
        else:
            message = f"cannot listen on {host}:{port} ({exc.strerror or exc}); check HOST and PORT"
        raise StartupError(message) from exc


class AgentServer(uvicorn.Server):
    """uvicorn's server that prints the "running at" line only once it really serves."""

    def __init__(self, config: uvicorn.Config, ready_line: str) -> None:
        super().__init__(config)
        self.ready_line = ready_line

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Start as uvicorn does; then announce the address (not when startup failed)."""
        await super().startup(sockets)
        if not self.should_exit:
            print(self.ready_line, flush=True)


def use_selector_event_loop_on_windows() -> None:
    """psycopg's async mode needs the selector event loop, which Windows does not default to."""
    if sys.platform == "win32":
        asyncio.set_event_loop_policy(asyncio.WindowsSelectorEventLoopPolicy())  # type: ignore[attr-defined]


def check_cfx_client(settings: Settings) -> None:
    """With CFX_BROKER_URL set, the AMQP 1.0 client (python-qpid-proton, kept out of
    requirements.txt because it compiles: docs/cfx.md) must be installed.

    Raises:
        StartupError: CFX_BROKER_URL is set and the client is not installed.
    """
    if settings.cfx_broker_url and importlib.util.find_spec("proton") is None:
        raise StartupError(
            "CFX_BROKER_URL is set, but the AMQP client python-qpid-proton is not installed:"
            " python -m pip install -r requirements-cfx.txt (needs a C compiler,"
            " docs/cfx.md), or unset CFX_BROKER_URL"
        )


@contextlib.contextmanager
def prepared(settings: Settings) -> Iterator[Settings]:
    """Start the database and model service the settings lack; yield the completed settings.

    Raises:
        StartupError: a part would not start, the database would not migrate, or the
            object store refuses the agent (`check_storage`).
    """
    with contextlib.ExitStack() as stack:
        updates: dict[str, str] = {}
        check_cfx_client(settings)
        warning = check_storage(settings)
        if warning:
            print(warning, file=sys.stderr)
        database_url = stack.enter_context(prepared_database(settings, announce=True))
        if settings.database_url is None:
            updates["database_url"] = database_url
        if not settings.model_service_urls:
            reference = ReferenceSupervisor(
                settings.resolved_log_dir / "reference-service.log",
                max_image_pixels=settings.max_image_pixels,
            )
            stack.callback(reference.stop)
            try:
                updates["segformer_service_url"] = reference.start()
            except ReferenceServiceError as exc:
                raise StartupError(str(exc)) from exc
            print(
                f"reference model service: {reference.url}"
                " (set SEGFORMER_SERVICE_URL to use another)"
            )
        yield settings.model_copy(update=updates)


@contextlib.contextmanager
def prepared_database(settings: Settings, announce: bool = False) -> Iterator[str]:
    """The agent's database, migrated: DATABASE_URL (checked with one connection first), or
    the embedded server under DATA_DIR (joined when the agent is running, else started for
    the block); yields its URL. `announce` prints where the embedded server keeps its data.

    Raises:
        StartupError: the database would not start, connect or migrate; the message says
            what to do.
    """
    with contextlib.ExitStack() as stack:
        database_url = settings.database_url
        if database_url is None:
            try:
                embedded = start_embedded_postgres(settings.resolved_data_dir)
            except EmbeddedPostgresError as exc:
                raise StartupError(str(exc)) from exc
            stack.callback(embedded.stop)
            database_url = embedded.database_url
            if announce:
                print(f"embedded PostgreSQL: data in {settings.resolved_data_dir / 'postgres'}")
        else:
            try:
                check_database(database_url)
            except DatabaseNotReady as exc:
                raise StartupError(str(exc)) from exc
        try:
            upgrade_database(database_url)
        except Exception as exc:
            raise StartupError(
                f"could not connect to or migrate the database ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}); check DATABASE_URL"
            ) from exc
        yield database_url


def auth_notice(settings: Settings) -> str:
    """One or two lines on API keys for the start-up console: whether they are required,
    and, when none exists yet, the command that creates the first admin key."""
    if not settings.auth_required:
        return "API keys: not required (the agent listens on loopback only; AUTH_MODE=auto)"
    why = f"AUTH_MODE={settings.auth_mode}, HOST={settings.host}"
    if asyncio.run(_active_key_count(settings.database_url or "")) > 0:
        return f"API keys: required ({why})"
    return (
        f"API keys: required ({why}) and none exists yet. Create the first admin key with:\n"
        "  aoi-agent keys create --name admin --scope admin"
    )


async def _active_key_count(database_url: str) -> int:
    """API keys not revoked, in the database at `database_url`."""
    from app.services.database.session import create_engine, create_session_factory
    from app.services.security.keys import KeyService
    from app.services.security.repository import ApiKeyRepository

    engine = create_engine(Settings(_env_file=None, db_pool_min_size=1), database_url)
    try:
        async with create_session_factory(engine)() as session:
            return await KeyService(ApiKeyRepository(session)).count_active()
    finally:
        await engine.dispose()


def check_storage(settings: Settings) -> str | None:
    """Check that the store lets the agent list, write and delete (with an object store:
    its bucket exists and the credentials are accepted), with a probe object written and
    deleted. Returns a warning line when the store does not answer now: the agent starts
    anyway, since an outage is waited out (uploads get 503, batch images wait).

    Raises:
        StartupError: the bucket is missing or the credentials are refused; the message
            names the bucket and what to do.
    """

    async def verify() -> None:
        storage = open_storage(settings)
        try:
            await storage.verify(write=True)
        finally:
            await storage.aclose()

    try:
        asyncio.run(verify())
    except StorageMisconfigured as exc:
        raise StartupError(exc.detail) from exc
    except StorageUnavailable as exc:
        return (
            f"warning: {exc.detail}; starting anyway: uploads get 503 and batch images wait"
            " until the store answers (GET /api/health shows it)"
        )
    return None


def storage_notice(settings: Settings) -> str:
    """One line on where files are kept; with an object store, a reminder when SECRET_KEY
    is unset (each machine would then sign links and sessions with its own secret)."""
    storage = open_storage(settings)
    line = f"storage: {storage.location} ({storage.backend})"
    if settings.uses_object_store and not settings.secret_key:
        line += (
            "; SECRET_KEY is unset: set the same value on every agent, or download links"
            " and web sessions made by one agent are refused by the others"
        )
    return line


def serve_worker_processes(settings: Settings, sock: socket.socket) -> None:
    """Serve with WEB_CONCURRENCY API worker processes on `sock`, until Ctrl-C or SIGTERM.

    The workers read their settings from the environment, completed here with the
    database and model service this launcher started (if it did); the signing secret is
    made now, once, so that no two workers make different ones.

    Raises:
        StartupError: WATCH_DIRS is set (each worker would watch the same folders).
    """
    if settings.watch_dirs:
        raise StartupError(
            "WATCH_DIRS with WEB_CONCURRENCY > 1 would have every worker process take the"
            " same files: watch the folders from one agent with WEB_CONCURRENCY=1, or run"
            " `aoi-agent watch` beside the agents (docs/deployment.md)"
        )
    load_secret(settings.secret_key, settings.resolved_data_dir)
    if settings.database_url:
        os.environ["DATABASE_URL"] = settings.database_url
    if settings.segformer_service_url:
        os.environ["SEGFORMER_SERVICE_URL"] = settings.segformer_service_url
    os.environ["WEB_CONCURRENCY"] = str(settings.web_concurrency)
    config = AgentServerConfig(
        "app.main:create_worker_app",
        RequestLimits.from_settings(settings),
        factory=True,
        workers=settings.web_concurrency,
        host=settings.host,
        port=settings.port,
        log_config=None,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=REQUESTS_GRACE_S,
    )
    print(
        f"AOI Inference Agent: http://{settings.host}:{sock.getsockname()[1]}/ (API docs at"
        f" /docs), {settings.web_concurrency} API worker processes",
        flush=True,
    )
    BoundedMultiprocess(config, sockets=[sock]).run()


class BoundedMultiprocess(Multiprocess):
    """uvicorn's process manager, whose shutdown ends in bounded time: an API worker
    process still running WORKER_PROCESS_STOP_S seconds after it was asked to stop is
    killed (uvicorn itself would wait for it forever)."""

    def join_all(self) -> None:
        """Wait for every worker process to exit; kill those still running at the deadline."""
        deadline = time.monotonic() + WORKER_PROCESS_STOP_S
        for worker in self.processes:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                logger.warning(
                    "API worker process did not stop within %d s; killing it",
                    WORKER_PROCESS_STOP_S,
                    extra={"pid": worker.pid},
                )
                worker.kill()
                worker.process.join()


def stop_on_signals() -> None:
    """Make SIGTERM (and CTRL_BREAK on Windows) stop the agent as Ctrl-C does: the first
    one raises KeyboardInterrupt in the main thread (uvicorn, while it serves, first shuts
    down gracefully and then raises it again), so every part started so far is stopped
    on the way out. Later ones are ignored: the shutdown under way is bounded in time.

    Without this, SIGTERM's default action ends the process at once, leaving the
    reference model service and the embedded PostgreSQL running.
    """
    stopping = False

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        if stopping:
            logger.info("already stopping; signal %s ignored", signal.Signals(signum).name)
            return
        stopping = True
        logger.info("stopping on %s", signal.Signals(signum).name)
        raise KeyboardInterrupt

    for name in ("SIGINT", "SIGTERM", "SIGBREAK"):  # SIGBREAK: Windows only
        signum = getattr(signal, name, None)
        if signum is not None:
            signal.signal(signum, handler)


def prepare_metrics_dir(settings: Settings) -> Path | None:
    """Prometheus multi-process mode for WEB_CONCURRENCY > 1 API processes: unless
    PROMETHEUS_MULTIPROC_DIR is set already, use DATA_DIR/prometheus, emptied of the last
    run's files, and set it in the environment the API processes inherit. Must run before
    anything in this process imports `prometheus_client` (which reads it at import).

    Returns:
        The folder, or None: one API process (metrics stay in memory).
    """
    configured = os.environ.get(METRICS_DIR_ENV)
    if configured:
        return Path(configured)
    if settings.web_concurrency <= 1:
        return None
    folder = settings.resolved_data_dir / "prometheus"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    os.environ[METRICS_DIR_ENV] = str(folder)
    return folder


def main() -> int:
    """Run the agent until Ctrl-C or SIGTERM; returns the process exit code (0 after a
    stop by either)."""
    use_selector_event_loop_on_windows()
    stop_on_signals()
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"error: {error_message(exc)}", file=sys.stderr)
        return 1
    configure_logging(settings.log_level, settings.resolved_log_dir)
    open_storage(settings).ensure_directories()
    prepare_metrics_dir(settings)
    try:
        with (
            contextlib.closing(listen(settings.host, settings.port)) as sock,
            prepared(settings) as ready,
        ):
            from app.main import create_app

            print(auth_notice(ready))
            print(storage_notice(ready))
            if ready.web_concurrency > 1:
                serve_worker_processes(ready, sock)
                return 0
            server = AgentServer(
                AgentServerConfig(
                    create_app(ready),
                    RequestLimits.from_settings(ready),
                    host=ready.host,
                    port=ready.port,
                    log_config=None,
                    log_level=ready.log_level.lower(),
                    timeout_graceful_shutdown=REQUESTS_GRACE_S,
                ),
                ready_line=f"AOI Inference Agent: http://{ready.host}:{sock.getsockname()[1]}/"
                " (API docs at /docs)",
            )
            server.run(sockets=[sock])
            if not server.started:
                raise StartupError(
                    "the agent did not start; the reason is in"
                    f" {ready.resolved_log_dir / 'error.log'}"
                )
    except StartupError as exc:
        print(f"error: {error_message(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0
