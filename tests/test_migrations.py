"""Alembic migrations: upgrade creates exactly the specified schema, downgrade removes it."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from alembic.script import ScriptDirectory

from app.services.database.migrations import (
    alembic_config,
    downgrade_database,
    upgrade_database,
)
from tests.support import create_database, db_execute, db_rows, drop_database

IMAGES = [
    "img_unique_id",
    "image_height",
    "image_width",
    "processing_time_seconds",
    "timestamp",
    "input_image_path",
    "result_image_1_path",
    "result_image_2_path",
    "result_image_3_path",
]
CLASSES = [
    "class_unique_id",
    "img_unique_id",
    "class_id",
    "class_name",
    "total_regions",
    "total_area_pixels",
]
REGIONS = [
    "region_unique_id",
    "class_unique_id",
    "img_unique_id",
    "region_id",
    "centroid_x",
    "centroid_y",
    "bbox_x",
    "bbox_y",
    "bbox_width",
    "bbox_height",
    "area_pixels",
    "perimeter",
    "major_axis",
    "minor_axis",
    "circularity",
    "aspect_ratio",
]


@pytest.fixture
def empty_database(postgres_server_url: str) -> Iterator[str]:
    """A database with nothing in it."""
    url = create_database(postgres_server_url)
    yield url
    drop_database(url)


def columns(url: str, table: str) -> list[str]:
    return [
        name
        for (name,) in db_rows(
            url,
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s"
            " ORDER BY ordinal_position",
            table,
        )
    ]


def tables(url: str) -> set[str]:
    return {
        name
        for (name,) in db_rows(
            url, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        )
    }


def add_ledger_row(url: str, img_unique_id: str, status: str) -> None:
    """Insert (and commit) one `inspections` row with only the columns every revision has,
    as an inspection accepted before the migration under test."""
    db_execute(
        url,
        "INSERT INTO inspections (img_unique_id, original_filename, input_image_path,"
        " size_bytes, media_type, status, attempts)"
        " VALUES (%s, 'old.png', 'uploads/old.png', 3, 'image/png', %s, 1)",
        img_unique_id,
        status,
    )


def test_upgrade_creates_the_three_tables_with_exactly_their_columns(empty_database: str) -> None:
    upgrade_database(empty_database)
    assert columns(empty_database, "images") == IMAGES
    assert columns(empty_database, "classes") == CLASSES
    assert columns(empty_database, "regions") == REGIONS
    assert {"batches", "inspections", "procrastinate_jobs"} <= tables(empty_database)
    cascades = db_rows(
        empty_database,
        "SELECT conrelid::regclass::text, confrelid::regclass::text, confdeltype"
        " FROM pg_constraint WHERE contype = 'f' AND conrelid::regclass::text IN"
        " ('classes', 'regions') ORDER BY 1, 2",
    )
    assert cascades == [
        ("classes", "images", "c"),
        ("regions", "classes", "c"),
        ("regions", "images", "c"),
    ]


def test_downgrade_removes_everything_and_upgrade_works_again(empty_database: str) -> None:
    upgrade_database(empty_database)
    downgrade_database(empty_database, "base")
    assert tables(empty_database) == {"alembic_version"}
    assert db_rows(
        empty_database,
        "SELECT count(*) FROM pg_type WHERE typname IN ('inspection_status',"
        " 'procrastinate_job_status')",
    ) == [(0,)]
    assert db_rows(
        empty_database, "SELECT count(*) FROM pg_proc WHERE proname LIKE 'procrastinate%%'"
    ) == [(0,)]
    upgrade_database(empty_database)
    assert columns(empty_database, "regions") == REGIONS


def test_each_step_downgrades_on_its_own(empty_database: str) -> None:
    upgrade_database(empty_database)
    downgrade_database(empty_database, "20261121_0001")
    assert "procrastinate_jobs" not in tables(empty_database)
    assert "images" in tables(empty_database)
    upgrade_database(empty_database)
    assert "procrastinate_jobs" in tables(empty_database)


def test_api_keys_table_and_its_downgrade(empty_database: str) -> None:
    upgrade_database(empty_database)
    assert columns(empty_database, "api_keys") == [
        "id",
        "name",
        "prefix",
        "key_hash",
        "scope",
        "created_at",
        "last_used_at",
        "revoked_at",
        "key_check",  # added by 20261207_0014
    ]
    downgrade_database(empty_database, "20261121_0002")
    assert "api_keys" not in tables(empty_database)
    assert "procrastinate_jobs" in tables(empty_database)
    upgrade_database(empty_database)
    assert "api_keys" in tables(empty_database)


def test_heartbeat_migration_downgrades_and_upgrades_with_data_kept(empty_database: str) -> None:
    # The revision before 20261122_0004, whatever the chain of migrations is.
    before = (
        ScriptDirectory.from_config(alembic_config(empty_database))
        .get_revision("20261122_0004")
        .down_revision
    )
    assert isinstance(before, str)
    upgrade_database(empty_database, before)
    add_ledger_row(empty_database, "20261122_050000_MIGR01", "processing")
    upgrade_database(empty_database, "20261122_0004")
    assert "agent_processes" in tables(empty_database)
    added = ["owner_process_id", "next_attempt_at", "waiting_since"]
    assert columns(empty_database, "inspections")[-3:] == added
    downgrade_database(empty_database, before)
    assert "agent_processes" not in tables(empty_database)
    assert not set(added) & set(columns(empty_database, "inspections"))
    assert db_rows(empty_database, "SELECT status::text FROM inspections") == [("processing",)]
    upgrade_database(empty_database, "20261122_0004")
    assert columns(empty_database, "inspections")[-3:] == added


def indexes(url: str, table: str) -> set[str]:
    query = "SELECT indexname FROM pg_indexes WHERE tablename = %s"
    return {name for (name,) in db_rows(url, query, table)}


def test_input_hash_migration_keeps_old_rows_and_downgrades_on_its_own(
    empty_database: str,
) -> None:
    upgrade_database(empty_database, "20261122_0005-1")
    before = columns(empty_database, "inspections")
    add_ledger_row(empty_database, "20261120_101010_OLD001", "succeeded")
    upgrade_database(empty_database, "20261122_0005")
    assert columns(empty_database, "inspections") == [*before, "input_sha256", "repeat_of"]
    assert "ix_inspections_input_sha256" in indexes(empty_database, "inspections")
    assert "idempotency_keys" in tables(empty_database)
    assert db_rows(empty_database, "SELECT img_unique_id, input_sha256 FROM inspections") == [
        ("20261120_101010_OLD001", None)
    ]
    # The PRD's tables are untouched by it.
    assert columns(empty_database, "images") == IMAGES
    assert columns(empty_database, "regions") == REGIONS

    downgrade_database(empty_database, "-1")
    assert columns(empty_database, "inspections") == before
    assert "idempotency_keys" not in tables(empty_database)
    assert db_rows(empty_database, "SELECT img_unique_id FROM inspections") == [
        ("20261120_101010_OLD001",)
    ]
    upgrade_database(empty_database)
    assert "input_sha256" in columns(empty_database, "inspections")


def test_provenance_migration_keeps_old_rows_and_downgrades_on_its_own(
    empty_database: str,
) -> None:
    upgrade_database(empty_database, "20261122_0005")
    before = columns(empty_database, "inspections")
    add_ledger_row(empty_database, "20261120_101010_OLD002", "succeeded")
    upgrade_database(empty_database, "20261122_0006")
    added = ["model_service_url", "model_name", "model_version", "agent_version"]
    assert columns(empty_database, "inspections") == [*before, *added]
    assert "ix_inspections_model_version" in indexes(empty_database, "inspections")
    assert db_rows(
        empty_database, "SELECT model_name, model_version, agent_version FROM inspections"
    ) == [(None, None, None)]
    # The PRD's tables are untouched by it.
    assert columns(empty_database, "images") == IMAGES
    assert columns(empty_database, "classes") == CLASSES
    assert columns(empty_database, "regions") == REGIONS

    downgrade_database(empty_database, "20261122_0005")
    assert columns(empty_database, "inspections") == before
    assert "ix_inspections_model_version" not in indexes(empty_database, "inspections")
    assert db_rows(empty_database, "SELECT img_unique_id FROM inspections") == [
        ("20261120_101010_OLD002",)
    ]
    upgrade_database(empty_database)
    assert set(added) <= set(columns(empty_database, "inspections"))


def test_search_indexes_migration_and_its_downgrade(empty_database: str) -> None:
    """The History search's prefix indexes: created, then dropped by the downgrade."""
    upgrade_database(empty_database, "20261202_0008")
    added = {"ix_inspections_original_filename_lower", "ix_inspections_img_unique_id_upper"}
    assert added <= set(indexes(empty_database, "inspections"))
    # text_pattern_ops: a prefix LIKE can use them whatever the database's collation.
    definitions = db_rows(
        empty_database,
        "SELECT indexdef FROM pg_indexes WHERE tablename = 'inspections' AND indexname = ANY(%s)",
        sorted(added),
    )
    assert len(definitions) == 2
    assert all("text_pattern_ops" in d for (d,) in definitions)
    downgrade_database(empty_database, "20261122_0006")
    assert not added & set(indexes(empty_database, "inspections"))
    upgrade_database(empty_database)
    assert added <= set(indexes(empty_database, "inspections"))


