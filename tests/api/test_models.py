"""GET /api/models, GET /api/models/compare, GET /api/models/answers/{id} and the verdict
on an unmatched answer region, against a hand count.

The rows (primary regions, verdicts, shadow answers with their matches) are written
directly to the real PostgreSQL: the figures depend only on them, and the matching itself
is tested with real model services in tests/services/models. The hand count is in each
test's comments."""

from __future__ import annotations

from typing import Any

import httpx2
import psycopg
import pytest

from tests.support import AgentServer, db_execute, db_rows

P, S, S2 = "p-1.0", "s-2.0", "s-3.0"
I1, I2, I3, I4 = (f"20260301_10000{n}_AAAAA{n}" for n in range(1, 5))


def _image(db: str, img_id: str, hour: int, version: str) -> None:
    stamp = f"2026-03-01T{hour:02d}:00:00Z"
    db_execute(
        db,
        "INSERT INTO images (img_unique_id, image_height, image_width,"
        " processing_time_seconds, timestamp, input_image_path) VALUES (%s, 640, 640, 0.1, %s,"
        " %s)",
        img_id,
        stamp,
        f"uploads/{img_id}.jpg",
    )
    db_execute(
        db,
        "INSERT INTO inspections (img_unique_id, original_filename, input_image_path,"
        " size_bytes, media_type, status, attempts, created_at, updated_at, model_name,"
        " model_version) VALUES (%s, 'b.jpg', %s, 10, 'image/jpeg', 'succeeded', 1, %s, %s,"
        " 'primary-model', %s)",
        img_id,
        f"uploads/{img_id}.jpg",
        stamp,
        stamp,
        version,
    )


def _regions(db: str, img_id: str, classes: dict[str, list[str | None]]) -> list[int]:
    """Primary regions of `img_id` ({class: [verdict per region]}); their ids in order."""
    ids: list[int] = []
    for class_id, (name, verdicts) in enumerate(classes.items(), start=1):
        (class_uid,) = db_rows(
            db,
            "INSERT INTO classes (img_unique_id, class_id, class_name, total_regions,"
            " total_area_pixels) VALUES (%s, %s, %s, %s, %s) RETURNING class_unique_id",
            img_id,
            class_id,
            name,
            len(verdicts),
            10 * len(verdicts),
        )[0]
        for n, verdict in enumerate(verdicts, start=1):
            (rid,) = db_rows(
                db,
                "INSERT INTO regions (class_unique_id, img_unique_id, region_id, centroid_x,"
                " centroid_y, bbox_x, bbox_y, bbox_width, bbox_height, area_pixels, perimeter,"
                " major_axis, minor_axis, circularity, aspect_ratio) VALUES (%s, %s, %s, 5, 5,"
                " %s, 0, 10, 1, 10, 22, 10, 1, 0.3, 10) RETURNING region_unique_id",
                class_uid,
                img_id,
                n,
                100 * len(ids),
            )[0]
            ids.append(rid)
            if verdict is not None:
                db_execute(
                    db,
                    "INSERT INTO region_verdicts (region_unique_id, img_unique_id, verdict,"
                    " reviewer) VALUES (%s, %s, %s, 'qc')",
                    rid,
                    img_id,
                    verdict,
                )
    return ids


def _answer(
    db: str,
    img_id: str,
    version: str,
    regions: list[tuple[str, int | None, str | None]],
    status: str = "succeeded",
) -> tuple[int, list[int]]:
    """A shadow answer with regions (class, matched primary region, own verdict)."""
    (answer_id,) = db_rows(
        db,
        "INSERT INTO model_answers (img_unique_id, role, model_service_url, model_name,"
        " model_version, status) VALUES (%s, 'shadow', 'http://shadow/', 'shadow-model', %s,"
        " %s) RETURNING answer_id",
        img_id,
        None if status == "failed" else version,
        status,
    )[0]
    ids = []
    for n, (name, matched, verdict) in enumerate(regions, start=1):
        (rid,) = db_rows(
            db,
            "INSERT INTO answer_regions (answer_id, region_id, class_name, bbox_x, bbox_y,"
            " bbox_width, bbox_height, area_pixels, centroid_x, centroid_y,"
            " matched_region_unique_id, match_iou, verdict) VALUES (%s, %s, %s, 0, 0, 10, 1,"
            " 10, 5, 5, %s, %s, %s) RETURNING answer_region_id",
            answer_id,
            n,
            name,
            matched,
            0.9 if matched else None,
            verdict,
        )[0]
        ids.append(rid)
    if status == "succeeded":  # the counts `run_model_answer` keeps with the answer
        db_execute(
            db,
            "UPDATE model_answers SET region_count = %s, matched_count = %s,"
            " primary_region_count = (SELECT count(*) FROM regions WHERE img_unique_id = %s)"
            " WHERE answer_id = %s",
            len(regions),
            sum(1 for _, matched, _ in regions if matched),
            img_id,
            answer_id,
        )
    return answer_id, ids


