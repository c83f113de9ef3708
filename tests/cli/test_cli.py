"""`aoi-agent upload` against a running agent."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli import cli, collect_images
from tests.support import AgentServer, db_rows, make_image


def test_collect_images_walks_folders_and_skips_other_files(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.JPG").write_bytes(b"x")
    (tmp_path / "sub" / "b.png").write_bytes(b"x")
    (tmp_path / "sub" / "notes.txt").write_text("x")
    found = collect_images([tmp_path, tmp_path / "a.JPG"])
    assert [p.name for p in found] == ["a.JPG", "b.png"]


def test_upload_command_sends_a_folder_as_a_batch_and_waits(
    tmp_path: Path, agent: AgentServer, deeppcb: list[Path]
) -> None:
    for path in deeppcb[60:63]:
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "broken.png").write_bytes(b"not an image")
    (tmp_path / "extra.bmp").write_bytes(make_image("BMP"))
    result = CliRunner().invoke(cli, ["upload", str(tmp_path), "--url", agent.url])
    assert result.exit_code == 0, result.output
    assert "4 succeeded, 0 failed, 1 rejected" in result.output
    assert "skipped broken.png" in result.output
    names = {
        n
        for (n,) in db_rows(
            agent.settings.database_url or "", "SELECT original_filename FROM inspections"
        )
    }
    assert {p.name for p in deeppcb[60:63]} | {"extra.bmp"} <= names


def test_upload_command_reports_an_unreachable_agent(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(make_image())
    result = CliRunner().invoke(cli, ["upload", str(tmp_path), "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 1
    assert "cannot reach the agent" in result.output


@pytest.mark.parametrize("args", [["upload", "/no/such/folder"], ["upload"]])
def test_upload_command_rejects_bad_arguments(args: list[str]) -> None:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