def test_review_migration_adds_its_tables_and_downgrades_on_its_own(empty_database: str) -> None:
    upgrade_database(empty_database, "20261122_0006")
    before = tables(empty_database)
    db_execute(
        empty_database,
        "INSERT INTO images (img_unique_id, image_height, image_width,"
        " processing_time_seconds, timestamp, input_image_path)"
        " VALUES ('20261120_101010_OLD003', 10, 10, 0.1, now(), 'uploads/old.png')",
    )
    upgrade_database(empty_database, "20261202_0007")
    assert tables(empty_database) == {
        *before,
        "region_verdicts",
        "image_dispositions",
        "review_events",
    }
    assert columns(empty_database, "region_verdicts") == [
        "region_unique_id",
        "img_unique_id",
        "verdict",
        "reviewer",
        "comment",
        "reviewed_at",
    ]
    assert columns(empty_database, "review_events") == [
        "id",
        "img_unique_id",
        "region_unique_id",
        "kind",
        "value",
        "previous",
        "reviewer",
        "comment",
        "created_at",
    ]
    assert "ix_region_verdicts_img_unique_id" in indexes(empty_database, "region_verdicts")
    assert "ix_review_events_img_unique_id_id" in indexes(empty_database, "review_events")
    # The PRD's tables are untouched by it.
    assert columns(empty_database, "images") == IMAGES
    assert columns(empty_database, "classes") == CLASSES
    assert columns(empty_database, "regions") == REGIONS
    # A disposition outside the three is refused by the database itself.
    with pytest.raises(psycopg.errors.CheckViolation):
        db_execute(
            empty_database,
            "INSERT INTO image_dispositions (img_unique_id, disposition, reviewer)"
            " VALUES ('20261120_101010_OLD003', 'ship', 'anna')",
        )

    downgrade_database(empty_database, "20261122_0006")
    assert tables(empty_database) == before
    assert db_rows(empty_database, "SELECT img_unique_id FROM images") == [
        ("20261120_101010_OLD003",)
    ]
    upgrade_database(empty_database)
    assert "review_events" in tables(empty_database)


