"""`aoi-agent` as a script runs it: a process of its own, stdout and stderr piped (not a
terminal), against a live agent and a real database. What a script relies on: lines
never wrapped, `--json` that parses, `--version`, one `error:` line and exit status 1
for an invalid setting in every sub-command, the same exit status from `upload` and
`watch --once` for the same outcome, every skipped file named."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from app.utils.version import installed_version
from tests.support import REPO_ROOT, AgentServer, db_rows, make_image, run_cli

SECRET = b"SECRET-CONTENT-7f3a9c"


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single `error:` line on stderr of a run that exited 1 with nothing on stdout."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_version_prints_the_installed_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"aoi-agent {installed_version()}\n"


@pytest.mark.parametrize(
    "args",
    [
        ["worker"],
        ["serve"],
        ["retention"],
        ["keys", "list"],
        ["keys", "create", "--name", "x"],
        ["keys", "revoke", "x"],
        ["storage", "migrate", "--to", "s3://bucket/aoi"],
        ["storage", "sweep"],
    ],
)
def test_an_invalid_setting_is_one_error_line_in_every_sub_command(
    args: list[str], tmp_path: Path
) -> None:
    result = run_cli(*args, env={"PORT": "abc", "DATA_DIR": str(tmp_path)}, cwd=tmp_path)
    line = one_error_line(result)
    assert line.startswith("error: invalid setting PORT: Input should be a valid integer")


def test_run_py_says_the_same_about_an_invalid_setting(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PORT": "abc", "DATA_DIR": str(tmp_path)}
    agent = subprocess.run(
        [sys.executable, str(REPO_ROOT / "run.py")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    cli = run_cli("retention", env=env, cwd=tmp_path)
    assert (agent.returncode, agent.stdout, agent.stderr) == (1, "", cli.stderr)
    assert one_error_line(cli).startswith("error: invalid setting PORT: ")


def test_upload_piped_to_a_file_keeps_long_paths_and_ids_on_one_line(
    tmp_path: Path, agent: AgentServer
) -> None:
    folder = tmp_path / ("lot-" + "7" * 120) / ("line-" + "3" * 60)
    folder.mkdir(parents=True)
    board = folder / ("board-" + "b" * 100 + ".png")
    board.write_bytes(make_image(size=(70, 41)))
    notes = folder / ("operator-notes-" + "n" * 100 + ".txt")
    notes.write_text("not an image")

    result = run_cli("upload", str(folder.parent.parent), "--url", agent.url)

    assert result.returncode == 1, result.stderr  # a file was skipped
    lines = result.stdout.splitlines()
    assert f"skipped {notes}: not a JPEG, PNG, TIFF or BMP file (by its name)" in lines
    (batch_line,) = [line for line in lines if line.startswith("batch B_")]
    batch_id = batch_line.split()[1].rstrip(":")
    assert batch_line == f"batch {batch_id}: 1 image(s) accepted, 0 rejected"
    assert f"ZIP of {batch_id}: {agent.url}/download/batch/{batch_id}" in lines
    assert f"done: 1 succeeded, 0 failed, 0 unfinished, 1 skipped; batches: {batch_id}" in lines
    assert "\x1b[" not in result.stdout + result.stderr  # no colour or cursor codes


def test_upload_json_is_one_document_naming_every_skipped_file(
    tmp_path: Path, agent: AgentServer
) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "good.png").write_bytes(make_image(size=(71, 41)))
    (tmp_path / "sub" / "broken.png").write_bytes(SECRET)
    (tmp_path / "sub" / "log.csv").write_text("time,board\n")

    result = run_cli("upload", str(tmp_path), "--url", agent.url, "--json")

    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    (batch,) = report["batches"]
    assert batch["batch_id"].startswith("B_")
    assert batch["zip_url"] == f"{agent.url}/download/batch/{batch['batch_id']}"
    assert report["counts"] == {"succeeded": 1, "failed": 0, "unfinished": 0, "skipped": 2}
    skipped = {item["file"]: item["reason"] for item in report["skipped"]}
    assert skipped[str(tmp_path / "sub" / "log.csv")] == (
        "not a JPEG, PNG, TIFF or BMP file (by its name)"
    )
    refused = skipped[str(tmp_path / "sub" / "broken.png")]
    assert "is not a JPEG, PNG, TIFF or BMP image" in refused
    assert "SECRET" not in refused  # no message quotes the file's bytes


def watch_once(folder: Path, agent: AgentServer, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_cli(
        "watch",
        str(folder),
        "--url",
        agent.url,
        "--once",
        "--settle-s",
        "0.3",
        "--batch-window-s",
        "0.3",
        *extra,
    )


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def test_watch_once_exits_as_upload_does_for_the_same_outcome(
    tmp_path: Path, agent: AgentServer
) -> None:
    def fill(folder: Path, with_broken: bool, size: tuple[int, int]) -> Path:
        folder.mkdir()
        (folder / "good.png").write_bytes(make_image(size=size))
        if with_broken:
            (folder / "broken.png").write_bytes(SECRET)
        return folder

    # Clean folders: every file inspected, status 0 from both.
    assert (
        run_cli(
            "upload", str(fill(tmp_path / "u0", False, (72, 41))), "--url", agent.url
        ).returncode
        == 0
    )
    clean = watch_once(fill(tmp_path / "w0", False, (73, 41)), agent)
    assert clean.returncode == 0, (clean.stdout, clean.stderr)
    assert "done: 1 processed, 0 failed, 0 left in place" in clean.stdout.splitlines()

    # A file the agent refuses: status 1 from both.
    uploaded = run_cli("upload", str(fill(tmp_path / "u1", True, (74, 41))), "--url", agent.url)
    assert uploaded.returncode == 1
    watched_folder = fill(tmp_path / "w1", True, (75, 41))
    watched = watch_once(watched_folder, agent, "--json")
    assert watched.returncode == 1, (watched.stdout, watched.stderr)
    events = json_lines(watched.stdout)
    assert events[-1] == {"event": "done", "processed": 1, "failed": 1, "skipped": 0}
    (failed,) = [e for e in events if e["event"] == "failed"]
    assert failed["file"] == "broken.png"
    assert "is not a JPEG, PNG, TIFF or BMP image" in failed["reason"]
    note = (watched_folder / "failed" / "broken.png.error.txt").read_text()
    assert "file: broken.png" in note
    assert "SECRET" not in note


def test_watch_once_gives_up_on_an_unreachable_agent_as_upload_does(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(make_image())
    url = "http://127.0.0.1:9"  # nothing listens on the discard port
    uploaded = one_error_line(run_cli("upload", str(tmp_path), "--url", url))
    assert uploaded.startswith(f"error: cannot reach the agent at {url}")
    result = run_cli("watch", str(tmp_path), "--url", url, "--once", "--settle-s", "0.2")
    assert result.returncode == 1
    assert result.stdout == ""
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1
    assert errors[0].startswith("error: cannot send to the agent")
    assert errors[0].endswith("the files stay where they are, run again")
    assert (tmp_path / "a.png").exists()


@pytest.mark.skipif(sys.platform == "win32", reason="symbolic links need a privilege on Windows")
def test_watch_never_follows_a_link_and_never_quotes_its_target(
    tmp_path: Path, agent: AgentServer
) -> None:
    """Links to an image, to a secret non-image and to a folder of images, all outside the
    watched folder: none is read, sent or moved; each is named once in a note that quotes
    nothing; the real file beside them is inspected."""
    db = agent.settings.database_url or ""
    outside = tmp_path / "outside"
    (outside / "boards").mkdir(parents=True)
    image = make_image(size=(76, 41))
    (outside / "board.png").write_bytes(image)
    (outside / "secret_key").write_bytes(SECRET)
    (outside / "boards" / "c.png").write_bytes(make_image(size=(77, 41)))
    hot = tmp_path / "hot"
    (hot / "lot1").mkdir(parents=True)
    (hot / "lot1" / "real.png").write_bytes(make_image(size=(78, 41)))
    (hot / "lot1" / "board.png").symlink_to(outside / "board.png")
    (hot / "key.png").symlink_to(outside / "secret_key")
    (hot / "more").symlink_to(outside / "boards", target_is_directory=True)

    result = watch_once(hot, agent, "--json")

    assert result.returncode == 1, (result.stdout, result.stderr)  # files were left out
    events = json_lines(result.stdout)
    assert sorted(e["file"] for e in events if e["event"] == "skipped") == [
        "key.png",
        "lot1/board.png",
        "more",
    ]
    assert [e["file"] for e in events if e["event"] == "processed"] == ["lot1/real.png"]
    assert events[-1] == {"event": "done", "processed": 1, "failed": 0, "skipped": 3}
    # The links are where they were, their targets untouched.
    assert (hot / "lot1" / "board.png").is_symlink()
    assert (hot / "key.png").is_symlink()
    assert (hot / "more").is_symlink()
    assert (outside / "board.png").read_bytes() == image
    assert (outside / "secret_key").read_bytes() == SECRET
    assert (outside / "boards" / "c.png").exists()
    # Nothing behind a link was sent to the agent.
    names = {n for (n,) in db_rows(db, "SELECT original_filename FROM inspections")}
    assert "lot1/real.png" in names
    assert not names & {"lot1/board.png", "key.png", "more/c.png", "c.png"}
    for link in ("key.png", "lot1/board.png", "more"):
        note = (hot / "failed" / f"{link}.error.txt").read_text()
        assert f"file: {link}\n" in note
        assert "never follows links" in note
        assert "SECRET" not in note
        assert str(outside) not in note  # the target is not named either


def test_revoking_twice_or_an_unknown_key_is_an_error(database_url: str, tmp_path: Path) -> None:
    env = {"DATABASE_URL": database_url, "DATA_DIR": str(tmp_path)}
    created = run_cli("keys", "create", "--name", "script", "--scope", "read", "--json", env=env)
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)
    assert key["name"] == "script"
    assert key["key"].startswith(key["prefix"])

    listed = json.loads(run_cli("keys", "list", "--json", env=env).stdout)
    (row,) = [k for k in listed["keys"] if k["name"] == "script"]
    assert (row["scope"], row["revoked_at"]) == ("read", None)

    revoked = run_cli("keys", "revoke", "script", "--json", env=env)
    assert revoked.returncode == 0, revoked.stderr
    assert json.loads(revoked.stdout)["revoked_at"] is not None

    again = one_error_line(run_cli("keys", "revoke", "script", env=env))
    assert again.startswith("error: key 'script' was already revoked on ")
    unknown = one_error_line(run_cli("keys", "revoke", "nobody", env=env))
    assert unknown.startswith("error: no key named 'nobody'")
