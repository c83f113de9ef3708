"""Input hashes, repeats, `skip_duplicates` and `Idempotency-Key` on the upload endpoints."""

from __future__ import annotations

import concurrent.futures
import hashlib
import uuid
from pathlib import Path

import httpx2

from tests.support import AgentServer, db_rows, make_image, wait_until


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def ledger(agent: AgentServer, sql: str, *params: object) -> list[tuple[object, ...]]:
    return db_rows(agent.settings.database_url or "", sql, *params)


def test_the_hash_of_each_upload_is_kept_and_the_same_bytes_again_are_a_marked_repeat(
    client: httpx2.Client, agent: AgentServer, deeppcb: list[Path]
) -> None:
    data = deeppcb[10].read_bytes()
    first = client.post("/api/upload", files={"image": ("board.jpg", data)}).json()
    again = client.post("/api/upload", files={"image": ("board-retest.jpg", data)}).json()

    assert first["input_sha256"] == again["input_sha256"] == sha256(data)
    assert first["repeat_of"] is None
    assert again["repeat_of"] == first["img_unique_id"]
    assert again["img_unique_id"] != first["img_unique_id"]  # a re-test is inspected again
    assert again["skipped_duplicate"] is False
    rows = ledger(
        agent,
        "SELECT img_unique_id, input_sha256, repeat_of, status FROM inspections"
        " WHERE input_sha256 = %s ORDER BY created_at",
        sha256(data),
    )
    assert rows == [
        (first["img_unique_id"], sha256(data), None, "succeeded"),
        (again["img_unique_id"], sha256(data), first["img_unique_id"], "succeeded"),
    ]
    detail = client.get(f"/api/images/{again['img_unique_id']}").json()
    assert detail["repeat_of"] == first["img_unique_id"]
    assert detail["input_sha256"] == sha256(data)
    # The kept input is exactly the bytes that were hashed.
    input_bytes = client.get(f"/api/download/image/{again['img_unique_id']}/input").content
    assert sha256(input_bytes) == sha256(data)


def test_skip_duplicates_answers_with_the_earlier_inspection_and_stores_nothing(
    client: httpx2.Client, agent: AgentServer, deeppcb: list[Path]
) -> None:
    data = deeppcb[11].read_bytes()
    first = client.post("/api/upload", files={"image": ("a.jpg", data)}).json()
    uploads_before = sorted((agent.settings.resolved_data_dir / "uploads").rglob("*.jpg"))

    skipped = client.post(
        "/api/upload?skip_duplicates=true", files={"image": ("a-again.jpg", data)}
    )
    assert skipped.status_code == 200, skipped.text
    body = skipped.json()
    assert body["skipped_duplicate"] is True
    assert body["img_unique_id"] == first["img_unique_id"]
    assert body["defect_classes"] == first["defect_classes"]
    assert body["result"] == first["result"]
    assert ledger(
        agent, "SELECT count(*) FROM inspections WHERE input_sha256 = %s", sha256(data)
    ) == [(1,)]
    assert sorted((agent.settings.resolved_data_dir / "uploads").rglob("*.jpg")) == uploads_before

    # New bytes with the flag are inspected as usual.
    fresh = client.post(
        "/api/upload?skip_duplicates=true", files={"image": ("new.png", make_image(size=(70, 50)))}
    ).json()
    assert fresh["skipped_duplicate"] is False
    assert fresh["repeat_of"] is None


