"""Keyset (cursor) pagination and labelled totals of `/api/images` and `/api/query/defects`.

The rows are written with SQL (the listing reads rows only, never files), many with the
same timestamp so the order's tie-break is what keeps pages from skipping or repeating.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx2
import pytest

import app.services.database.queries as queries
from tests.support import AgentServer, db_execute, db_rows

SAME = datetime(2026, 4, 1, 12, 0, 0, tzinfo=UTC)
EARLIER = datetime(2026, 4, 1, 11, 59, 59, 500000, tzinfo=UTC)
BATCH = "B_20260401_120000_BATCH1"
CLASSES = ("open", "short")


def _img(i: int) -> str:
    return f"20260401_120000_IMG{i:03d}"


@pytest.fixture(scope="module")
def seeded(agent: AgentServer, database_url: str) -> dict[str, Any]:
    """23 images at one timestamp and 5 half a second earlier, each with one class
    (`open` or `short`, alternating) of 1-3 regions; every third in a batch; 7 failed
    ledger rows accepted at one instant."""
    db_execute(
        database_url,
        "INSERT INTO batches (batch_id, created_at, total_images, rejected_files)"
        " VALUES (%s, %s, 10, 0)",
        BATCH,
        SAME,
    )
    for i in range(28):
        stamp = SAME if i < 23 else EARLIER
        db_execute(
            database_url,
            "INSERT INTO images VALUES (%s, 480, 640, 0.2, %s, 'in', 'c', 'm', 'o')",
            _img(i),
            stamp,
        )
        db_execute(
            database_url,
            "INSERT INTO inspections (img_unique_id, batch_id, original_filename,"
            " input_image_path, size_bytes, media_type, status, attempts, created_at,"
            " updated_at) VALUES (%s, %s, 'f.png', 'in', 1, 'image/png', 'succeeded', 1, %s, %s)",
            _img(i),
            BATCH if i % 3 == 0 else None,
            stamp,
            stamp,
        )
        regions = i % 3 + 1
        db_execute(
            database_url,
            "WITH c AS (INSERT INTO classes (img_unique_id, class_id, class_name,"
            " total_regions, total_area_pixels) VALUES (%s, %s, %s, %s, %s)"
            " RETURNING class_unique_id, img_unique_id)"
            " INSERT INTO regions (class_unique_id, img_unique_id, region_id, centroid_x,"
            " centroid_y, bbox_x, bbox_y, bbox_width, bbox_height, area_pixels, perimeter,"
            " major_axis, minor_axis, circularity, aspect_ratio)"
            " SELECT c.class_unique_id, c.img_unique_id, r, 10, 10, 0, 0, 2, 2, 10 * r, 8, 3,"
            " 2, 0.9, 1.5 FROM c, generate_series(1, %s) r",
            _img(i),
            1 + i % 2,
            CLASSES[i % 2],
            regions,
            10 * regions * (regions + 1) // 2,
            regions,
        )
    db_execute(
        database_url,
        "INSERT INTO inspections (img_unique_id, original_filename, input_image_path,"
        " size_bytes, media_type, status, attempts, created_at, updated_at, last_error)"
        " SELECT '20260401_120000_FAIL0' || i, 'f.png', 'in', 1, 'image/png', 'failed', 1,"
        " %s, %s, 'boom' FROM generate_series(1, 7) i",
        SAME,
        SAME,
    )
    return {"ids": [_img(i) for i in range(28)]}


def _walk(client: httpx2.Client, path: str, params: dict[str, Any], rows: str) -> list[Any]:
    """Every row of a listing, page by page through `next_cursor`."""
    found: list[Any] = []
    answer = client.get(path, params=params).json()
    assert answer["page"] == 1
    pages = 1
    while True:
        found += answer[rows]
        if answer["next_cursor"] is None:
            return found
        answer = client.get(path, params={**params, "cursor": answer["next_cursor"]}).json()
        assert answer["page"] is None  # asked for by cursor
        pages += 1
        assert pages < 100


def _by_page(client: httpx2.Client, path: str, params: dict[str, Any], rows: str) -> list[Any]:
    found: list[Any] = []
    for page in range(1, 100):
        answer = client.get(path, params={**params, "page": page}).json()
        if not answer[rows]:
            return found
        found += answer[rows]
    raise AssertionError("no end")


def _expected(ids: list[str]) -> list[str]:
    """Newest first, ties by id descending: the listing's order."""
    stamps = {i: (SAME if int(i[-3:]) < 23 else EARLIER) for i in ids}
    return sorted(ids, key=lambda i: (stamps[i], i), reverse=True)


@pytest.mark.parametrize("limit", [1, 4, 5, 23, 100])
def test_cursor_walk_lists_every_image_once_in_order(
    client: httpx2.Client, seeded: dict[str, Any], limit: int
) -> None:
    params = {"limit": limit, "date_range": "2026-04-01..2026-04-01"}
    walked = [row["img_unique_id"] for row in _walk(client, "/api/images", params, "images")]
    assert walked == _expected(seeded["ids"])
    paged = [row["img_unique_id"] for row in _by_page(client, "/api/images", params, "images")]
    assert paged == walked