ROLLUP_TABLES = {
    "rollup_images_daily",
    "rollup_classes_daily",
    "rollup_heatmap_daily",
    "rollup_heatmap_daily_all",
    "rollup_timings_daily",
}


def test_rollup_migration_sums_old_rows_keeps_them_summed_and_downgrades(
    empty_database: str,
) -> None:
    upgrade_database(empty_database, "20261202_0011-1")
    assert not ROLLUP_TABLES & tables(empty_database)
    # An image stored before the migration: 2 `open` regions, one `short` class with none.
    db_execute(
        empty_database,
        "INSERT INTO images VALUES ('20261120_101010_OLD003', 480, 640, 0.5,"
        " '2026-11-20 23:30:00+00', 'in', 'c', 'm', 'o')",
    )
    db_execute(
        empty_database,
        "INSERT INTO classes (class_unique_id, img_unique_id, class_id, class_name,"
        " total_regions, total_area_pixels) VALUES (1, '20261120_101010_OLD003', 1, 'open',"
        " 2, 30), (2, '20261120_101010_OLD003', 2, 'short', 0, 0)",
    )
    db_execute(
        empty_database,
        "INSERT INTO regions (class_unique_id, img_unique_id, region_id, centroid_x,"
        " centroid_y, bbox_x, bbox_y, bbox_width, bbox_height, area_pixels, perimeter,"
        " major_axis, minor_axis, circularity, aspect_ratio) VALUES"
        " (1, '20261120_101010_OLD003', 1, 0, 0, 0, 0, 1, 1, 10, 4, 1, 1, 1, 1),"
        " (1, '20261120_101010_OLD003', 2, 639, 479, 0, 0, 1, 1, 20, 4, 1, 1, 1, 1)",
    )
    add_ledger_row(empty_database, "20261120_101010_OLD003", "succeeded")

    upgrade_database(empty_database, "20261202_0011")
    assert tables(empty_database) >= ROLLUP_TABLES
    assert "ix_images_timestamp_img_unique_id" in indexes(empty_database, "images")
    assert columns(empty_database, "images") == IMAGES
    assert columns(empty_database, "classes") == CLASSES
    assert columns(empty_database, "regions") == REGIONS
    day = "2026-11-20"
    assert db_rows(
        empty_database, "SELECT day::text, images, images_with_defects FROM rollup_images_daily"
    ) == [(day, 1, 1)]
    assert db_rows(
        empty_database,
        "SELECT class_name, images, regions FROM rollup_classes_daily ORDER BY 1",
    ) == [("open", 1, 2), ("short", 1, 0)]
    assert db_rows(
        empty_database,
        "SELECT cell_row, cell_col, regions FROM rollup_heatmap_daily_all ORDER BY 1",
    ) == [(0, 0, 1), (31, 31, 1)]
    assert db_rows(empty_database, "SELECT succeeded FROM rollup_timings_daily") == [(1,)]
    # The triggers follow a delete from here on.
    db_execute(empty_database, "DELETE FROM images")
    assert db_rows(
        empty_database, "SELECT images, images_with_defects FROM rollup_images_daily"
    ) == [(0, 0)]

    downgrade_database(empty_database, "20261202_0011-1")
    assert not ROLLUP_TABLES & tables(empty_database)
    assert "ix_images_timestamp_img_unique_id" not in indexes(empty_database, "images")
    assert not db_rows(empty_database, "SELECT proname FROM pg_proc WHERE proname LIKE 'aoi_%%'")
    assert not db_rows(empty_database, "SELECT tgname FROM pg_trigger WHERE tgname LIKE 'aoi_%%'")
    db_execute(empty_database, "DELETE FROM inspections")  # no trigger left to fire
    upgrade_database(empty_database)
    assert tables(empty_database) >= ROLLUP_TABLES