@pytest.fixture(scope="module")
def scene(agent: AgentServer) -> dict[str, Any]:
    """I1: primary r1 short (real), r2 short (false call), r3 spur (real), r4 open (no
    verdict); shadow S: x1 short = r1, x2 spur = r3, x3 short unmatched (judged real),
    x4 mousebite unmatched (no verdict); shadow S2: y1 short = r1, y2 short unmatched.
    I2: primary r5 short (real); shadow S answered with no region.
    I3: primary only (no shadow answer). I4: the shadow failed."""
    db = agent.settings.database_url or ""
    _image(db, I1, 1, P)
    _image(db, I2, 2, P)
    _image(db, I3, 3, P)
    _image(db, I4, 4, P)
    r1, r2, r3, r4 = _regions(
        db, I1, {"short": ["real", "false_call"], "spur": ["real"], "open": [None]}
    )
    (r5,) = _regions(db, I2, {"short": ["real"]})
    _regions(db, I3, {"short": ["real"]})
    a1, xs = _answer(
        db,
        I1,
        S,
        [
            ("short", r1, None),
            ("spur", r3, None),
            ("short", None, "real"),
            ("mousebite", None, None),
        ],
    )
    a2, _ = _answer(db, I2, S, [])
    a3, ys = _answer(db, I1, S2, [("short", r1, None), ("short", None, None)])
    _answer(db, I4, S, [], status="failed")
    return {"a1": a1, "a2": a2, "a3": a3, "xs": xs, "ys": ys, "r": [r1, r2, r3, r4, r5]}


def _by_class(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["class_name"]: c for c in body["classes"]}


def test_models_lists_primary_and_shadow_versions(
    client: httpx2.Client, scene: dict[str, Any]
) -> None:
    body = client.get("/api/models").json()
    by_version = {m["model_version"]: m for m in body["models"]}
    assert by_version[P]["primary_answers"] == 4
    assert by_version[P]["shadow_answers"] == 0
    assert by_version[P]["model_name"] == "primary-model"
    assert by_version[S]["shadow_answers"] == 2
    assert by_version[S]["primary_answers"] == 0
    assert by_version[S2]["shadow_answers"] == 1
    assert by_version[S]["first_seen"] is not None
    assert [f["model_service_url"] for f in body["failed_services"]] == ["http://shadow/"]
    assert body["failed_services"][0]["failed_answers"] == 1


def test_compare_primary_with_shadow_matches_the_hand_count(
    client: httpx2.Client, scene: dict[str, Any]
) -> None:
    response = client.get("/api/models/compare", params={"a": P, "b": S})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["images"] == 2  # I1, I2 (I3 has no shadow answer, I4's failed)
    c = _by_class(body)
    # short: A r1 r2 r5, B x1(=r1) x3. Matched r1; A only r2 r5; B only x3.
    short = c["short"]
    assert (short["matched"], short["a_only"], short["b_only"]) == (1, 2, 1)
    # A: real r1 r5, false r2; missed x3 (B only, real) -> P 2/3, relative recall 2/3.
    assert short["a"]["confirmed_real"] == 2
    assert short["a"]["false_calls"] == 1
    assert short["a"]["missed_real"] == 1
    assert short["a"]["precision"] == pytest.approx(0.6667)
    assert short["a"]["relative_recall"] == pytest.approx(0.6667)
    # B: real x1 (r1's verdict) and x3 (its own); missed r5 -> P 1.0, relative recall 2/3.
    assert short["b"]["calls"] == 2
    assert short["b"]["confirmed_real"] == 2
    assert short["b"]["false_calls"] == 0
    assert short["b"]["missed_real"] == 1
    assert short["b"]["precision"] == 1.0
    assert short["b"]["relative_recall"] == pytest.approx(0.6667)
    assert (
        c["spur"]["matched"],
        c["spur"]["a"]["confirmed_real"],
        c["spur"]["b"]["confirmed_real"],
    ) == (1, 1, 1)
    assert (c["open"]["a_only"], c["open"]["a"]["unreviewed"]) == (1, 1)
    assert (c["mousebite"]["b_only"], c["mousebite"]["b"]["unreviewed"]) == (1, 1)
    assert body["totals"]["matched"] == 2
    assert body["totals"]["a_only"] == 3
    assert body["totals"]["b_only"] == 2
    assert body["disagreeing_images"] == 2
    listed = {d["img_unique_id"]: d for d in body["disagreements"]}
    assert set(listed) == {I1, I2}
    assert listed[I1]["a_answer_id"] is None
    assert listed[I1]["b_answer_id"] == scene["a1"]
    assert listed[I1]["viewer_url"].endswith(f"/results/{I1}?compare={scene['a1']}")
    assert (listed[I2]["a_only"], listed[I2]["b_only"]) == (1, 0)


