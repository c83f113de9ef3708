"""`aoi-agent watch` against a live agent: a folder on another machine, over HTTP."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import httpx2
from typer.testing import CliRunner, Result

from app.cli import cli
from tests.support import AgentServer, db_rows, make_image


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def watch_once(folder: Path, url: str, **env: str) -> Result:
    """`aoi-agent watch FOLDER --url URL --once`, polling (as for a network share: no
    file-system events used) with short settle and batch windows, `env` set."""
    return CliRunner().invoke(
        cli,
        [
            "watch",
            str(folder),
            "--url",
            url,
            "--once",
            "--settle-s",
            "0.3",
            "--batch-window-s",
            "0.3",
            "--polling",
        ],
        env={"COLUMNS": "300", **env},
    )


def test_watch_once_sends_the_folder_skips_known_bytes_and_sorts_the_files(
    tmp_path: Path, agent: AgentServer, deeppcb: list[Path]
) -> None:
    db = agent.settings.database_url or ""
    boards = deeppcb[70:73]
    known = deeppcb[73].read_bytes()
    with httpx2.Client(base_url=agent.url, timeout=60) as client:
        earlier = client.post("/api/upload", files={"image": ("earlier.jpg", known)}).json()
    (tmp_path / "lot9").mkdir()
    for board in boards:
        shutil.copy(board, tmp_path / "lot9" / board.name)
    (tmp_path / "rescan.jpg").write_bytes(known)
    (tmp_path / "label.bmp").write_bytes(make_image("BMP", size=(33, 22)))
    (tmp_path / "log.csv").write_text("time,board\n")

    result = watch_once(tmp_path, agent.url)
    assert result.exit_code == 1, result.output  # log.csv failed: as `upload` would say
    assert f"already inspected as {earlier['img_unique_id']}" in result.output
    assert "failed log.csv" in result.output
    assert "4 file(s) queued (/batch?batch=B_" in result.output

    day = next((tmp_path / "processed").iterdir())
    assert sorted(p.relative_to(day).as_posix() for p in day.rglob("*") if p.is_file()) == sorted(
        [f"lot9/{b.name}" for b in boards] + ["label.bmp", "rescan.jpg", "rescan.jpg.duplicate.txt"]
    )
    assert earlier["img_unique_id"] in (day / "rescan.jpg.duplicate.txt").read_text()
    note = (tmp_path / "failed" / "log.csv.error.txt").read_text()
    assert "is not a JPEG, PNG, TIFF or BMP" in note
    assert "time,board" not in note  # the note never quotes the file's content
    assert not [p for p in tmp_path.iterdir() if p.is_file()]
    # One inspection per content, each succeeded; the known bytes not inspected again.
    hashes = [sha256(b.read_bytes()) for b in boards] + [sha256(known)]
    assert db_rows(
        db,
        "SELECT count(*), count(DISTINCT input_sha256), bool_and(status = 'succeeded')"
        " FROM inspections WHERE input_sha256 = ANY(%s)",
        hashes,
    ) == [(4, 4, True)]
    assert (
        db_rows(db, "SELECT count(*) FROM idempotency_keys WHERE key LIKE 'aoi-watch-%%'")[0][0]
        >= 1
    )


def test_watch_rejects_a_missing_folder(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["watch", str(tmp_path / "nope"), "--once"], env={"COLUMNS": "300"}
    )
    assert result.exit_code == 2
    assert "is not a folder" in result.output


PATTERN = r"^(?P<board_serial>SNW[0-9]+)_(?P<side>top|bottom)_(?P<line>L[0-9])"


def test_watch_reads_board_context_from_names_and_sidecars(
    tmp_path: Path, agent: AgentServer, deeppcb: list[Path]
) -> None:
    """As the agent's own hot folder (docs/boards.md): WATCH_NAME_PATTERN on each file's
    name, then a `<name>.json` sidecar whose fields override the name's; the context goes
    with the batch as its manifest and is stored per inspection. A sidecar that is not JSON
    keeps its image out (failed/, with a note naming the sidecar); a sidecar moves with its
    image and is never inspected."""
    db = agent.settings.database_url or ""
    named, with_sidecar, bad = deeppcb[80:83]
    shutil.copy(named, tmp_path / "SNW1_top_L7.jpg")
    (tmp_path / "lot").mkdir()
    shutil.copy(with_sidecar, tmp_path / "lot" / "SNW2_bottom_L7.jpg")
    (tmp_path / "lot" / "SNW2_bottom_L7.jpg.json").write_text(
        '{"board_serial": "SNW2-REAL", "product": "CTRL-W", "lot": "WO-W"}'
    )
    shutil.copy(bad, tmp_path / "SNW3_top_L7.jpg")
    (tmp_path / "SNW3_top_L7.json").write_text("{not json")

    result = watch_once(tmp_path, agent.url, WATCH_NAME_PATTERN=PATTERN)
    assert result.exit_code == 1, result.output  # SNW3 failed
    rows = db_rows(
        db,
        "SELECT i.original_filename, c.board_serial, c.side, c.line, c.product, c.lot"
        " FROM inspections i JOIN inspection_contexts c USING (img_unique_id)"
        " WHERE c.line = 'L7' ORDER BY c.board_serial",
    )
    assert rows == [
        ("SNW1_top_L7.jpg", "SNW1", "top", "L7", None, None),
        ("lot/SNW2_bottom_L7.jpg", "SNW2-REAL", "bottom", "L7", "CTRL-W", "WO-W"),
    ]
    note = (tmp_path / "failed" / "SNW3_top_L7.jpg.error.txt").read_text()
    assert "sidecar SNW3_top_L7.json" in note
    assert "not JSON" in note
    day = next((tmp_path / "processed").iterdir())
    assert (day / "lot" / "SNW2_bottom_L7.jpg.json").is_file()
    assert (tmp_path / "failed" / "SNW3_top_L7.jpg.json").is_file()


def test_watch_refuses_a_name_pattern_without_context_groups(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["watch", str(tmp_path), "--once", "--name-pattern", "(?P<colour>[a-z]+)"],
        env={"COLUMNS": "300"},
    )
    assert result.exit_code == 2
    assert "not context fields: colour" in result.output
