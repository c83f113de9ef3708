"""Test helpers: real PostgreSQL databases, the agent served over real HTTP, data makers."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import inspect
import io
import os
import re
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import numpy as np
import psycopg
import uvicorn
from PIL import Image as PILImage
from psycopg import sql
from sqlalchemy.engine import make_url
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.api.http_protocol import AgentServerConfig, RequestLimits
from app.config import Settings
from app.main import create_app
from app.services.model_service.reference import free_loopback_port

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLES_DIR = REPO_ROOT / "samples" / "deeppcb"
"""The real boards every test uses: six DeepPCB pairs shipped with the repository, in
DeepPCB's layout (`images/`, `templates/`, `annotations/`; samples/deeppcb/README.md)."""
BOARD_COUNT = 150
"""How many distinct boards `board_images` makes: as many as the DeepPCB test split has."""
# One per test run, so that several runs can share a server (CI, parallel worktrees).
TEMPLATE_DB = f"aoi_test_template_{os.getpid()}"


def sample_images() -> list[Path]:
    """The shipped DeepPCB tested images (640 x 640 greyscale JPEGs), sorted by name."""
    return sorted((SAMPLES_DIR / "images").glob("*.jpg"))


# The eight symmetries of the square (None: as scanned); with a shift, a sample makes
# 8 x 4 distinct real-looking boards.
_TURNS: tuple[PILImage.Transpose | None, ...] = (None, *PILImage.Transpose)
_SHIFT_STEP_PX = (37, 23)  # rows, columns


def board_variant(source: Path, number: int) -> bytes:
    """Variant `number` (0 to 31) of a board image file, as JPEG bytes: turned or mirrored
    by one of the square's eight symmetries (`number % 8`), then shifted down and right by
    `number // 8` times (37, 23) pixels with the board mirrored into the gap, so the image
    stays a whole board of the same size with all its defects; number 0 is the file's own
    bytes.

    Raises:
        ValueError: `number` is outside 0 to 31.
    """
    if not 0 <= number < 4 * len(_TURNS):
        raise ValueError(f"variant {number} of {source.name}: 0 to {4 * len(_TURNS) - 1}")
    if number == 0:
        return source.read_bytes()
    turn, steps = _TURNS[number % len(_TURNS)], number // len(_TURNS)
    with PILImage.open(source) as img:
        board = img.transpose(turn) if turn is not None else img.copy()
    pixels = np.asarray(board)
    rows, cols = (steps * step for step in _SHIFT_STEP_PX)
    height, width = pixels.shape[:2]
    gap = ((rows, 0), (cols, 0), *[(0, 0)] * (pixels.ndim - 2))  # colour planes unpadded
    shifted = np.pad(pixels, gap, mode="reflect")[:height, :width]
    buffer = io.BytesIO()
    PILImage.fromarray(shifted).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def template_of(board: Path) -> bytes:
    """The golden (defect-free) board of a board `board_images` made, as image bytes: a
    sample's own DeepPCB template, or for a copy (`v<index>_<sample name>`) the sample's
    template turned and shifted as that copy was, so that the two still line up."""
    match = re.fullmatch(r"v(\d{3})_(.+)", board.name)
    if match is None:
        return (SAMPLES_DIR / "templates" / board.name).read_bytes()
    index, name = int(match.group(1)), match.group(2)
    number = index // len(sample_images())
    return board_variant(SAMPLES_DIR / "templates" / name, number)


def board_images(
    folder: Path, count: int = BOARD_COUNT, sources: list[Path] | None = None
) -> list[Path]:
    """`count` distinct real boards written to `folder`, for tests that upload more boards
    than the six samples: the `sources` (JPEG files; default: `sample_images()`) themselves
    first (own names and bytes), then their variants (`board_variant`), one source after
    the other so that neighbours in the list are different boards; variant names are
    `v<index>_<source name>`.

    Returns:
        The paths, in that order; no two files have the same bytes.

    Raises:
        ValueError: more boards asked for than 32 variants of each sample make.
    """
    samples = sources or sample_images()
    folder.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for index in range(count):
        number, source = divmod(index, len(samples))
        sample = samples[source]
        path = folder / (sample.name if number == 0 else f"v{index:03d}_{sample.name}")
        path.write_bytes(board_variant(sample, number))
        paths.append(path)
    assert len({p.read_bytes() for p in paths}) == len(paths), "two boards have the same bytes"
    return paths


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


def db_execute(url: str, query: str, *params: Any) -> None:
    """Run a write query directly against the database and commit it."""
    conn_url = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conn_url) as conn:
        conn.execute(query, params)