def test_compare_is_symmetric(client: httpx2.Client, scene: dict[str, Any]) -> None:
    ab = client.get("/api/models/compare", params={"a": P, "b": S}).json()
    ba = client.get("/api/models/compare", params={"a": S, "b": P}).json()
    for name, row in _by_class(ab).items():
        mirrored = _by_class(ba)[name]
        assert (row["a_only"], row["b_only"]) == (mirrored["b_only"], mirrored["a_only"])
        assert row["a"] == mirrored["b"]


def test_compare_two_shadows_goes_through_the_primary_match(
    client: httpx2.Client, scene: dict[str, Any]
) -> None:
    # I1 only: S x1(=r1) x2(=r3) x3 x4; S2 y1(=r1) y2. Matched r1; S only x2 x3 x4; S2 only y2
    # (x3 and y2 are both unmatched to the primary: never matched to each other).
    body = client.get("/api/models/compare", params={"a": S, "b": S2}).json()
    assert body["images"] == 1
    short = _by_class(body)["short"]
    assert (short["matched"], short["a_only"], short["b_only"]) == (1, 1, 1)
    assert short["b"]["missed_real"] == 1  # x3, judged real
    assert _by_class(body)["spur"]["a_only"] == 1


def test_compare_filters(client: httpx2.Client, scene: dict[str, Any]) -> None:
    other_day = client.get(
        "/api/models/compare", params={"a": P, "b": S, "start_date": "2026-03-02"}
    ).json()
    assert other_day["images"] == 0
    assert other_day["classes"] == []
    unknown = client.get("/api/models/compare", params={"a": P, "b": "nope"}).json()
    assert unknown["images"] == 0
    batch = client.get(
        "/api/models/compare", params={"a": P, "b": S, "batch_id": "B_20260301_000000_AAAAAA"}
    ).json()
    assert batch["images"] == 0


def test_answer_and_verdict_on_unmatched_region(
    client: httpx2.Client, scene: dict[str, Any]
) -> None:
    answer = client.get(f"/api/models/answers/{scene['a1']}").json()
    assert answer["model_version"] == S
    assert [r["matched_region_unique_id"] for r in answer["regions"]].count(None) == 2
    x1, _, _, x4 = scene["xs"]
    headers = {"X-Reviewer": "qc"}
    matched = client.put(
        f"/api/models/answer-regions/{x1}/verdict", json={"verdict": "real"}, headers=headers
    )
    assert matched.status_code == 409
    assert matched.json()["error"] == "answer_region_matched"
    judged = client.put(
        f"/api/models/answer-regions/{x4}/verdict", json={"verdict": "real"}, headers=headers
    )
    assert judged.status_code == 200, judged.text
    assert judged.json()["verdict"] == "real"
    body = client.get("/api/models/compare", params={"a": P, "b": S}).json()
    mousebite = _by_class(body)["mousebite"]
    assert mousebite["b"]["confirmed_real"] == 1
    assert mousebite["a"]["missed_real"] == 1
    withdrawn = client.put(
        f"/api/models/answer-regions/{x4}/verdict", json={"verdict": None}, headers=headers
    )
    assert withdrawn.json()["verdict"] is None
    missing = client.get("/api/models/answers/999999")
    assert missing.status_code == 404
    assert missing.json()["error"] == "answer_not_found"