def test_file_sweep_migration_and_its_downgrade(empty_database: str) -> None:
    upgrade_database(empty_database)
    assert columns(empty_database, "file_sweeps") == [
        "name",
        "started_at",
        "horizon",
        "full_started_at",
    ]
    db_execute(empty_database, "INSERT INTO file_sweeps (name, started_at) VALUES ('x', now())")
    downgrade_database(empty_database, "20261202_0011")
    assert "file_sweeps" not in tables(empty_database)
    assert "rollup_images_daily" in tables(empty_database)
    upgrade_database(empty_database)
    assert db_rows(empty_database, "SELECT count(*) FROM file_sweeps") == [(0,)]


def test_rollups_by_model_version_migration_splits_old_rows_and_downgrades(
    empty_database: str,
) -> None:
    upgrade_database(empty_database, "20261202_0011")
    # Two images stored before the migration: one of model version old-1 (2 regions of
    # `open`), one without a ledger row (1 region of `short`).
    db_execute(
        empty_database,
        "INSERT INTO images VALUES ('20261120_101010_OLD001', 480, 640, 0.5,"
        " '2026-11-20 10:10:10+00', 'in', 'c', 'm', 'o'), ('20261120_101010_OLD002', 480,"
        " 640, 0.25, '2026-11-20 11:00:00+00', 'in', 'c', 'm', 'o')",
    )
    db_execute(
        empty_database,
        "INSERT INTO classes (class_unique_id, img_unique_id, class_id, class_name,"
        " total_regions, total_area_pixels) VALUES (1, '20261120_101010_OLD001', 1, 'open',"
        " 2, 30), (2, '20261120_101010_OLD002', 2, 'short', 1, 5)",
    )
    db_execute(
        empty_database,
        "INSERT INTO regions (class_unique_id, img_unique_id, region_id, centroid_x,"
        " centroid_y, bbox_x, bbox_y, bbox_width, bbox_height, area_pixels, perimeter,"
        " major_axis, minor_axis, circularity, aspect_ratio) VALUES"
        " (1, '20261120_101010_OLD001', 1, 0, 0, 0, 0, 1, 1, 10, 4, 1, 1, 1, 1),"
        " (1, '20261120_101010_OLD001', 2, 639, 479, 0, 0, 1, 1, 20, 4, 1, 1, 1, 1),"
        " (2, '20261120_101010_OLD002', 1, 639, 0, 0, 0, 1, 1, 5, 4, 1, 1, 1, 1)",
    )
    add_ledger_row(empty_database, "20261120_101010_OLD001", "succeeded")
    db_execute(empty_database, "UPDATE inspections SET model_version = 'old-1'")
    unsplit = "SELECT images, images_with_defects FROM rollup_images_daily"
    assert db_rows(empty_database, unsplit) == [(2, 2)]

    upgrade_database(empty_database, "20261202_0013")
    for table in ROLLUP_TABLES:
        assert "model_version" in columns(empty_database, table)
    by_version = (
        "SELECT model_version, images, images_with_defects FROM rollup_images_daily ORDER BY 1"
    )
    assert db_rows(empty_database, by_version) == [("", 1, 1), ("old-1", 1, 1)]
    assert db_rows(
        empty_database,
        "SELECT model_version, class_name, regions FROM rollup_classes_daily ORDER BY 1",
    ) == [("", "short", 1), ("old-1", "open", 2)]
    assert db_rows(
        empty_database,
        "SELECT model_version, cell_row, cell_col, regions FROM rollup_heatmap_daily_all"
        " ORDER BY 1, 2, 3",
    ) == [("", 0, 31, 1), ("old-1", 0, 0, 1), ("old-1", 31, 31, 1)]
    assert db_rows(empty_database, "SELECT model_version, succeeded FROM rollup_timings_daily") == [
        ("old-1", 1)
    ]
    # The triggers follow a new ledger row and a delete from here on.
    add_ledger_row(empty_database, "20261120_101010_OLD002", "failed")
    db_execute(
        empty_database, "UPDATE inspections SET model_version = 'old-2' WHERE status = 'failed'"
    )
    assert db_rows(empty_database, by_version) == [("", 0, 0), ("old-1", 1, 1), ("old-2", 1, 1)]
    db_execute(empty_database, "DELETE FROM images WHERE img_unique_id = '20261120_101010_OLD001'")
    assert db_rows(empty_database, by_version) == [("", 0, 0), ("old-1", 0, 0), ("old-2", 1, 1)]

    downgrade_database(empty_database, "20261202_0011")
    for table in ROLLUP_TABLES:
        assert "model_version" not in columns(empty_database, table)
    assert not db_rows(
        empty_database,
        "SELECT proname FROM pg_proc WHERE proname IN ('aoi_rollup_add_images',"
        " 'aoi_image_model_version') OR proname LIKE 'aoi_rollup_versions%%'",
    )
    assert db_rows(empty_database, unsplit) == [(1, 1)]  # rebuilt, unsplit
    db_execute(empty_database, "DELETE FROM images")  # 0011's triggers are back
    assert db_rows(empty_database, unsplit) == [(0, 0)]
    upgrade_database(empty_database)
    assert db_rows(empty_database, by_version) == []


