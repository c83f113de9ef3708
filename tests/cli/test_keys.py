"""`aoi-agent keys create/list/revoke` against a real database: the one named by
DATABASE_URL, and the embedded one under DATA_DIR (as `run.py` starts it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx2
import pytest
from typer.testing import CliRunner

from app.cli import cli
from app.config import Settings
from app.launcher import auth_notice
from app.services.model_service.reference import ReferenceService
from tests.conftest import agent_settings
from tests.support import (
    REPO_ROOT,
    AgentServer,
    create_database,
    db_rows,
    drop_database,
    serve_agent,
)


def _keys(env: dict[str, str], *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["keys", *args], env=env)
    return result.exit_code, result.output


def test_create_list_revoke_against_the_agents_database(
    database_url: str, agent: AgentServer, tmp_path: Path
) -> None:
    env = {"DATABASE_URL": database_url, "DATA_DIR": str(tmp_path)}
    code, output = _keys(env, "create", "--name", "line-3", "--scope", "write")
    assert code == 0, output
    key = output.strip().splitlines()[-1]
    assert key.startswith("aoi_")
    assert len(key) == 56
    assert "shown only now" in output
    ((scope, key_hash),) = db_rows(
        database_url, "SELECT scope, key_hash FROM api_keys WHERE name = 'line-3'"
    )
    assert scope == "write"
    assert key not in key_hash

    code, output = _keys(env, "list")
    assert code == 0
    assert "line-3" in output
    assert key[:12] in output
    assert key not in output

    code, output = _keys(env, "create", "--name", "line-3", "--scope", "read")
    assert code == 1
    assert "already exists" in output
    code, output = _keys(env, "create", "--name", "x", "--scope", "root")
    assert code == 2

    code, output = _keys(env, "revoke", "line-3")
    assert code == 0, output
    assert db_rows(database_url, "SELECT revoked_at IS NOT NULL FROM api_keys")[-1] == (True,)
    code, output = _keys(env, "revoke", "nobody")
    assert code == 1
    assert "no key named 'nobody'" in output


def test_revoke_ends_the_keys_web_sessions_at_once(
    database_url: str, reference_service: ReferenceService, tmp_path: Path
) -> None:
    """A browser signed in with a key is signed out by `aoi-agent keys revoke` at its next
    request, while the agent keeps running; another key's session stays open."""
    env = {"DATABASE_URL": database_url, "DATA_DIR": str(tmp_path)}
    made = {}
    for name in ("tablet-3", "tablet-4"):
        code, output = _keys(env, "create", "--name", name, "--scope", "read")
        assert code == 0, output
        made[name] = output.strip().splitlines()[-1]
    settings = agent_settings(tmp_path, database_url, reference_service.url, auth_mode="required")
    with serve_agent(settings) as agent:
        browsers = {name: httpx2.Client(base_url=agent.url, timeout=60) for name in made}
        try:
            for name, browser in browsers.items():
                signin = browser.post(
                    "/signin", data={"key": made[name]}, headers={"Origin": agent.url}
                )
                assert signin.status_code == 303
                assert browser.get("/api/images").status_code == 200
            code, output = _keys(env, "revoke", "tablet-3")
            assert code == 0, output
            assert "web sessions are ended" in output
            assert browsers["tablet-3"].get("/api/images").status_code == 401
            assert browsers["tablet-3"].get("/history").headers["location"].startswith("/signin")
            assert browsers["tablet-4"].get("/api/images").status_code == 200
        finally:
            for browser in browsers.values():
                browser.close()


def _keys_process(env: dict[str, str], *args: str) -> tuple[int, str]:
    """`aoi-agent keys ...` in a process of its own, as an operator would run it."""
    result = subprocess.run(
        [sys.executable, "-c", "from app.cli import main; main()", "keys", *args],
        env={**os.environ, **env},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return result.returncode, result.stdout + result.stderr


def test_run_py_names_the_command_for_the_first_admin_key(
    postgres_server_url: str, migrated_template: str
) -> None:
    url = create_database(postgres_server_url, template=migrated_template)
    try:
        exposed = Settings(_env_file=None, host="0.0.0.0", database_url=url)  # type: ignore[call-arg]
        local = Settings(_env_file=None, host="127.0.0.1", database_url=url)  # type: ignore[call-arg]
        assert auth_notice(local).startswith("API keys: not required")
        assert auth_notice(exposed).endswith(
            "none exists yet. Create the first admin key with:\n"
            "  aoi-agent keys create --name admin --scope admin"
        )
        code, output = _keys({"DATABASE_URL": url}, "create", "--name", "admin", "--scope", "admin")
        assert code == 0, output
        assert auth_notice(exposed) == "API keys: required (AUTH_MODE=auto, HOST=0.0.0.0)"
    finally:
        drop_database(url)


def test_keys_with_the_embedded_database_while_the_agent_uses_it(tmp_path: Path) -> None:
    """No DATABASE_URL: the command starts (or joins) the embedded PostgreSQL under DATA_DIR,
    like `run.py`; a key it makes opens the API of an agent on that same database."""
    from app.launcher import prepared_database
    from app.services.model_service.reference import start_reference_service

    env = {"DATA_DIR": str(tmp_path), "DATABASE_URL": ""}
    code, output = _keys_process(env, "create", "--name", "first", "--scope", "admin")
    assert code == 0, output
    key = output.strip().splitlines()[-1]
    assert (tmp_path / "postgres" / "PG_VERSION").is_file()

    reference = start_reference_service(tmp_path / "ref.log")
    try:
        settings = Settings(_env_file=None, data_dir=tmp_path)  # type: ignore[call-arg]
        with prepared_database(settings) as url:
            agent_env = agent_settings(tmp_path, url, reference.url, auth_mode="required")
            with serve_agent(agent_env) as agent:
                code, output = _keys_process(env, "create", "--name", "second", "--scope", "read")
                assert code == 0, output
                second = output.strip().splitlines()[-1]
                with httpx2.Client(base_url=agent.url, timeout=60) as c:
                    assert c.get("/api/keys", headers={"X-API-Key": key}).status_code == 200
                    assert c.get("/api/images", headers={"X-API-Key": second}).status_code == 200
                    code, output = _keys_process(env, "revoke", "second")
                    assert code == 0
                    assert c.get("/api/images", headers={"X-API-Key": second}).status_code == 401
                    # the agent's database survived the command's start and stop
                    assert c.get("/api/health/ready").status_code == 200
                code, output = _keys_process(env, "list")
                assert "first" in output
                assert "second" in output
    finally:
        reference.stop()


@pytest.mark.parametrize("args", [["keys", "create"], ["keys", "revoke"]])
def test_keys_commands_need_their_arguments(args: list[str]) -> None:
    assert CliRunner().invoke(cli, args).exit_code == 2