def test_review_queue_filters_the_disagreements(
    client: httpx2.Client, scene: dict[str, Any]
) -> None:
    # S disagrees with the primary on I1 (x3, x4 unmatched; r2, r4 unmatched) and on I2
    # (r5 unmatched); I3 has no S answer, I4's failed. Of the two, only I1 still has a
    # region without a verdict (r4).
    body = client.get("/api/review/next", params={"disagreement": S}).json()
    assert body["img_unique_id"] == I1
    assert body["progress"]["images"] == 2
    assert "review=1" in body["viewer_url"]
    # S2 disagrees on I1 only.
    assert (
        client.get("/api/review/next", params={"disagreement": S2}).json()["progress"]["images"]
        == 1
    )
    nobody = client.get("/api/review/next", params={"disagreement": "no-such-version"}).json()
    assert nobody["img_unique_id"] is None


def test_answer_region_verdicts_are_in_the_review_history(
    client: httpx2.Client, agent: AgentServer, scene: dict[str, Any]
) -> None:
    """A verdict on a region only a shadow answer has is a review event of its board, with
    the reviewer, reason and comment a primary verdict records; it counts in the
    reviewer's figures; a reason not in the list is refused and records nothing."""
    region = scene["ys"][1]  # S2's unmatched region on I1
    url = f"/api/models/answer-regions/{region}/verdict"
    db = agent.settings.database_url or ""

    def events() -> list[dict[str, Any]]:
        body = client.get(f"/api/images/{I1}/review").json()
        return [e for e in body["events"] if e["answer_region_id"] == region]

    figures_before = client.get("/api/review/figures").json()
    refused = client.put(
        url, json={"verdict": "false_call", "reason": "no-such"}, headers={"X-Reviewer": "ann"}
    )
    assert refused.status_code == 422
    assert refused.json()["error"] == "unknown_reason"
    assert events() == []

    judged = client.put(
        url,
        json={"verdict": "false_call", "reason": "dust", "comment": "speck on the lens"},
        headers={"X-Reviewer": "ann"},
    )
    assert judged.status_code == 200, judged.text
    assert (judged.json()["verdict"], judged.json()["reason"]) == ("false_call", "dust")
    stored = client.get(f"/api/models/answers/{scene['a3']}").json()["regions"]
    assert [(r["verdict"], r["reason"]) for r in stored if r["answer_region_id"] == region] == [
        ("false_call", "dust")
    ]
    withdrawn = client.put(url, json={"verdict": None}, headers={"X-Reviewer": "bob"})
    assert withdrawn.status_code == 200
    assert (withdrawn.json()["verdict"], withdrawn.json()["reason"]) == (None, None)

    newest, first = events()
    assert {k: first[k] for k in ("kind", "region_unique_id", "value", "previous")} == {
        "kind": "verdict",
        "region_unique_id": None,
        "value": "false_call",
        "previous": None,
    }
    assert (first["reason"], first["reviewer"], first["comment"]) == (
        "dust",
        "ann",
        "speck on the lens",
    )
    assert (newest["value"], newest["previous"], newest["reviewer"]) == (None, "false_call", "bob")
    assert db_rows(
        db,
        "SELECT img_unique_id, answer_region_id, reason FROM review_events"
        " WHERE answer_region_id = %s ORDER BY id",
        region,
    ) == [(I1, region, "dust"), (I1, region, None)]

    def verdicts(body: dict[str, Any], who: str) -> int:
        return sum(r["verdicts"] for r in body["reviewers"] if r["reviewer"] == who)

    figures = client.get("/api/review/figures").json()
    assert verdicts(figures, "ann") == verdicts(figures_before, "ann") + 1


P2, S3 = "p-2.0", "s-4.0"
I5 = "20260302_100005_AAAAA5"