def test_web_sessions_migration_keeps_keys_and_downgrades_on_its_own(empty_database: str) -> None:
    upgrade_database(empty_database, "20261202_0013")
    db_execute(
        empty_database,
        "INSERT INTO api_keys (name, prefix, key_hash, scope) VALUES ('old', 'aoi_0000aaaa',"
        " 'scrypt$x', 'read')",
    )
    upgrade_database(empty_database, "20261207_0014")
    assert columns(empty_database, "api_keys")[-1] == "key_check"
    # A key made before the migration has no check value (it is verified by scrypt alone).
    assert db_rows(empty_database, "SELECT name, key_check FROM api_keys") == [("old", None)]
    assert columns(empty_database, "web_sessions") == [
        "id",
        "token_sha256",
        "key_id",
        "created_at",
        "expires_at",
        "last_seen_at",
        "ended_at",
    ]
    assert {
        "uq_web_sessions_token_sha256",
        "ix_web_sessions_key_id",
        "ix_web_sessions_expires_at",
    } <= indexes(empty_database, "web_sessions")
    db_execute(
        empty_database,
        "INSERT INTO web_sessions (token_sha256, key_id, expires_at)"
        " SELECT sha256('t'), id, now() + interval '1 hour' FROM api_keys",
    )
    # Two sessions cannot share a token.
    with pytest.raises(psycopg.errors.UniqueViolation):
        db_execute(
            empty_database,
            "INSERT INTO web_sessions (token_sha256, key_id, expires_at)"
            " SELECT sha256('t'), id, now() FROM api_keys",
        )

    downgrade_database(empty_database, "20261202_0013")
    assert "web_sessions" not in tables(empty_database)
    assert "key_check" not in columns(empty_database, "api_keys")
    assert db_rows(empty_database, "SELECT name FROM api_keys") == [("old",)]
    upgrade_database(empty_database)
    assert "web_sessions" in tables(empty_database)