def test_batch_marks_repeats_and_skips_duplicates_when_asked(
    client: httpx2.Client, agent: AgentServer, deeppcb: list[Path]
) -> None:
    known = deeppcb[12].read_bytes()
    earlier = client.post("/api/upload", files={"image": ("known.jpg", known)}).json()
    new = deeppcb[13].read_bytes()
    files = [
        ("images", ("known-again.jpg", known)),
        ("images", ("new.jpg", new)),
        ("images", ("new-copy.jpg", new)),
        ("images", ("notes.txt", b"not an image")),
    ]

    plain = client.post("/api/upload/batch?wait=true", files=files).json()
    by_name = {a["filename"]: a for a in plain["accepted"]}
    assert by_name["known-again.jpg"]["repeat_of"] == earlier["img_unique_id"]
    assert by_name["new.jpg"]["repeat_of"] is None
    assert by_name["new-copy.jpg"]["repeat_of"] == by_name["new.jpg"]["img_unique_id"]
    assert plain["status"]["succeeded"] == 3
    assert {i["repeat_of"] for i in plain["status"]["items"]} == {
        None,
        earlier["img_unique_id"],
        by_name["new.jpg"]["img_unique_id"],
    }

    skipping = client.post("/api/upload/batch?skip_duplicates=true", files=files)
    assert skipping.status_code == 200, skipping.text  # nothing new: nothing queued
    body = skipping.json()
    assert body["batch_id"] is None
    assert body["accepted"] == []
    assert [r["filename"] for r in body["rejected"]] == ["notes.txt"]
    assert {s["filename"]: s["img_unique_id"] for s in body["skipped_duplicates"]} == {
        "known-again.jpg": earlier["img_unique_id"],
        "new.jpg": by_name["new.jpg"]["img_unique_id"],
        "new-copy.jpg": by_name["new.jpg"]["img_unique_id"],
    }
    assert all(s["status"] == "succeeded" for s in body["skipped_duplicates"])
    assert ledger(
        agent,
        "SELECT count(*) FROM inspections WHERE input_sha256 IN (%s, %s)",
        sha256(known),
        sha256(new),
    ) == [(4,)]

    # Mixed: one new file is queued in a batch, the known one is skipped; a copy of the new
    # file in the same request is skipped as a duplicate of it.
    other = make_image(size=(81, 33))
    mixed = client.post(
        "/api/upload/batch?skip_duplicates=true",
        files=[
            ("images", ("known.jpg", known)),
            ("images", ("other.png", other)),
            ("images", ("other-copy.png", other)),
        ],
    )
    assert mixed.status_code == 202, mixed.text
    mixed_body = mixed.json()
    assert [a["filename"] for a in mixed_body["accepted"]] == ["other.png"]
    new_id = mixed_body["accepted"][0]["img_unique_id"]
    skipped_ids = {s["filename"]: s for s in mixed_body["skipped_duplicates"]}
    assert skipped_ids["other-copy.png"]["img_unique_id"] == new_id
    assert skipped_ids["other-copy.png"]["batch_id"] == mixed_body["batch_id"]
    assert ledger(
        agent, "SELECT total_images FROM batches WHERE batch_id = %s", mixed_body["batch_id"]
    ) == [(1,)]


def test_idempotency_key_replays_the_first_answer_without_inspecting_again(
    client: httpx2.Client, agent: AgentServer, deeppcb: list[Path]
) -> None:
    key = str(uuid.uuid4())
    data = deeppcb[14].read_bytes()
    first = client.post(
        "/api/upload", files={"image": ("k.jpg", data)}, headers={"Idempotency-Key": key}
    )
    again = client.post(
        "/api/upload", files={"image": ("k.jpg", data)}, headers={"Idempotency-Key": key}
    )
    assert first.status_code == again.status_code == 200
    assert again.content == first.content  # byte for byte
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert ledger(
        agent, "SELECT count(*) FROM inspections WHERE input_sha256 = %s", sha256(data)
    ) == [(1,)]

    batch_key = str(uuid.uuid4())
    files = [("images", (p.name, p.read_bytes())) for p in deeppcb[15:17]]
    accepted = client.post("/api/upload/batch", files=files, headers={"Idempotency-Key": batch_key})
    replay = client.post("/api/upload/batch", files=files, headers={"Idempotency-Key": batch_key})
    assert accepted.status_code == replay.status_code == 202
    assert replay.content == accepted.content
    assert ledger(
        agent, "SELECT count(*) FROM batches WHERE batch_id = %s", accepted.json()["batch_id"]
    ) == [(1,)]
    names = [p.name for p in deeppcb[15:17]]
    assert ledger(
        agent, "SELECT count(*) FROM inspections WHERE original_filename = ANY(%s)", names
    ) == [(2,)]


