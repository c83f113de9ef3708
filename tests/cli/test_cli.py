"""`aoi-agent upload` against a running agent."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli import LINK_IN_FOLDER, NOT_AN_IMAGE, cli, collect_images
from tests.support import AgentServer, db_rows, make_image


def test_collect_images_walks_folders_and_names_every_file_it_leaves_out(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.JPG").write_bytes(b"x")
    (tmp_path / "sub" / "b.png").write_bytes(b"x")
    (tmp_path / "sub" / "notes.txt").write_text("x")
    (tmp_path / "readme.md").write_text("x")
    found = collect_images([tmp_path, tmp_path / "a.JPG", tmp_path / "readme.md"])
    assert [p.name for p in found.images] == ["a.JPG", "b.png"]
    assert [(p.relative_to(tmp_path).as_posix(), why) for p, why in found.skipped] == [
        ("readme.md", NOT_AN_IMAGE),  # found in the folder and named: listed once
        ("sub/notes.txt", NOT_AN_IMAGE),
    ]


@pytest.mark.skipif(sys.platform == "win32", reason="symbolic links need a privilege on Windows")
def test_collect_images_does_not_follow_links_found_in_folders(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "boards").mkdir(parents=True)
    (outside / "board.png").write_bytes(make_image())
    (outside / "boards" / "c.png").write_bytes(make_image())
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "real.png").write_bytes(make_image())
    (folder / "link.png").symlink_to(outside / "board.png")
    (folder / "linked-dir").symlink_to(outside / "boards", target_is_directory=True)

    found = collect_images([folder, outside / "board.png"])

    assert found.images == [(folder / "real.png").resolve(), (outside / "board.png").resolve()]
    assert [(p.name, why) for p, why in found.skipped] == [
        ("link.png", LINK_IN_FOLDER),
        ("linked-dir", LINK_IN_FOLDER),
    ]


def test_upload_command_sends_a_folder_as_a_batch_and_waits(
    tmp_path: Path, agent: AgentServer, deeppcb: list[Path]
) -> None:
    for path in deeppcb[60:63]:
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "broken.png").write_bytes(b"not an image")
    (tmp_path / "extra.bmp").write_bytes(make_image("BMP"))
    (tmp_path / "notes.txt").write_text("not an image")
    result = CliRunner().invoke(
        cli, ["upload", str(tmp_path), str(tmp_path / "notes.txt"), "--url", agent.url]
    )
    assert result.exit_code == 1, result.output  # two files were not inspected
    assert "4 succeeded, 0 failed, 0 unfinished, 2 skipped" in result.output
    assert f"skipped {tmp_path / 'broken.png'}: " in result.output
    assert f"skipped {tmp_path / 'notes.txt'}: {NOT_AN_IMAGE}" in result.output
    (batch_id,) = {
        line.split()[1].rstrip(":")
        for line in result.output.splitlines()
        if line.startswith("batch B_")
    }
    assert f"ZIP of {batch_id}: {agent.url}/download/batch/{batch_id}" in result.output
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


def test_upload_command_exits_0_when_every_image_was_inspected(
    tmp_path: Path, agent: AgentServer, deeppcb: list[Path]
) -> None:
    shutil.copy(deeppcb[64], tmp_path / deeppcb[64].name)
    result = CliRunner().invoke(cli, ["upload", str(tmp_path), "--url", agent.url])
    assert result.exit_code == 0, result.output
    assert "1 succeeded, 0 failed, 0 unfinished, 0 skipped" in result.output
    assert "/download/batch/B_" in result.output


def test_upload_command_exits_1_when_the_agent_refuses_every_file(
    tmp_path: Path, agent: AgentServer
) -> None:
    (tmp_path / "empty.png").write_bytes(b"")
    result = CliRunner().invoke(cli, ["upload", str(tmp_path), "--url", agent.url])
    assert result.exit_code == 1, result.output
    assert f"skipped {tmp_path / 'empty.png'}: " in result.output