def test_golden_boards_migration_and_its_downgrade(empty_database: str) -> None:
    upgrade_database(empty_database)
    assert columns(empty_database, "golden_boards")[:3] == ["golden_id", "product", "side"]
    assert columns(empty_database, "golden_registrations") == [
        "img_unique_id",
        "golden_id",
        "dx",
        "dy",
        "score",
        "method",
        "registered_at",
    ]
    db_execute(
        empty_database,
        "INSERT INTO golden_boards (golden_id, file_name, image_path, media_type, image_width,"
        " image_height, size_bytes, version, source)"
        " VALUES ('g', 'g.png', 'golden/g/x.png', 'image/png', 8, 8, 10, 'v', 'api')",
    )
    downgrade_database(empty_database, "20261207_0014")
    assert not {"golden_boards", "golden_registrations"} & tables(empty_database)
    assert columns(empty_database, "images") == IMAGES
    upgrade_database(empty_database)
    assert db_rows(empty_database, "SELECT count(*) FROM golden_boards") == [(0,)]


def test_review_boards_migration_counts_old_reviews_and_downgrades(empty_database: str) -> None:
    upgrade_database(empty_database, "20261207_0015")
    before = tables(empty_database)
    board = "20261120_101010_OLD004"
    db_execute(
        empty_database,
        "INSERT INTO images (img_unique_id, image_height, image_width,"
        f" processing_time_seconds, timestamp, input_image_path) VALUES ('{board}', 10, 10,"
        " 0.1, '2026-11-20T10:10:10Z', 'uploads/old.png');"
        " INSERT INTO classes (img_unique_id, class_id, class_name, total_regions,"
        f" total_area_pixels) VALUES ('{board}', 1, 'short', 3, 3);"
        " INSERT INTO regions (class_unique_id, img_unique_id, region_id, centroid_x,"
        " centroid_y, bbox_x, bbox_y, bbox_width, bbox_height, area_pixels, perimeter,"
        " major_axis, minor_axis, circularity, aspect_ratio)"
        f" SELECT c.class_unique_id, '{board}', n, 1, 1, 1, 1, 1, 1, 1, 4, 1, 1, 1, 1"
        " FROM classes c, generate_series(1, 3) n;"
        " INSERT INTO region_verdicts (region_unique_id, img_unique_id, verdict, reviewer)"
        f" SELECT region_unique_id, '{board}', 'false_call', 'anna' FROM regions"
        " WHERE region_id <= 2;"
        " INSERT INTO image_dispositions (img_unique_id, disposition, reviewer)"
        f" VALUES ('{board}', 'repair', 'anna')",
    )
    upgrade_database(empty_database, "20261207_0016")
    assert tables(empty_database) == {*before, "review_boards"}
    state = "SELECT regions, reviewed, false_calls, disposition FROM review_boards"
    assert db_rows(empty_database, state) == [(3, 2, 2, "repair")]
    # From now on the triggers keep it.
    db_execute(
        empty_database,
        "INSERT INTO region_verdicts (region_unique_id, img_unique_id, verdict, reviewer)"
        f" SELECT region_unique_id, '{board}', 'real', 'anna' FROM regions WHERE region_id = 3;"
        " UPDATE region_verdicts SET verdict = 'unsure' WHERE verdict = 'false_call'"
        " AND region_unique_id = (SELECT min(region_unique_id) FROM regions);"
        " DELETE FROM image_dispositions",
    )
    assert db_rows(empty_database, state) == [(3, 3, 1, None)]
    assert {"ix_review_boards_reviewed", "ix_review_boards_false_calls"} <= set(
        indexes(empty_database, "review_boards")
    )
    assert columns(empty_database, "images") == IMAGES

    downgrade_database(empty_database, "20261207_0015")
    assert tables(empty_database) == before
    db_execute(empty_database, "DELETE FROM region_verdicts")  # no trigger left behind
    upgrade_database(empty_database)
    assert db_rows(empty_database, state) == []


