"""Review: PUT verdicts and dispositions, the queue, the history, and verdicts in the
region answers and every export, against real PostgreSQL and the reference service."""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.support import AgentServer, db_rows

WHO = {"X-Reviewer": "qc-anna"}


@pytest.fixture(scope="module")
def boards(agent: AgentServer, deeppcb: list[Path]) -> list[dict[str, Any]]:
    """Three DeepPCB boards inspected in one batch, with their regions, oldest first."""
    files = [("images", (p.name, p.read_bytes())) for p in deeppcb[30:33]]
    with httpx2.Client(base_url=agent.url, timeout=120) as c:
        response = c.post("/api/upload/batch", params={"wait": "true"}, files=files)
        assert response.status_code == 200, response.text
        batch_id = response.json()["batch_id"]
        boards = []
        for item in response.json()["results"]:
            regions = c.get(f"/api/images/{item['img_unique_id']}/regions").json()
            ids = [r["region_unique_id"] for g in regions["classes"] for r in g["regions"]]
            assert ids, "every DeepPCB test board has defects"
            stamp = c.get(f"/api/images/{item['img_unique_id']}").json()["timestamp"]
            boards.append(
                {"id": item["img_unique_id"], "regions": ids, "batch_id": batch_id, "at": stamp}
            )
    # The queue's order: inspection time (images of a batch finish in any order), then id.
    return sorted(boards, key=lambda b: (b["at"], b["id"]))


def _verdict(c: httpx2.Client, region: int, verdict: str | None, **extra: Any) -> httpx2.Response:
    return c.put(f"/api/regions/{region}/verdict", json={"verdict": verdict, **extra}, headers=WHO)


def test_a_verdict_is_stored_with_reviewer_time_and_history(
    client: httpx2.Client, agent: AgentServer, boards: list[dict[str, Any]]
) -> None:
    region = boards[0]["regions"][0]
    first = _verdict(client, region, "real")
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["review"]["verdict"] == "real"
    assert body["review"]["reviewer"] == "qc-anna"
    assert body["previous"] is None
    assert body["progress"] == {"regions": len(boards[0]["regions"]), "reviewed_regions": 1}
    changed = _verdict(client, region, "false_call", comment="dust, çà")
    assert changed.json()["previous"] == "real"
    assert changed.json()["review"]["comment"] == "dust, çà"
    # Undo: back to no verdict.
    undone = _verdict(client, region, None)
    assert undone.json()["review"] is None
    assert undone.json()["previous"] == "false_call"
    assert undone.json()["progress"]["reviewed_regions"] == 0
    db = agent.settings.database_url or ""
    assert db_rows(db, "SELECT count(*) FROM region_verdicts") == [(0,)]
    history = client.get(f"/api/images/{boards[0]['id']}/review").json()
    assert [(e["value"], e["previous"]) for e in history["events"]] == [
        (None, "false_call"),
        ("false_call", "real"),
        ("real", None),
    ]
    assert {e["reviewer"] for e in history["events"]} == {"qc-anna"}


def test_the_reviewer_name_is_required_and_bounded_when_auth_is_off(
    client: httpx2.Client, agent: AgentServer, boards: list[dict[str, Any]]
) -> None:
    url = f"/api/regions/{boards[0]['regions'][0]}/verdict"
    db = agent.settings.database_url or ""
    events = db_rows(db, "SELECT count(*) FROM review_events")
    missing = client.put(url, json={"verdict": "real"})
    assert missing.status_code == 422
    assert "X-Reviewer" in missing.json()["detail"]
    for bad in ("%00x", "a" * 65, "%FF", "%20%20"):
        response = client.put(url, json={"verdict": "real"}, headers={"X-Reviewer": bad})
        assert response.status_code == 422, bad
    # A refused reviewer stores nothing: no verdict, no history.
    assert db_rows(db, "SELECT count(*) FROM review_events") == events
    assert db_rows(db, "SELECT count(*) FROM region_verdicts") == [(0,)]
    # Percent-encoded UTF-8, as the web UI sends it.
    named = client.put(
        url, json={"verdict": "unsure"}, headers={"X-Reviewer": "%E6%9D%8E%E5%9B%9B"}
    )
    assert named.json()["review"]["reviewer"] == "李四"
    assert _verdict(client, boards[0]["regions"][0], None).status_code == 200