class AgentServer:
    """The agent served by uvicorn in a background thread on a free loopback port."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings.model_copy(update={"port": free_loopback_port()})
        self.url = f"http://127.0.0.1:{self.settings.port}"
        self.api_key: str | None = None  # a key for tests of an agent that requires keys
        self._server = uvicorn.Server(
            AgentServerConfig(
                create_app(self.settings),
                RequestLimits.from_settings(self.settings),
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


def raw_exchange(port: int, request: bytes, host: str = "127.0.0.1") -> tuple[bytes, bytes]:
    """Send `request` as raw bytes on a new connection and read until the server closes;
    returns (head, body) of the answer."""
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return head, body


def trickle(port: int, head: bytes, pace_s: float, limit_s: float) -> tuple[float, bytes]:
    """Send `head`, then one byte every `pace_s` seconds until the server answers and
    closes, or `limit_s` passes; returns (seconds until then, the answer)."""
    began = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=limit_s) as sock:
        sock.sendall(head)
        sock.settimeout(pace_s)
        answer = b""
        while time.monotonic() - began < limit_s:
            try:
                piece = sock.recv(65536)
            except TimeoutError:
                with contextlib.suppress(OSError):
                    sock.sendall(b"x")
                continue
            if not piece:
                break
            answer += piece
    return time.monotonic() - began, answer


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


def sample_analysis(width: int, height: int) -> dict[str, Any]:
    """A model-service analysis of a `width` x `height` image with one pin-hole region: the
    PRD's example region (14 px area, perimeter 15.31, circularity 0.75)."""
    return {
        "image_shape": {"height": height, "width": width},
        "classes": {
            "pin_hole": {
                "class_id": 6,
                "total_regions": 1,
                "total_area_pixels": 14,
                "regions": [
                    {
                        "region_id": 1,
                        "centroid": {"x": 3.5, "y": 2.0},
                        "bounding_box": {"x": 1, "y": 1, "width": 7, "height": 5},
                        "area_pixels": 14,
                        "perimeter": 15.31,
                        "major_axis": 6.4,
                        "minor_axis": 4.35,
                        "circularity": 0.75,
                        "aspect_ratio": 1.47,
                    }
                ],
            }
        },
    }


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


class AgentProcess:
    """`python run.py` as a child process, as an administrator would start it."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.url = f"http://127.0.0.1:{env['PORT']}"
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    @classmethod
    def in_folder(
        cls, folder: Path, database_url: str, model_url: str, **settings: str
    ) -> AgentProcess:
        """An agent (not started) on a free loopback port with its data and `agent.log` in
        `folder`, the database `database_url`, the model service `model_url`, warnings
        only in its log, and `settings` (environment names) on top."""
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "SEGFORMER_SERVICE_URL": model_url,
            "DATA_DIR": str(folder / "data"),
            "PORT": str(free_loopback_port()),
            "LOG_LEVEL": "WARNING",
            **settings,
        }
        return cls(env, folder / "agent.log")

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "run.py"],
                cwd=REPO_ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

        def ready() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"agent exited: {self.log.read_text()[-2000:]}")
            try:
                return httpx2.get(self.url + "/api/health", timeout=1).status_code == 200
            except httpx2.HTTPError:
                return False

        wait_until(ready, timeout_s=60)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()  # SIGKILL on POSIX, TerminateProcess on Windows: no clean-up runs
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)


class ScriptedService:
    """A model service whose `/upload` answers come from a list of callables (sync, or
    async for an answer that takes time); for failures the reference service cannot show
    on demand (hang, slowness, garbage). `GET /files/{name}` serves `file_image` (a small
    PNG by default), so answers may name result images by URL; `file_calls` counts them."""

    def __init__(self, file_image: bytes | None = None) -> None:
        self.script: list[Callable[[], Any]] = []
        self.file_image = file_image or make_image("PNG", (8, 8))
        self.file_calls = 0
        self.health: Callable[[], Response] = lambda: JSONResponse(
            {"status": "ok", "engine": "scripted", "classes": []}
        )
        self.calls = 0
        self.port = free_loopback_port()
        self.url = f"http://127.0.0.1:{self.port}/"

        async def upload(request: Request) -> Response:
            form = await request.form()
            await form.close()
            self.calls += 1
            step = self.script[min(self.calls, len(self.script)) - 1]
            answer = step()
            return await answer if inspect.isawaitable(answer) else answer

        async def health(request: Request) -> Response:
            return self.health()

        async def image(request: Request) -> Response:
            self.file_calls += 1
            return Response(self.file_image, media_type="image/png")

        app = Starlette(
            routes=[
                Route("/upload", upload, methods=["POST"]),
                Route("/health", health),
                Route("/files/{name}", image),
            ]
        )
        self.server = uvicorn.Server(
            uvicorn.Config(
                app, host="127.0.0.1", port=self.port, log_config=None, log_level="warning"
            )
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ScriptedService:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(5)


class ModelServiceProxy:
    """The reference model service behind a proxy on its own loopback port, which a test
    can slow down (`delay_s`), make answer 503 (`unavailable`), or stop and start again
    (a real outage: connection refused). Used where the reference service cannot fail or
    be slow on demand; every answer it gives is the reference service's own."""

    def __init__(self, upstream: str, port: int | None = None) -> None:
        self.upstream = upstream.rstrip("/")
        self.port = port or free_loopback_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.delay_s = 0.0
        self.unavailable = False
        self.calls = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    async def _forward(self, request: Request) -> Response:
        if request.url.path == "/upload":
            self.calls += 1
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
        if self.unavailable:
            return JSONResponse({"detail": "model service is restarting"}, status_code=503)
        async with httpx2.AsyncClient(timeout=120) as client:
            answer = await client.request(
                request.method,
                self.upstream + request.url.path,
                content=await request.body(),
                headers={"content-type": request.headers.get("content-type", "")},
            )
        return Response(
            answer.content,
            status_code=answer.status_code,
            media_type=answer.headers.get("content-type"),
        )

    def start(self) -> ModelServiceProxy:
        """Listen (again) on the proxy's port."""
        app = Starlette(
            routes=[
                Route("/upload", self._forward, methods=["POST"]),
                Route("/health", self._forward),
            ]
        )
        self._server = uvicorn.Server(
            uvicorn.Config(
                app, host="127.0.0.1", port=self.port, log_config=None, log_level="warning"
            )
        )
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        while not self._server.started:
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Stop listening: connections are refused until `start`."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(10)
            self._server = None