def test_board_context_migration_cascades_and_downgrades_on_its_own(empty_database: str) -> None:
    upgrade_database(empty_database, "20261207_0018")
    assert columns(empty_database, "inspection_contexts") == [
        "img_unique_id",
        "board_serial",
        "panel_id",
        "panel_position",
        "product",
        "recipe_revision",
        "line",
        "station",
        "side",
        "lot",
    ]
    assert {
        "ix_inspection_contexts_board_serial",
        "ix_inspection_contexts_product",
        "ix_inspection_contexts_line",
        "ix_inspection_contexts_lot",
    } <= indexes(empty_database, "inspection_contexts")
    add_ledger_row(empty_database, "20261207_180000_CTX001", "pending")
    db_execute(
        empty_database,
        "INSERT INTO inspection_contexts (img_unique_id, board_serial, side)"
        " VALUES ('20261207_180000_CTX001', 'SN1', 'top')",
    )
    with pytest.raises(psycopg.errors.CheckViolation):
        db_execute(
            empty_database,
            "UPDATE inspection_contexts SET side = 'left'",
        )
    db_execute(
        empty_database, "DELETE FROM inspections WHERE img_unique_id = '20261207_180000_CTX001'"
    )
    assert db_rows(empty_database, "SELECT count(*) FROM inspection_contexts") == [(0,)]

    downgrade_database(empty_database, "20261207_0016")
    assert "inspection_contexts" not in tables(empty_database)
    upgrade_database(empty_database)
    assert "inspection_contexts" in tables(empty_database)


def test_waiting_for_migration_converts_waiting_rows_and_downgrades(empty_database: str) -> None:
    """The `storage: ` prefix that told a store wait from a model-service wait becomes the
    `waiting_for` column, and back on downgrade."""
    upgrade_database(empty_database, "20261207_0027-1")
    for img_unique_id, error, waiting in [
        ("20261207_210000_STO001", "storage: the store did not answer", True),
        ("20261207_210000_MOD001", "model service unreachable", True),
        ("20261207_210000_DONE01", None, False),
    ]:
        add_ledger_row(empty_database, img_unique_id, "pending")
        db_execute(
            empty_database,
            "UPDATE inspections SET last_error = %s, next_attempt_at ="
            " CASE WHEN %s THEN now() END WHERE img_unique_id = %s",
            error,
            waiting,
            img_unique_id,
        )
    upgrade_database(empty_database, "20261207_0027")
    converted = "SELECT img_unique_id, waiting_for, last_error FROM inspections ORDER BY 1"
    assert db_rows(empty_database, converted) == [
        ("20261207_210000_DONE01", None, None),
        ("20261207_210000_MOD001", "model_service", "model service unreachable"),
        ("20261207_210000_STO001", "storage", "the store did not answer"),
    ]
    with pytest.raises(psycopg.errors.CheckViolation):
        db_execute(empty_database, "UPDATE inspections SET waiting_for = 'broker'")

    downgrade_database(empty_database, "-1")
    assert db_rows(
        empty_database,
        "SELECT last_error FROM inspections WHERE img_unique_id = '20261207_210000_STO001'",
    ) == [("storage: the store did not answer",)]
    upgrade_database(empty_database)
    assert "waiting_for" in columns(empty_database, "inspections")


def test_answer_region_events_migration_and_its_downgrade(empty_database: str) -> None:
    """`review_events.answer_region_id` (verdicts on shadow/replay answer regions); the
    downgrade removes those events (the older schema cannot tell them from a primary
    verdict) and keeps the others."""
    upgrade_database(empty_database, "20261208_0029")
    db_execute(
        empty_database,
        "INSERT INTO images (img_unique_id, image_height, image_width,"
        " processing_time_seconds, timestamp, input_image_path)"
        " VALUES ('20261208_001000_EVT001', 10, 10, 0.1, now(), 'uploads/e.png')",
    )
    for answer_region_id, kind in [(None, "disposition"), (7, "verdict")]:
        db_execute(
            empty_database,
            "INSERT INTO review_events (img_unique_id, answer_region_id, kind, value,"
            " reviewer) VALUES ('20261208_001000_EVT001', %s, %s, 'pass', 'qc')",
            answer_region_id,
            kind,
        )
    assert "reason" in columns(empty_database, "answer_regions")
    downgrade_database(empty_database, "20261207_0023")
    assert "answer_region_id" not in columns(empty_database, "review_events")
    assert "reason" not in columns(empty_database, "answer_regions")
    assert db_rows(empty_database, "SELECT kind FROM review_events") == [("disposition",)]
    upgrade_database(empty_database)
    assert "answer_region_id" in columns(empty_database, "review_events")