def test_bad_verdicts_and_unknown_ids(
    client: httpx2.Client, agent: AgentServer, boards: list[dict[str, Any]]
) -> None:
    region = boards[0]["regions"][0]
    db = agent.settings.database_url or ""
    events = db_rows(db, "SELECT count(*) FROM review_events")
    assert _verdict(client, region, "maybe").status_code == 422
    assert _verdict(client, region, "real", comment="x" * 1001).status_code == 422
    assert _verdict(client, region, "real", extra_field=1).status_code == 422
    unknown = _verdict(client, 2**62, "real")
    assert unknown.status_code == 404
    assert unknown.json()["error"] == "region_not_found"
    nope = client.put(
        "/api/images/20990101_000000_NOPE00/disposition", json={"disposition": "pass"}, headers=WHO
    )
    assert nope.status_code == 404
    assert nope.json()["error"] == "image_not_found"
    # Every refused change left the tables as they were (nothing half-stored).
    assert db_rows(db, "SELECT count(*) FROM review_events") == events
    assert db_rows(db, "SELECT count(*) FROM region_verdicts") == [(0,)]
    assert db_rows(db, "SELECT count(*) FROM image_dispositions") == [(0,)]


def test_the_queue_walks_the_boards_oldest_first_and_counts_progress(
    client: httpx2.Client, boards: list[dict[str, Any]]
) -> None:
    batch = {"batch_id": boards[0]["batch_id"]}
    first = client.get("/api/review/next", params=batch).json()
    assert first["img_unique_id"] == boards[0]["id"]
    assert first["viewer_url"].endswith(f"/results/{boards[0]['id']}?review=1")
    assert first["progress"]["images"] == 3
    assert first["progress"]["reviewed_images"] == 0
    skipped = client.get("/api/review/next", params={**batch, "after": boards[0]["id"]}).json()
    assert skipped["img_unique_id"] == boards[1]["id"]
    wrapped = client.get("/api/review/next", params={**batch, "after": boards[2]["id"]}).json()
    assert wrapped["img_unique_id"] == boards[0]["id"]
    for region in boards[0]["regions"]:
        assert _verdict(client, region, "false_call").status_code == 200
    now = client.get("/api/review/next", params=batch).json()
    assert now["img_unique_id"] == boards[1]["id"]
    assert now["progress"]["reviewed_images"] == 1
    assert now["progress"]["reviewed_regions"] == len(boards[0]["regions"])
    assert client.get("/api/review/next", params={"end_date": "2000-01-01"}).json() == {
        "img_unique_id": None,
        "timestamp": None,
        "viewer_url": None,
        "progress": {"images": 0, "reviewed_images": 0, "regions": 0, "reviewed_regions": 0},
    }


def test_verdicts_and_dispositions_appear_in_answers_and_exports(
    client: httpx2.Client, boards: list[dict[str, Any]]
) -> None:
    board = boards[1]
    region = board["regions"][0]
    assert _verdict(client, region, "real").status_code == 200
    put = client.put(
        f"/api/images/{board['id']}/disposition", json={"disposition": "repair"}, headers=WHO
    )
    assert put.status_code == 200, put.text
    assert put.json()["review"]["disposition"] == "repair"

    detail = client.get(f"/api/images/{board['id']}").json()
    assert detail["disposition"]["disposition"] == "repair"
    assert detail["disposition"]["reviewer"] == "qc-anna"
    regions = client.get(f"/api/images/{board['id']}/regions").json()
    by_id = {r["region_unique_id"]: r for g in regions["classes"] for r in g["regions"]}
    assert by_id[region]["review"]["verdict"] == "real"
    assert by_id[board["regions"][-1]]["review"] is None or len(board["regions"]) == 1
    found = client.get("/api/query/defects", params={"img_unique_id": board["id"]}).json()
    assert {r["region_unique_id"]: (r["review"] or {}).get("verdict") for r in found["regions"]}[
        region
    ] == "real"

    rows = list(csv.DictReader(io.StringIO(client.get("/api/export/regions.csv").text)))
    mine = {int(r["region_unique_id"]): r for r in rows}
    assert mine[region]["verdict"] == "real"
    assert mine[region]["disposition"] == "repair"
    assert mine[boards[0]["regions"][0]]["verdict"] == "false_call"
    assert mine[boards[2]["regions"][0]]["verdict"] == ""

    coco = client.get("/api/export/coco.json", params={"batch_id": board["batch_id"]}).json()
    images = {i["img_unique_id"]: i for i in coco["images"]}
    assert images[board["id"]]["disposition"] == "repair"
    assert images[boards[2]["id"]]["disposition"] is None
    verdicts = {a["region_unique_id"]: a["verdict"] for a in coco["annotations"]}
    assert verdicts[region] == "real"
    assert verdicts[boards[2]["regions"][0]] is None

    archive = zipfile.ZipFile(
        io.BytesIO(client.get(f"/api/download/batch/{board['batch_id']}").content)
    )
    summary = {
        r["img_unique_id"]: r
        for r in csv.DictReader(io.StringIO(archive.read("summary.csv").decode()))
    }
    assert summary[board["id"]]["disposition"] == "repair"
    assert summary[board["id"]]["verdicts"] == "real=1"
    assert summary[boards[0]["id"]]["verdicts"] == f"false_call={len(boards[0]['regions'])}"

    withdrawn = client.put(
        f"/api/images/{board['id']}/disposition", json={"disposition": None}, headers=WHO
    )
    assert withdrawn.json() == {"img_unique_id": board["id"], "review": None, "previous": "repair"}
    assert client.get(f"/api/images/{board['id']}").json()["disposition"] is None