def _kept_counts(db: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """`compare_counts` as the triggers kept it, and as `aoi_compare_counts_rebuild()`
    recomputes it from the rows (in a transaction rolled back)."""
    order = "SELECT * FROM compare_counts ORDER BY img_unique_id, answer_id, class_name"
    with psycopg.connect(db) as conn:
        kept = conn.execute(order).fetchall()
        conn.execute("SELECT aoi_compare_counts_rebuild()")
        rebuilt = conn.execute(order).fetchall()
        conn.rollback()
    return kept, rebuilt


@pytest.fixture(scope="module")
def overlap_scene(agent: AgentServer) -> dict[str, Any]:
    """I5 (primary P2): r6 short (real), r7 short (real), r8 spur (no verdict). Shadow S3:
    z1 short = r6; z2 short unmatched, overlapping r6 (a fragment; judged real); z3 short
    unmatched, overlapping r7 (judged real), and r7 overlaps z3 without a match (a
    `primary_overlaps` row); z4 spur unmatched, overlapping nothing (judged real)."""
    db = agent.settings.database_url or ""
    _image(db, I5, 5, P2)
    r6, r7, r8 = _regions(db, I5, {"short": ["real", "real"], "spur": [None]})
    answer_id, zs = _answer(
        db, I5, S3, [("short", r6, None), ("short", None, "real"), ("short", None, "real")]
    )
    (z4,) = db_rows(
        db,
        "INSERT INTO answer_regions (answer_id, region_id, class_name, bbox_x, bbox_y,"
        " bbox_width, bbox_height, area_pixels, centroid_x, centroid_y, verdict)"
        " VALUES (%s, 4, 'spur', 300, 300, 10, 10, 100, 305, 305, 'real')"
        " RETURNING answer_region_id",
        answer_id,
    )[0]
    db_execute(
        db,
        "UPDATE answer_regions SET overlap_region_unique_id = %s WHERE answer_region_id = %s",
        r6,
        zs[1],
    )
    db_execute(
        db,
        "UPDATE answer_regions SET overlap_region_unique_id = %s WHERE answer_region_id = %s",
        r7,
        zs[2],
    )
    db_execute(
        db,
        "INSERT INTO primary_overlaps (answer_id, region_unique_id) VALUES (%s, %s)",
        answer_id,
        r7,
    )
    db_execute(
        db,
        "UPDATE model_answers SET region_count = 4, overlapping_count = 2,"
        " primary_overlapping_count = 1 WHERE answer_id = %s",
        answer_id,
    )
    return {"answer": answer_id, "r": [r6, r7, r8], "z": [*zs, z4]}


def test_overlapping_regions_are_a_miss_of_neither(
    client: httpx2.Client, overlap_scene: dict[str, Any]
) -> None:
    body = client.get("/api/models/compare", params={"a": P2, "b": S3}).json()
    assert body["images"] == 1
    short = _by_class(body)["short"]
    # Matched r6 = z1; r7 overlaps z3 (A overlapping 1); z2, z3 overlap r6, r7 (B 2).
    assert (short["matched"], short["a_only"], short["b_only"]) == (1, 0, 0)
    assert (short["a_overlapping"], short["b_overlapping"]) == (1, 2)
    # z2 and z3 are real, but on defects A found: no miss of A (was 2 by the old rule).
    assert short["a"]["missed_real"] == 0
    assert short["b"]["missed_real"] == 0
    assert (short["a"]["calls"], short["a"]["confirmed_real"]) == (2, 2)
    assert (short["b"]["calls"], short["b"]["confirmed_real"]) == (3, 3)
    assert short["a"]["relative_recall"] == 1.0
    spur = _by_class(body)["spur"]
    assert (spur["a_only"], spur["b_only"], spur["a"]["missed_real"]) == (1, 1, 1)
    (listed,) = body["disagreements"]
    assert (listed["a_only"], listed["b_only"]) == (1, 1)
    assert (listed["a_overlapping"], listed["b_overlapping"]) == (1, 2)
    # Swapped: the same figures mirrored.
    mirrored = _by_class(client.get("/api/models/compare", params={"a": S3, "b": P2}).json())
    assert (mirrored["short"]["a_overlapping"], mirrored["short"]["b_overlapping"]) == (2, 1)
    assert mirrored["short"]["a"] == short["b"]


def test_verdicts_keep_the_counts(
    agent: AgentServer, client: httpx2.Client, overlap_scene: dict[str, Any]
) -> None:
    db = agent.settings.database_url or ""
    r6, r7, r8 = overlap_scene["r"]
    headers = {"X-Reviewer": "qc"}

    def put(region: int, verdict: str | None) -> None:
        response = client.put(
            f"/api/regions/{region}/verdict", json={"verdict": verdict}, headers=headers
        )
        assert response.status_code == 200, response.text

    put(r6, "false_call")  # z1 inherits it
    put(r8, "real")
    put(r7, None)
    short = _by_class(client.get("/api/models/compare", params={"a": P2, "b": S3}).json())
    assert (short["short"]["a"]["confirmed_real"], short["short"]["a"]["false_calls"]) == (0, 1)
    assert (short["short"]["b"]["confirmed_real"], short["short"]["b"]["false_calls"]) == (2, 1)
    assert short["spur"]["b"]["missed_real"] == 1  # r8, now real, only A found it
    kept, rebuilt = _kept_counts(db)
    assert kept == rebuilt
    put(r6, "real")
    put(r7, "real")
    put(r8, None)
    kept, rebuilt = _kept_counts(db)
    assert kept == rebuilt