def test_compare_counts_migration_backfills_overlaps_and_counts_and_downgrades(
    empty_database: str,
) -> None:
    """Answers stored before 20261208_0028 get their overlaps from bounding boxes and the
    comparison's kept counts; the triggers keep the counts from then on."""
    upgrade_database(empty_database, "20261208_0029")
    board = "20261207_220000_CMP001"
    db_execute(
        empty_database,
        "INSERT INTO images (img_unique_id, image_height, image_width,"
        f" processing_time_seconds, timestamp, input_image_path) VALUES ('{board}', 64, 64,"
        " 0.1, '2026-12-07T22:00:00Z', 'uploads/old.png');"
        " INSERT INTO classes (img_unique_id, class_id, class_name, total_regions,"
        f" total_area_pixels) VALUES ('{board}', 1, 'short', 2, 2);"
        " INSERT INTO regions (class_unique_id, img_unique_id, region_id, centroid_x,"
        " centroid_y, bbox_x, bbox_y, bbox_width, bbox_height, area_pixels, perimeter,"
        " major_axis, minor_axis, circularity, aspect_ratio)"
        f" SELECT c.class_unique_id, '{board}', n, 1, 1, 20 * n, 0, 10, 10, 100, 4, 1, 1, 1, 1"
        " FROM classes c, generate_series(1, 2) n;"
        " INSERT INTO region_verdicts (region_unique_id, img_unique_id, verdict, reviewer)"
        f" SELECT region_unique_id, '{board}', 'real', 'anna' FROM regions;"
        " INSERT INTO model_answers (img_unique_id, role, model_service_url, model_version,"
        " status, region_count, matched_count, primary_region_count)"
        f" VALUES ('{board}', 'shadow', 'http://s/', 's-1', 'succeeded', 2, 1, 2);"
        # One region matched to region 1; one unmatched, its box over region 2's.
        " INSERT INTO answer_regions (answer_id, region_id, class_name, bbox_x, bbox_y,"
        " bbox_width, bbox_height, area_pixels, centroid_x, centroid_y,"
        " matched_region_unique_id, verdict)"
        " SELECT answer_id, 1, 'short', 20, 0, 10, 10, 100, 25, 5,"
        " (SELECT region_unique_id FROM regions WHERE region_id = 1), NULL FROM model_answers"
        " UNION ALL SELECT answer_id, 2, 'short', 45, 5, 4, 4, 16, 47, 7, NULL, 'real'"
        " FROM model_answers",
    )
    upgrade_database(empty_database, "20261208_0028")
    region_2 = db_rows(empty_database, "SELECT region_unique_id FROM regions WHERE region_id = 2")
    assert (
        db_rows(
            empty_database,
            "SELECT overlap_region_unique_id FROM answer_regions WHERE region_id = 2",
        )
        == region_2
    )
    assert db_rows(empty_database, "SELECT region_unique_id FROM primary_overlaps") == region_2
    assert db_rows(
        empty_database, "SELECT overlapping_count, primary_overlapping_count FROM model_answers"
    ) == [(1, 1)]
    counts = (
        "SELECT answer_id = 0, calls, real, matched, matched_real, overlapping,"
        " overlapping_real, primary_overlapping, primary_overlapping_real"
        " FROM compare_counts ORDER BY answer_id"
    )
    assert db_rows(empty_database, counts) == [
        (True, 2, 2, 0, 0, 0, 0, 0, 0),
        (False, 2, 2, 1, 1, 1, 1, 1, 1),
    ]
    # From now on the triggers keep them: region 1 judged a false call (its match too).
    db_execute(
        empty_database,
        "UPDATE region_verdicts SET verdict = 'false_call' WHERE"
        " region_unique_id = (SELECT region_unique_id FROM regions WHERE region_id = 1)",
    )
    assert db_rows(empty_database, counts) == [
        (True, 2, 1, 0, 0, 0, 0, 0, 0),
        (False, 2, 1, 1, 0, 1, 1, 1, 1),
    ]
    db_execute(empty_database, f"DELETE FROM images WHERE img_unique_id = '{board}'")
    assert db_rows(empty_database, "SELECT count(*) FROM compare_counts") == [(0,)]

    downgrade_database(empty_database, "20261208_0029")
    assert not {"compare_counts", "primary_overlaps"} & tables(empty_database)
    assert "overlap_region_unique_id" not in columns(empty_database, "answer_regions")
    db_execute(empty_database, "DELETE FROM region_verdicts")  # no trigger left behind
    upgrade_database(empty_database)
    assert "compare_counts" in tables(empty_database)