def test_idempotency_key_with_a_different_request_is_refused_with_422(
    client: httpx2.Client, agent: AgentServer
) -> None:
    key = str(uuid.uuid4())
    one, other = make_image(size=(40, 41)), make_image(size=(42, 43))
    assert (
        client.post(
            "/api/upload", files={"image": ("a.png", one)}, headers={"Idempotency-Key": key}
        ).status_code
        == 200
    )
    for files, params in [
        ({"image": ("a.png", other)}, {}),  # other bytes
        ({"image": ("b.png", one)}, {}),  # other name
        ({"image": ("a.png", one)}, {"include_images": "base64"}),  # other options
    ]:
        response = client.post(
            "/api/upload", files=files, params=params, headers={"Idempotency-Key": key}
        )
        assert response.status_code == 422, response.text
        assert response.json()["error"] == "idempotency_key_reused"
    # ... and the same key on the other endpoint.
    reused = client.post(
        "/api/upload/batch", files=[("images", ("a.png", one))], headers={"Idempotency-Key": key}
    )
    assert reused.status_code == 422
    assert ledger(
        agent, "SELECT count(*) FROM inspections WHERE input_sha256 = %s", sha256(other)
    ) == [(0,)]


def test_idempotency_key_sent_again_while_the_first_runs_gets_409(
    agent: AgentServer, deeppcb: list[Path]
) -> None:
    key = str(uuid.uuid4())
    files = [("images", (p.name, p.read_bytes())) for p in deeppcb[20:27]]

    def send() -> httpx2.Response:
        with httpx2.Client(base_url=agent.url, timeout=120) as c:
            return c.post(
                "/api/upload/batch?wait=true", files=files, headers={"Idempotency-Key": key}
            )

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        first = pool.submit(send)
        wait_until(
            lambda: (
                ledger(agent, "SELECT state FROM idempotency_keys WHERE key = %s", key)
                == [("processing",)]
            ),
            interval_s=0.02,
        )
        second = send()
        assert second.status_code == 409, second.text
        assert second.json()["error"] == "idempotency_key_in_use"
        assert "still being handled" in second.json()["detail"]
        assert first.result().status_code == 200
    third = send()
    assert third.status_code == 200
    assert third.json() == first.result().json()
    assert ledger(
        agent,
        "SELECT count(*) FROM inspections WHERE batch_id = %s",
        first.result().json()["batch_id"],
    ) == [(7,)]
    assert ledger(
        agent, "SELECT count(*) FROM inspections WHERE original_filename = %s", deeppcb[20].name
    ) == [(1,)]


def test_an_error_answer_frees_the_key_for_the_same_request(
    client: httpx2.Client, agent: AgentServer
) -> None:
    key = str(uuid.uuid4())
    bad = client.post(
        "/api/upload", files={"image": ("x.png", b"not an image")}, headers={"Idempotency-Key": key}
    )
    assert bad.status_code == 415
    assert ledger(agent, "SELECT count(*) FROM idempotency_keys WHERE key = %s", key) == [(0,)]
    again = client.post(
        "/api/upload", files={"image": ("x.png", b"not an image")}, headers={"Idempotency-Key": key}
    )
    assert again.status_code == 415
    assert "Idempotent-Replayed" not in again.headers


def test_the_same_new_bytes_sent_twice_at_once_with_skip_duplicates_are_inspected_once(
    agent: AgentServer, deeppcb: list[Path]
) -> None:
    data = deeppcb[30].read_bytes()

    def send(name: str) -> httpx2.Response:
        with httpx2.Client(base_url=agent.url, timeout=60) as c:
            return c.post("/api/upload?skip_duplicates=true", files={"image": (name, data)})

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(send, ["left.jpg", "right.jpg"]))
    statuses = sorted(a.status_code for a in answers)
    # The second either waited for the first and got it back, or found it still running.
    assert statuses in ([200, 200], [200, 409]), [a.text for a in answers]
    inspected = [a.json() for a in answers if a.status_code == 200]
    assert len({a["img_unique_id"] for a in inspected}) == 1
    for answer in answers:
        if answer.status_code == 409:
            assert answer.json()["error"] == "duplicate_in_progress"
            assert answer.json()["img_unique_id"] == inspected[0]["img_unique_id"]
    assert ledger(
        agent, "SELECT count(*) FROM inspections WHERE input_sha256 = %s", sha256(data)
    ) == [(1,)]
