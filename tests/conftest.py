"""Shared fixtures: a real PostgreSQL server, fresh migrated databases, the reference
model service over real HTTP, and the agent served on a loopback port.

PostgreSQL: `AOI_TEST_DATABASE_URL` names a server to create test databases on (CI
uses the machine's); unset, the tests start the embedded server, as `run.py` does.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from app.config import Settings
from app.services.database.embedded import start_embedded_postgres
from app.services.database.migrations import upgrade_database
from app.services.model_service.reference import ReferenceService, start_reference_service
from tests.support import (
    SAMPLES_DIR,
    TEMPLATE_DB,
    AgentServer,
    S3Emulator,
    admin_connect,
    board_images,
    create_database,
    drop_database,
    serve_agent,
)


@pytest.fixture(scope="session")
def postgres_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a PostgreSQL server on which tests may create databases."""
    configured = os.environ.get("AOI_TEST_DATABASE_URL")
    if configured:
        yield configured
        return
    embedded = start_embedded_postgres(tmp_path_factory.mktemp("pg"))
    try:
        yield embedded.database_url
    finally:
        embedded.stop()


@pytest.fixture(scope="session")
def migrated_template(postgres_server_url: str) -> Iterator[str]:
    """A migrated database used as the template of every test database."""
    url = create_database(postgres_server_url)
    upgrade_database(url)
    name = url.rsplit("/", 1)[-1].split("?", 1)[0]
    with admin_connect(postgres_server_url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}" WITH (FORCE)')
        conn.execute(f'ALTER DATABASE "{name}" RENAME TO "{TEMPLATE_DB}"')
    yield TEMPLATE_DB
    with admin_connect(postgres_server_url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}" WITH (FORCE)')


@pytest.fixture(scope="module")
def database_url(postgres_server_url: str, migrated_template: str) -> Iterator[str]:
    """A fresh, migrated database for one test module."""
    url = create_database(postgres_server_url, template=migrated_template)
    yield url
    drop_database(url)


@pytest.fixture(scope="session")
def reference_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReferenceService]:
    """The reference model service, a real child process on a loopback port."""
    service = start_reference_service(tmp_path_factory.mktemp("ref") / "service.log")
    yield service
    service.stop()


@pytest.fixture(scope="session")
def template_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReferenceService]:
    """A second reference model service, with the golden-board (template) engine and the
    repository samples' templates: the other model version of the shadow and compare
    tests (the session's `reference_service` runs the classical engine)."""
    service = start_reference_service(
        tmp_path_factory.mktemp("ref-template") / "service.log",
        extra_env={
            "REFERENCE_SERVICE_ENGINE": "template",
            "REFERENCE_SERVICE_TEMPLATES_DIR": str(SAMPLES_DIR / "templates"),
        },
    )
    yield service
    service.stop()


def agent_settings(
    data_dir: Path, database_url: str, service_url: str, **extra: object
) -> Settings:
    """Settings of a test agent: its own data folder and database, fast back-off."""
    defaults: dict[str, object] = {
        "segformer_backoff_base_s": 0.05,
        "segformer_timeout_s": 10,
        "stalled_job_after_s": 3,
    }
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database_url,
        segformer_service_url=service_url,
        data_dir=data_dir,
        **{**defaults, **extra},  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def agent(
    tmp_path_factory: pytest.TempPathFactory,
    database_url: str,
    reference_service: ReferenceService,
) -> Iterator[AgentServer]:
    """The agent on a fresh database, talking to the reference model service."""
    settings = agent_settings(tmp_path_factory.mktemp("data"), database_url, reference_service.url)
    with serve_agent(settings) as server:
        yield server


@pytest.fixture
def client(agent: AgentServer) -> Iterator[httpx2.Client]:
    """An HTTP client of the module's agent."""
    with httpx2.Client(base_url=agent.url, timeout=60) as c:
        yield c


@pytest.fixture(scope="session")
def deeppcb(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """150 distinct real boards: the six DeepPCB samples shipped in samples/deeppcb, then
    flipped, turned and shifted copies of them (`tests.support.board_images`)."""
    return board_images(tmp_path_factory.mktemp("boards"))


@pytest.fixture(scope="session")
def s3_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Emulator]:
    """moto's S3 server (an emulator of the S3 API, not AWS) on a loopback port, with the
    standard AWS credential variables pointing at it for this test run."""
    emulator = S3Emulator(tmp_path_factory.mktemp("s3") / "moto.log").start()
    with pytest.MonkeyPatch.context() as patch:
        for name, value in emulator.env.items():
            if name.startswith("AWS_"):
                patch.setenv(name, value)
        yield emulator
    emulator.stop()