def test_dashboard_figures_follow_the_verdicts(
    client: httpx2.Client, boards: list[dict[str, Any]]
) -> None:
    batch = {"batch_id": boards[0]["batch_id"]}
    before = client.get("/api/dashboard/review", params=batch).json()
    # Board 0: all false calls (reviewed, passes). Finish board 1 with real defects.
    for region in boards[1]["regions"]:
        assert _verdict(client, region, "real").status_code == 200
    after = client.get("/api/dashboard/review", params=batch).json()
    total = after["total"]
    assert total["images"] == 3
    assert total["reviewed_images"] == before["total"]["reviewed_images"] + 1 == 2
    assert total["passed_images"] == 1
    assert total["first_pass_yield"] == 0.5
    assert total["reviewed_share"] == pytest.approx(2 / 3)
    reviewed = len(boards[0]["regions"]) + len(boards[1]["regions"])
    assert total["reviewed_regions"] == reviewed
    assert total["false_call_rate"] == pytest.approx(len(boards[0]["regions"]) / reviewed)
    assert sum(c["false_call"] for c in after["classes"]) == len(boards[0]["regions"])
    for c in after["classes"]:
        if c["reviewed"]:
            assert c["false_call_rate"] == pytest.approx(c["false_call"] / c["reviewed"])
    today = [d for d in after["days"] if d["images"]]
    assert len(today) == 1
    assert today[0]["reviewed_images"] == 2
    bad = client.get(
        "/api/dashboard/review", params={"start_date": "2026-02-02", "end_date": "2026-02-01"}
    )
    assert bad.status_code == 422


def test_deleting_an_image_takes_its_review_with_it(
    client: httpx2.Client, agent: AgentServer, boards: list[dict[str, Any]]
) -> None:
    board = boards[0]
    db = agent.settings.database_url or ""
    assert db_rows(db, "SELECT count(*) FROM review_events WHERE img_unique_id = %s", board["id"])[
        0
    ][0]
    assert client.delete(f"/api/images/{board['id']}").status_code == 204
    for table in ("region_verdicts", "review_events", "image_dispositions", "review_boards"):
        assert db_rows(
            db, f"SELECT count(*) FROM {table} WHERE img_unique_id = %s", board["id"]
        ) == [(0,)]


def test_the_batch_picker_lists_the_newest_batches_first(
    client: httpx2.Client, boards: list[dict[str, Any]]
) -> None:
    listed = client.get("/api/review/batches").json()["batches"]
    mine = [b for b in listed if b["batch_id"] == boards[0]["batch_id"]]
    assert [b["total_images"] for b in mine] == [3]
    stamps = [b["created_at"] for b in listed]
    assert stamps == sorted(stamps, reverse=True)
    newest = client.get("/api/review/batches", params={"limit": 1})
    assert newest.status_code == 200, newest.text
    assert newest.json()["batches"] == listed[:1]
    assert client.get("/api/review/batches", params={"limit": 0}).status_code == 422
    assert client.get("/api/review/batches", params={"limit": 501}).json()["error"] == (
        "invalid_request"
    )
