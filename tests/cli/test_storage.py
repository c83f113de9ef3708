"""`aoi-agent storage migrate`: a folder store copied into an object store (moto's S3
server, an emulator of the S3 API, on loopback), rows untouched."""

from __future__ import annotations

import socket
from pathlib import Path

from typer.testing import CliRunner

from app.cli import cli
from app.config import Settings
from app.launcher import storage_notice
from tests.support import S3Emulator, db_rows, make_image, run_cli


def test_migrate_copies_the_local_store_and_says_what_it_did(
    tmp_path: Path, s3_emulator: S3Emulator
) -> None:
    day = tmp_path / "uploads" / "20261202"
    day.mkdir(parents=True)
    (day / "20261202_093005_X_a.png").write_bytes(make_image())
    result_dir = tmp_path / "results" / "20261202" / "X"
    result_dir.mkdir(parents=True)
    for name in ("combined.png", "mask.png", "overlay.png", "analysis.json"):
        (result_dir / name).write_bytes(b"r")
    (tmp_path / "secret_key").write_text("not copied")
    bucket = s3_emulator.new_bucket()
    env = {"DATA_DIR": str(tmp_path), "S3_ENDPOINT_URL": s3_emulator.url, "STORAGE_URL": ""}

    dry = CliRunner().invoke(
        cli, ["storage", "migrate", "--to", f"s3://{bucket}/aoi", "--dry-run"], env=env
    )
    assert dry.exit_code == 0, dry.output
    assert "would copy 5 objects" in dry.output
    assert s3_emulator.keys(bucket) == []

    done = CliRunner().invoke(cli, ["storage", "migrate", "--to", f"s3://{bucket}/aoi"], env=env)
    assert done.exit_code == 0, done.output
    assert "copied 5 objects" in done.output
    assert s3_emulator.keys(bucket) == [
        "aoi/results/20261202/X/analysis.json",
        "aoi/results/20261202/X/combined.png",
        "aoi/results/20261202/X/mask.png",
        "aoi/results/20261202/X/overlay.png",
        "aoi/uploads/20261202/20261202_093005_X_a.png",
    ]
    assert s3_emulator.read(bucket, "aoi/uploads/20261202/20261202_093005_X_a.png") == (
        make_image()
    )

    again = CliRunner().invoke(cli, ["storage", "migrate", "--to", f"s3://{bucket}/aoi"], env=env)
    assert "copied 0 objects" in again.output
    assert "5 were already there" in again.output


def test_migrate_refuses_what_is_not_an_object_store(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["storage", "migrate", "--to", str(tmp_path)], env={"DATA_DIR": str(tmp_path)}
    )
    assert result.exit_code == 2
    assert "s3://bucket/prefix" in result.output


def test_migrate_to_a_store_that_is_down_says_so_without_a_traceback(tmp_path: Path) -> None:
    """The copy runs in a task group, which wraps errors: the store's error must still
    reach the CLI's message (exit 1), not a traceback; nothing local is touched."""
    day = tmp_path / "uploads" / "20261202"
    day.mkdir(parents=True)
    (day / "20261202_093005_X_a.png").write_bytes(make_image())
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        "DATA_DIR": str(tmp_path),
        "STORAGE_URL": "",
        "S3_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "S3_TIMEOUT_S": "2",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1",
    }

    result = CliRunner().invoke(cli, ["storage", "migrate", "--to", "s3://bucket/aoi"], env=env)

    output = " ".join(result.output.split())
    assert result.exit_code == 1, result.output
    assert output.startswith("error: the object store s3://bucket/aoi failed")
    assert "run again to go on" in output
    assert "Traceback" not in output
    assert (day / "20261202_093005_X_a.png").read_bytes() == make_image()


def test_migrate_to_a_missing_bucket_says_so_in_one_line(
    tmp_path: Path, s3_emulator: S3Emulator
) -> None:
    day = tmp_path / "uploads" / "20261202"
    day.mkdir(parents=True)
    for n in range(40):
        (day / f"20261202_093005_X{n}_a.png").write_bytes(make_image())
    env = {"DATA_DIR": str(tmp_path), "S3_ENDPOINT_URL": s3_emulator.url, "STORAGE_URL": ""}

    for dry_run in ([], ["--dry-run"]):
        result = CliRunner().invoke(
            cli, ["storage", "migrate", "--to", "s3://aoi-missing/line-1", *dry_run], env=env
        )
        assert result.exit_code == 1, result.output
        assert result.output.splitlines() == [
            "error: the bucket 'aoi-missing' of s3://aoi-missing/line-1 does not exist at"
            f" {s3_emulator.url}: create it, or correct the bucket's name or S3_ENDPOINT_URL"
        ]


def test_start_up_names_the_store_and_asks_for_a_shared_secret() -> None:
    local = Settings(_env_file=None, data_dir=Path("d"))  # type: ignore[call-arg]
    assert storage_notice(local).startswith("storage: ")
    assert storage_notice(local).endswith("(local)")
    s3 = Settings(_env_file=None, storage_url="s3://bucket/aoi")  # type: ignore[call-arg]
    assert storage_notice(s3).startswith("storage: s3://bucket/aoi (s3); SECRET_KEY is unset")
    shared = s3.model_copy(update={"secret_key": "x" * 32})
    assert storage_notice(shared) == "storage: s3://bucket/aoi (s3)"


def test_sweep_removes_what_no_row_names_from_the_whole_store(
    tmp_path: Path, database_url: str
) -> None:
    """An input, a result folder and an answer folder of an old day, no row naming them
    (what a failed deletion leaves): the periodic sweep lists recent days only; `storage
    sweep` lists all."""
    day = tmp_path / "uploads" / "20260104"
    day.mkdir(parents=True)
    (day / "20260104_080000_X_a.png").write_bytes(make_image())
    result_dir = tmp_path / "results" / "20260104" / "20260104_080000_ORPHAN"
    result_dir.mkdir(parents=True)
    (result_dir / "combined.png").write_bytes(b"r")
    answer_dir = tmp_path / "answers" / "20260104" / "20260104_080000_ORPHAN" / ("f" * 16)
    answer_dir.mkdir(parents=True)
    (answer_dir / "mask.png").write_bytes(b"m")
    env = {
        "DATA_DIR": str(tmp_path),
        "DATABASE_URL": database_url,
        "STORAGE_URL": "",
        "ORPHAN_FILE_GRACE_S": "0",
    }

    done = CliRunner().invoke(cli, ["storage", "sweep"], env=env)

    assert done.exit_code == 0, done.output
    assert "removed 1 inputs, 1 result folders and 1 answer folders" in " ".join(
        done.output.split()
    )
    assert not (day / "20260104_080000_X_a.png").exists()
    assert not result_dir.exists()
    assert not answer_dir.exists()
    assert db_rows(database_url, "SELECT full_started_at IS NOT NULL FROM file_sweeps") == [(True,)]


def test_migrate_to_a_missing_bucket_is_one_error_line(
    tmp_path: Path, s3_emulator: S3Emulator
) -> None:
    """Whatever the store says of a bucket that does not exist reaches a script as one
    `error:` line on stderr and exit status 1 (a process of its own, output piped)."""
    day = tmp_path / "uploads" / "20261202"
    day.mkdir(parents=True)
    (day / "20261202_093005_X_a.png").write_bytes(make_image())
    env = {**s3_emulator.env, "DATA_DIR": str(tmp_path), "STORAGE_URL": ""}

    result = run_cli("storage", "migrate", "--to", "s3://no-such-bucket-4711/aoi", env=env)

    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ")
    assert "'no-such-bucket-4711'" in line
    assert "does not exist" in line