class S3Emulator:
    """moto's S3 server — an *emulator* of the S3 API, not AWS — as a child process on a
    loopback port, for the object-storage tests. Each test makes its own bucket."""

    ACCESS_KEY = "testing"
    SECRET_KEY = "testing"
    REGION = "us-east-1"

    def __init__(self, log: Path, *, check_credentials: bool = False) -> None:
        self.port = free_loopback_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        # moto accepts any credentials unless told to check them from the first request
        # (then only its IAM users' keys pass, and this class's own do not).
        self.check_credentials = check_credentials
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> S3Emulator:
        """Start the server; waits until it answers."""
        env = {**os.environ}
        if self.check_credentials:
            env["INITIAL_NO_AUTH_ACTION_COUNT"] = "0"
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )

        def ready() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"moto server exited: {self.log.read_text()[-2000:]}")
            try:
                # moto's own API: answers whether or not credentials are checked.
                return httpx2.get(self.url + "/moto-api/", timeout=1).status_code < 500
            except httpx2.HTTPError:
                return False

        try:
            wait_until(ready, timeout_s=60)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)

    @property
    def env(self) -> dict[str, str]:
        """The standard AWS variables an agent needs to reach this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": self.SECRET_KEY,
            "AWS_REGION": self.REGION,
            "S3_ENDPOINT_URL": self.url,
        }

    def _client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id=self.ACCESS_KEY,
            aws_secret_access_key=self.SECRET_KEY,
            region_name=self.REGION,
        )

    def new_bucket(self) -> str:
        """Create an empty bucket; returns its name."""
        name = f"aoi-test-{secrets.token_hex(4)}"
        self._client().create_bucket(Bucket=name)
        return name

    def delete_bucket(self, name: str) -> None:
        """Delete an empty bucket (as an operator might, behind the agent's back)."""
        self._client().delete_bucket(Bucket=name)

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every key in `bucket` under `prefix`, sorted."""
        client, keys = self._client(), []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys += [item["Key"] for item in page.get("Contents", [])]
        return sorted(keys)

    def read(self, bucket: str, key: str) -> bytes:
        """One object's bytes."""
        body: bytes = self._client().get_object(Bucket=bucket, Key=key)["Body"].read()
        return body


def local_files(folder: Path) -> list[Path]:
    """Every file under `folder` (none when it does not exist)."""
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout_s: float = 300
) -> subprocess.CompletedProcess[str]:
    """`aoi-agent ARGS` as a script runs it: a process of its own (`python -m app.cli`, this
    checkout first on the path), stdout and stderr captured through pipes (not a terminal),
    `env` added to this process's environment. Never raises for a non-zero exit status."""
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **(env or {})},
        cwd=cwd or REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
