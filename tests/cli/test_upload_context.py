"""`aoi-agent upload` with board context: options for every image, `--manifest FILE` per
file name, both merged; bad context refused before anything is sent (exit 2)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli import cli
from tests.support import AgentServer, db_rows


def contexts(agent: AgentServer) -> dict[str, tuple[object, ...]]:
    """Context rows by original file name."""
    db = agent.settings.database_url
    assert db is not None
    rows = db_rows(
        db,
        "SELECT i.original_filename, c.board_serial, c.product, c.side, c.lot, c.lane"
        " FROM inspection_contexts c JOIN inspections i USING (img_unique_id)",
    )
    return {r[0]: tuple(r[1:]) for r in rows}


def test_options_and_manifest_give_each_image_its_context(
    tmp_path: Path, agent: AgentServer, deeppcb: list[Path]
) -> None:
    folder = tmp_path / "boards"
    folder.mkdir()
    a, b = deeppcb[70], deeppcb[71]
    for p in (a, b):
        shutil.copy(p, folder / p.name)
    manifest = tmp_path / "manifest.json"
    manifest.write_text(
        json.dumps({a.name: {"board_serial": "SN-CLI-A", "side": "bottom", "lane": 1}})
    )
    result = CliRunner().invoke(
        cli,
        [
            "upload",
            str(folder),
            "--url",
            agent.url,
            "--product",
            "CTRL-CLI",
            "--side",
            "top",
            "--lane",
            "2",
            "--manifest",
            str(manifest),
        ],
    )
    assert result.exit_code == 0, result.output
    rows = contexts(agent)
    assert rows[a.name] == ("SN-CLI-A", "CTRL-CLI", "bottom", None, 1)
    assert rows[b.name] == (None, "CTRL-CLI", "top", None, 2)


@pytest.mark.parametrize(
    ("args", "manifest_text"),
    [
        (["--side", "left"], None),
        (["--lot", "x" * 100], None),
        (["--board-serial", "SN\x01"], None),
        (["--lane", "0"], None),
        ([], '{"nosuch.jpg": {"board_serial": "SN1"}}'),
        ([], "{not json"),
    ],
)
def test_bad_context_exits_2_and_sends_nothing(
    tmp_path: Path,
    agent: AgentServer,
    deeppcb: list[Path],
    args: list[str],
    manifest_text: str | None,
) -> None:
    shutil.copy(deeppcb[72], tmp_path / deeppcb[72].name)
    extra = []
    if manifest_text is not None:
        manifest = tmp_path.parent / f"{tmp_path.name}.json"
        manifest.write_text(manifest_text)
        extra = ["--manifest", str(manifest)]
    db = agent.settings.database_url or ""
    before = db_rows(db, "SELECT count(*) FROM inspections")
    result = CliRunner().invoke(cli, ["upload", str(tmp_path), "--url", agent.url, *args, *extra])
    assert result.exit_code == 2, result.output
    assert db_rows(db, "SELECT count(*) FROM inspections") == before