@pytest.mark.parametrize(
    ("params", "keep"),
    [
        ({"class_name": "OPEN"}, lambda i: i % 2 == 0),
        ({"batch_id": BATCH}, lambda i: i % 3 == 0),
        ({"min_defects": 3}, lambda i: i % 3 == 2),
        ({"class_name": "short", "batch_id": BATCH}, lambda i: i % 2 == 1 and i % 3 == 0),
    ],
)
def test_cursor_pages_keep_the_filters(
    client: httpx2.Client, seeded: dict[str, Any], params: dict[str, Any], keep: Any
) -> None:
    walked = _walk(client, "/api/images", {**params, "limit": 3}, "images")
    expected = _expected([_img(i) for i in range(28) if keep(i)])
    assert [row["img_unique_id"] for row in walked] == expected
    first = client.get("/api/images", params={**params, "limit": 3}).json()
    assert (first["total"], first["total_is_exact"]) == (len(expected), True)


def test_failed_images_page_by_cursor_too(client: httpx2.Client, seeded: dict[str, Any]) -> None:
    walked = _walk(client, "/api/images", {"status": "failed", "limit": 2}, "images")
    assert [row["img_unique_id"] for row in walked] == [
        f"20260401_120000_FAIL0{i}" for i in range(7, 0, -1)
    ]
    assert all(row["status"] == "failed" for row in walked)


def test_defect_regions_page_by_cursor_without_gaps(
    client: httpx2.Client, seeded: dict[str, Any], database_url: str
) -> None:
    expected = [
        r[0]
        for r in db_rows(
            database_url,
            "SELECT g.region_unique_id FROM regions g JOIN images i USING (img_unique_id)"
            " JOIN classes c ON c.class_unique_id = g.class_unique_id"
            " ORDER BY i.timestamp DESC, g.img_unique_id, c.class_id, g.region_id,"
            " g.region_unique_id",
        )
    ]
    assert len(expected) == sum(i % 3 + 1 for i in range(28))
    walked = _walk(client, "/api/query/defects", {"limit": 7}, "regions")
    assert [r["region_unique_id"] for r in walked] == expected
    short = _walk(client, "/api/query/defects", {"limit": 4, "class_name": "short"}, "regions")
    assert {r["class_name"] for r in short} == {"short"}
    assert len(short) == sum(i % 3 + 1 for i in range(28) if i % 2 == 1)
    large = _walk(client, "/api/query/defects", {"limit": 4, "min_area": 30}, "regions")
    assert [r["region_unique_id"] for r in large] == [
        r["region_unique_id"] for r in walked if r["area_pixels"] >= 30
    ]


def test_totals_are_exact_from_rollups_and_labelled_when_estimated(
    client: httpx2.Client, seeded: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The exact-count cap is lowered to 5 (the agent runs in this process) so a few rows
    stand for the 10,000 past which counting stops."""
    monkeypatch.setattr(queries, "TOTAL_EXACT_UP_TO", 5)
    # Dates and a class: exact from the rollups, whatever the cap.
    answer = client.get("/api/images", params={"limit": 2}).json()
    assert (answer["total"], answer["total_is_exact"]) == (28, True)
    answer = client.get("/api/images", params={"class_name": "open"}).json()
    assert (answer["total"], answer["total_is_exact"]) == (14, True)
    answer = client.get("/api/query/defects", params={"class_name": "short"}).json()
    assert (answer["total"], answer["total_is_exact"]) == (27, True)  # odd i: i % 3 + 1 each
    # A filter no rollup serves: counted up to the cap, then an estimate, said so.
    for path, params in [
        ("/api/images", {"min_defects": 1}),
        ("/api/images", {"status": "failed"}),
        ("/api/query/defects", {"min_area": 0}),
    ]:
        answer = client.get(path, params=params).json()
        assert answer["total_is_exact"] is False, (path, params)
        assert answer["total"] >= 6
    # Under the cap: exact.
    answer = client.get("/api/images", params={"min_defects": 3, "class_name": "open"}).json()
    assert (answer["total"], answer["total_is_exact"]) == (5, True)  # i = 2, 8, 14, 20, 26


def test_deleting_an_image_keeps_totals_and_dashboard_right(
    client: httpx2.Client, seeded: dict[str, Any], database_url: str
) -> None:
    before = client.get("/api/dashboard/summary").json()
    assert client.delete(f"/api/images/{_img(2)}").status_code == 204  # `open`, 3 regions
    after = client.get("/api/dashboard/summary").json()
    assert after["total_images"] == before["total_images"] - 1
    assert after["total_defects"] == before["total_defects"] - 3
    stats = client.get("/api/stats").json()
    assert stats["total_images"] == db_rows(database_url, "SELECT count(*) FROM images")[0][0]
    listed = client.get("/api/images").json()
    assert (listed["total"], listed["total_is_exact"]) == (27, True)
    regions = client.get("/api/query/defects").json()
    assert regions["total"] == db_rows(database_url, "SELECT count(*) FROM regions")[0][0]
