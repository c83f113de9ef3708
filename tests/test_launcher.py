"""`python run.py` refusing to start: one `error:` line on stderr saying what to do, exit
status 1, no "running at" line and no traceback. Real processes: a port held by another
socket, a closed port, a missing database, and a server that wants a password."""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from app import launcher
from app.config import Settings
from app.services.database.embedded import start_embedded_postgres
from app.services.model_service.reference import free_loopback_port
from tests.support import REPO_ROOT, S3Emulator, database_url


def run_agent(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`python run.py` with a clean environment plus `env`; no model service is needed
    (the failures come first), so it points at a closed port."""
    unset = ("DATABASE_URL", "SEGFORMER_SERVICE_URL", "HOST", "PORT")
    clean = {k: v for k, v in os.environ.items() if k not in unset}
    clean.update(
        {
            "DATA_DIR": str(tmp_path / "data"),
            "SEGFORMER_SERVICE_URL": f"http://127.0.0.1:{free_loopback_port()}/",
            "PORT": str(free_loopback_port()),
            **env,
        }
    )
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "run.py")],
        cwd=tmp_path,  # no .env here
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_refused(done: subprocess.CompletedProcess[str], *words: str) -> str:
    """Exit 1, exactly one stderr line `error: ...` containing `words`; returns it."""
    assert done.returncode == 1, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ")
    for word in words:
        assert word in lines[0]
    assert "AOI Inference Agent: http" not in done.stdout
    assert "Traceback" not in done.stdout + done.stderr
    return lines[0]


def test_busy_port(tmp_path: Path, postgres_server_url: str) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        done = run_agent(tmp_path, PORT=str(port), DATABASE_URL=postgres_server_url)
    assert_refused(done, f"port {port}", "already in use", f"PORT={port + 1}")


def test_host_that_is_not_this_machine(tmp_path: Path, postgres_server_url: str) -> None:
    done = run_agent(tmp_path, HOST="192.0.2.1", DATABASE_URL=postgres_server_url)
    assert_refused(done, "HOST=192.0.2.1", "127.0.0.1", "0.0.0.0")


def test_unreachable_database(tmp_path: Path) -> None:
    closed = free_loopback_port()
    done = run_agent(tmp_path, DATABASE_URL=f"postgresql://aoi:pw@127.0.0.1:{closed}/aoi_db")
    assert_refused(done, f"127.0.0.1:{closed}", "start PostgreSQL", "DATABASE_URL")


def test_missing_database(tmp_path: Path, postgres_server_url: str) -> None:
    url = database_url(postgres_server_url, "aoi_no_such_database")
    line = assert_refused(run_agent(tmp_path, DATABASE_URL=url), "aoi_no_such_database")
    assert "createdb" in line


@pytest.fixture(scope="module")
def password_server() -> Iterator[str]:
    """A PostgreSQL of its own (the embedded one) where user `aoi` needs password `right`;
    yields a URL of user `aoi` with no password. (Its folder is not under pytest's
    tmp_path: run as root, the server runs as another user, who cannot enter that.)"""
    data = Path(tempfile.mkdtemp(prefix="aoi-password-"))
    server = start_embedded_postgres(data)
    try:
        with psycopg.connect(server.database_url, autocommit=True) as conn:
            conn.execute("CREATE ROLE aoi LOGIN PASSWORD 'right'")
            hba = data / "postgres" / "pg_hba.conf"
            hba.write_text("local all aoi scram-sha-256\n" + hba.read_text())
            conn.execute("SELECT pg_reload_conf()")
        yield server.database_url.replace("postgres:@", "aoi@", 1)
    finally:
        server.stop()
        shutil.rmtree(data, ignore_errors=True)


def test_wrong_password(tmp_path: Path, password_server: str) -> None:
    wrong = password_server.replace("aoi@", "aoi:wrong@", 1)
    line = assert_refused(run_agent(tmp_path, DATABASE_URL=wrong), "password", "'aoi'")
    assert "wrong" not in line  # the password itself is never printed
    missing = run_agent(tmp_path, DATABASE_URL=password_server)
    assert_refused(missing, "password", "DATABASE_URL")
    right = password_server.replace("aoi@", "aoi:right@", 1)
    with psycopg.connect(right) as conn:  # the server itself is fine
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_several_api_processes_get_a_fresh_shared_metrics_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.config import Settings
    from app.launcher import METRICS_DIR_ENV, prepare_metrics_dir

    settings = Settings(_env_file=None, data_dir=tmp_path)  # type: ignore[call-arg]
    monkeypatch.delenv(METRICS_DIR_ENV, raising=False)
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    assert prepare_metrics_dir(settings) is None, "one process keeps its metrics in memory"
    assert METRICS_DIR_ENV not in os.environ

    stale = tmp_path / "prometheus" / "counter_123.db"
    stale.parent.mkdir()
    stale.write_bytes(b"last run")
    folder = prepare_metrics_dir(settings.model_copy(update={"web_concurrency": 3}))
    assert folder == tmp_path.resolve() / "prometheus"
    assert os.environ[METRICS_DIR_ENV] == str(folder)
    assert not stale.exists(), "the last run's counts are not added to this run's"


def test_missing_bucket(tmp_path: Path, s3_emulator: S3Emulator) -> None:
    """Checked before the database: no database is needed to refuse."""
    line = assert_refused(
        run_agent(
            tmp_path,
            STORAGE_URL="s3://aoi-no-such-bucket/line-1",
            S3_ENDPOINT_URL=s3_emulator.url,
        ),
        "the bucket 'aoi-no-such-bucket'",
        "does not exist",
        s3_emulator.url,
    )
    assert "create it" in line


def test_credentials_the_store_refuses(tmp_path: Path) -> None:
    store = S3Emulator(tmp_path / "moto.log", check_credentials=True).start()
    try:
        done = run_agent(
            tmp_path,
            STORAGE_URL="s3://aoi-images/line-1",
            S3_ENDPOINT_URL=store.url,
            AWS_ACCESS_KEY_ID="not-a-key",
            AWS_SECRET_ACCESS_KEY="wrong",
            AWS_REGION="us-east-1",
        )
    finally:
        store.stop()
    assert_refused(
        done,
        "s3://aoi-images/line-1",
        "refuses the agent (InvalidAccessKeyId)",
        "AWS_ACCESS_KEY_ID",
    )


def test_a_store_that_does_not_answer_is_waited_for_not_refused(tmp_path: Path) -> None:
    """Nothing listens on the store's port: the agent warns and goes on (here to the
    next check, a closed database port, which does refuse)."""
    done = run_agent(
        tmp_path,
        STORAGE_URL="s3://aoi-images/line-1",
        S3_ENDPOINT_URL=f"http://127.0.0.1:{free_loopback_port()}",
        S3_TIMEOUT_S="2",
        AWS_ACCESS_KEY_ID="test",
        AWS_SECRET_ACCESS_KEY="test",
        AWS_REGION="us-east-1",
        DATABASE_URL=f"postgresql://postgres@127.0.0.1:{free_loopback_port()}/postgres",
    )
    warning, error = done.stderr.strip().splitlines()
    assert warning.startswith("warning: the object store s3://aoi-images/line-1 failed")
    assert "starting anyway" in warning
    assert error.startswith("error: ")
    assert "DATABASE_URL" in error


def test_cfx_without_its_amqp_client_is_one_clear_start_up_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """python-qpid-proton is installed here (CI installs requirements-cfx.txt), so its absence
    is simulated by making the import system not find it (a stand-in: uninstalling a package
    mid-run is not something a test can do to the shared environment)."""
    settings = Settings(_env_file=None, cfx_broker_url="amqp://127.0.0.1:5672")  # type: ignore[call-arg]
    launcher.check_cfx_client(settings)  # installed: nothing to say
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name == "proton" else real_find_spec(name, *args),
    )
    with pytest.raises(launcher.StartupError, match=r"pip install -r requirements-cfx\.txt"):
        launcher.check_cfx_client(settings)
    launcher.check_cfx_client(Settings(_env_file=None))  # type: ignore[call-arg]  # CFX off
