"""`aoi-agent retention [--dry-run]` against a real database and real files."""

from __future__ import annotations

import time
from pathlib import Path

import httpx2
from typer.testing import CliRunner

from app.cli import cli
from app.services.model_service.reference import ReferenceService
from tests.conftest import agent_settings
from tests.support import create_database, db_rows, drop_database, make_image, serve_agent


def test_dry_run_reports_then_the_run_deletes(
    tmp_path: Path,
    postgres_server_url: str,
    migrated_template: str,
    reference_service: ReferenceService,
) -> None:
    url = create_database(postgres_server_url, template=migrated_template)
    try:
        data = tmp_path / "data"
        settings = agent_settings(data, url, reference_service.url)
        with serve_agent(settings) as agent, httpx2.Client(base_url=agent.url, timeout=60) as c:
            for i in range(2):
                assert (
                    c.post("/api/upload", files={"image": (f"b{i}.png", make_image())}).status_code
                    == 200
                )
        env = {"DATABASE_URL": url, "DATA_DIR": str(data)}
        off = CliRunner().invoke(cli, ["retention", "--dry-run"], env=env)
        assert off.exit_code == 0, off.output
        assert "retention is off" in off.output

        env["RETENTION_DAYS_PASS"] = str(1 / 86400)  # one second
        time.sleep(1.5)
        dry = CliRunner().invoke(cli, ["retention", "--dry-run"], env=env)
        assert dry.exit_code == 0, dry.output
        assert "pass: would delete 2 accepted before" in dry.output
        assert "defect: kept (no retention set)" in dry.output
        assert db_rows(url, "SELECT count(*) FROM images") == [(2,)]

        done = CliRunner().invoke(cli, ["retention"], env=env)
        assert done.exit_code == 0, done.output
        assert "pass: deleted 2 accepted before" in done.output
        assert db_rows(url, "SELECT count(*) FROM images") == [(0,)]
        assert not [p for p in (data / "uploads").rglob("*") if p.is_file()]
    finally:
        drop_database(url)
