"""The review-state and disposition filters of `/api/images`, `/api/query/defects` and
the exports, and the review badge data of the listing, against real PostgreSQL and the
reference service, on a mix of boards: fully reviewed, partly reviewed with a false
call, untouched, reviewed with a false call, and a clean board (no region)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import httpx2
import psycopg
import pytest
from PIL import Image

from app.services.history import repository as history_repository
from tests.support import AgentServer, db_rows

WHO = {"X-Reviewer": "qc-ben"}


def _blank_png() -> bytes:
    """A uniform board: the reference service finds no defect on it."""
    out = io.BytesIO()
    Image.new("L", (320, 320), 128).save(out, format="PNG")
    return out.getvalue()


def _verdict(c: httpx2.Client, region: int, verdict: str | None) -> None:
    answer = c.put(f"/api/regions/{region}/verdict", json={"verdict": verdict}, headers=WHO)
    assert answer.status_code == 200, answer.text


def _disposition(c: httpx2.Client, img_unique_id: str, disposition: str) -> None:
    answer = c.put(
        f"/api/images/{img_unique_id}/disposition", json={"disposition": disposition}, headers=WHO
    )
    assert answer.status_code == 200, answer.text


@pytest.fixture(scope="module")
def boards(agent: AgentServer, deeppcb: list[Path]) -> dict[str, dict[str, Any]]:
    """Five boards of one batch, reviewed as a QC station would leave them:

    - `done`: every region `real`, disposition `repair`;
    - `partial`: one region `false_call`, the others not judged yet;
    - `untouched`: no verdict;
    - `false_done`: every region judged, one of them `false_call`; disposition `pass`;
    - `clean`: no region at all; disposition `pass`.
    """
    files = [("images", (p.name, p.read_bytes())) for p in deeppcb[40:44]]
    files.append(("images", ("blank.png", _blank_png())))
    names = ["done", "partial", "untouched", "false_done", "clean"]
    with httpx2.Client(base_url=agent.url, timeout=120) as c:
        response = c.post("/api/upload/batch", params={"wait": "true"}, files=files)
        assert response.status_code == 200, response.text
        by_file = {r["filename"]: r["img_unique_id"] for r in response.json()["results"]}
        found: dict[str, dict[str, Any]] = {}
        for name, (filename, _) in zip(names, [f[1] for f in files], strict=True):
            img_id = by_file[filename]
            regions = c.get(f"/api/images/{img_id}/regions").json()
            ids = [r["region_unique_id"] for g in regions["classes"] for r in g["regions"]]
            found[name] = {"id": img_id, "regions": ids}
        assert found["clean"]["regions"] == [], "the blank board must have no region"
        assert all(len(found[n]["regions"]) >= 2 for n in names[:4]), "boards with 2+ regions"
        for region in found["done"]["regions"]:
            _verdict(c, region, "real")
        _disposition(c, found["done"]["id"], "repair")
        _verdict(c, found["partial"]["regions"][0], "false_call")
        first, *others = found["false_done"]["regions"]
        _verdict(c, first, "false_call")
        for region in others:
            _verdict(c, region, "unsure")
        _disposition(c, found["false_done"]["id"], "pass")
        _disposition(c, found["clean"]["id"], "pass")
    return found


def _listed(c: httpx2.Client, **params: str) -> dict[str, dict[str, Any]]:
    answer = c.get("/api/images", params={"limit": "100", **params})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["total"] == len(body["images"])
    assert body["total_is_exact"]
    return {i["img_unique_id"]: i for i in body["images"]}


def _ids(boards: dict[str, dict[str, Any]], *names: str) -> set[str]:
    return {boards[n]["id"] for n in names}


def test_history_lists_boards_by_review_state_and_disposition(
    client: httpx2.Client, boards: dict[str, dict[str, Any]]
) -> None:
    assert set(_listed(client, review_state="unreviewed")) == _ids(boards, "partial", "untouched")
    assert set(_listed(client, review_state="reviewed")) == _ids(boards, "done", "false_done")
    assert set(_listed(client, review_state="has_false_calls")) == _ids(
        boards, "partial", "false_done"
    )
    assert set(_listed(client, disposition="pass")) == _ids(boards, "false_done", "clean")
    assert set(_listed(client, disposition="repair", review_state="reviewed")) == _ids(
        boards, "done"
    )
    assert _listed(client, disposition="scrap") == {}
    # Combined with the other filters (one page walked by cursor as well).
    first = client.get("/api/images", params={"review_state": "unreviewed", "limit": "1"}).json()
    second = client.get(
        "/api/images", params={"review_state": "unreviewed", "cursor": first["next_cursor"]}
    ).json()
    walked = {first["images"][0]["img_unique_id"], second["images"][0]["img_unique_id"]}
    assert walked == _ids(boards, "partial", "untouched")
    assert second["next_cursor"] is None


def test_every_listed_board_carries_its_review_badge_data(
    client: httpx2.Client, boards: dict[str, dict[str, Any]]
) -> None:
    listed = _listed(client)
    n = {name: len(b["regions"]) for name, b in boards.items()}
    review = {name: listed[b["id"]]["review"] for name, b in boards.items()}
    assert review["done"] == {
        "state": "reviewed",
        "regions": n["done"],
        "reviewed_regions": n["done"],
        "false_calls": 0,
        "disposition": "repair",
    }
    assert review["partial"] == {
        "state": "unreviewed",
        "regions": n["partial"],
        "reviewed_regions": 1,
        "false_calls": 1,
        "disposition": None,
    }
    assert review["untouched"]["reviewed_regions"] == 0
    assert review["false_done"]["state"] == "reviewed"
    assert review["false_done"]["false_calls"] == 1
    assert review["clean"] == {
        "state": None,
        "regions": 0,
        "reviewed_regions": 0,
        "false_calls": 0,
        "disposition": "pass",
    }


def test_withdrawing_a_verdict_makes_a_board_unreviewed_again(
    client: httpx2.Client, boards: dict[str, dict[str, Any]]
) -> None:
    region = boards["done"]["regions"][-1]
    _verdict(client, region, None)
    try:
        assert boards["done"]["id"] in _listed(client, review_state="unreviewed")
        assert boards["done"]["id"] not in _listed(client, review_state="reviewed")
    finally:
        _verdict(client, region, "real")
    assert boards["done"]["id"] in _listed(client, review_state="reviewed")


def test_defect_query_and_exports_take_the_same_filters(
    client: httpx2.Client, boards: dict[str, dict[str, Any]]
) -> None:
    wanted = set(boards["partial"]["regions"]) | set(boards["false_done"]["regions"])
    found = client.get(
        "/api/query/defects", params={"review_state": "has_false_calls", "limit": "100"}
    ).json()
    assert {r["region_unique_id"] for r in found["regions"]} == wanted
    assert found["total"] == len(wanted)

    rows = list(
        csv.DictReader(
            io.StringIO(
                client.get(
                    "/api/export/regions.csv",
                    params={"review_state": "reviewed", "disposition": "repair"},
                ).text
            )
        )
    )
    assert {int(r["region_unique_id"]) for r in rows} == set(boards["done"]["regions"])
    assert {r["disposition"] for r in rows} == {"repair"}

    coco = client.get("/api/export/coco.json", params={"disposition": "pass"}).json()
    assert {i["img_unique_id"] for i in coco["images"]} == _ids(boards, "false_done", "clean")
    assert {a["region_unique_id"] for a in coco["annotations"]} == set(
        boards["false_done"]["regions"]
    )


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/api/images", {"review_state": "done"}),
        ("/api/images", {"disposition": "ok"}),
        ("/api/query/defects", {"review_state": "false_call"}),
        ("/api/export/regions.csv", {"disposition": "PASS"}),
        ("/api/export/coco.json", {"review_state": ""}),
    ],
)
def test_an_unknown_review_state_or_disposition_is_a_clear_422(
    client: httpx2.Client, path: str, params: dict[str, str]
) -> None:
    answer = client.get(path, params=params)
    assert answer.status_code == 422
    body = answer.json()
    assert body["error"] == "invalid_request"
    name = next(iter(params))
    assert body["detail"].startswith(f"{name}:")
    allowed = ("unreviewed", "has_false_calls") if name == "review_state" else ("repair",)
    assert all(word in body["detail"] for word in allowed)


def test_changing_and_withdrawing_keeps_every_filter_true(
    client: httpx2.Client, agent: AgentServer, boards: dict[str, dict[str, Any]]
) -> None:
    """The per-board review state is kept by triggers: a false call turned real, a
    withdrawn disposition and a deleted board each show at once in the filters."""
    region = boards["partial"]["regions"][0]
    _verdict(client, region, "real")
    try:
        assert boards["partial"]["id"] not in _listed(client, review_state="has_false_calls")
        assert _listed(client)[boards["partial"]["id"]]["review"]["false_calls"] == 0
    finally:
        _verdict(client, region, "false_call")
    assert boards["partial"]["id"] in _listed(client, review_state="has_false_calls")

    withdrawn = client.put(
        f"/api/images/{boards['clean']['id']}/disposition", json={"disposition": None}, headers=WHO
    )
    assert withdrawn.status_code == 200
    try:
        assert set(_listed(client, disposition="pass")) == _ids(boards, "false_done")
    finally:
        _disposition(client, boards["clean"]["id"], "pass")

    db = agent.settings.database_url or ""
    rebuilt = db_rows(
        db,
        "SELECT img_unique_id, regions, reviewed, false_calls, disposition FROM review_boards"
        " ORDER BY 1",
    )
    # What the triggers kept is what a rebuild from the verdicts computes.
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("SELECT aoi_review_boards_rebuild()")
    assert (
        db_rows(
            db,
            "SELECT img_unique_id, regions, reviewed, false_calls, disposition"
            " FROM review_boards ORDER BY 1",
        )
        == rebuilt
    )
    assert len(rebuilt) == 4  # every board with a verdict or a disposition; not `untouched`


def test_a_review_filter_counts_exactly_up_to_its_cap_then_says_about(
    client: httpx2.Client, boards: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cap is lowered to 1 (the agent runs in this process) so two boards stand for
    the 1,000 past which a review-filtered total is an estimate."""
    monkeypatch.setattr(history_repository, "REVIEW_EXACT_UP_TO", 1)
    for path, params in [
        ("/api/images", {"review_state": "unreviewed"}),
        ("/api/images", {"review_state": "reviewed"}),
        ("/api/query/defects", {"disposition": "pass"}),
    ]:
        answer = client.get(path, params=params).json()
        assert answer["total_is_exact"] is False, (path, params)
        assert answer["total"] >= 2, (path, params)
    answer = client.get("/api/images", params={"disposition": "repair"}).json()
    assert (answer["total"], answer["total_is_exact"]) == (1, True)
