"""Signed webhooks end to end (docs/webhooks.md): the agent inspects the repository's
sample boards through a real reference model service, reviews them and checks the SPC
charts; each change writes its event to the outbox, and the dispatcher delivers it over
real HTTP to real receivers on loopback (`tests/services/webhooks/receiver.py`), which
verify every signature with the `standardwebhooks` library. A receiver that is down, one
that redirects, a delivery parked after its retry window and redelivered, and the CLI.

A rotated secret: deliveries carry both signatures during the overlap, then only the new
one (through the API and the CLI).

The agent runs with a short retry window (WEBHOOK_RETRY_HOURS = 0.002, 7.2 s) and a fast
back-off so that parking happens within the test. Its reference model service refuses
images over 500,000 pixels (its own MAX_IMAGE_PIXELS), so a 1000 x 800 image makes a real
failed inspection.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest
from standardwebhooks import Webhook
from typer.testing import CliRunner

from app.cli import cli
from app.config import Settings
from app.services.database.session import create_engine, create_session_factory
from app.services.model_service.reference import ReferenceService, start_reference_service
from app.services.spc.alarms import AlarmChecker
from app.services.spc.service import ChartQuery
from tests.conftest import agent_settings
from tests.services.history.test_rollups import _conn, add_image
from tests.services.webhooks.receiver import Received, Receiver
from tests.support import AgentServer, db_rows, make_image, sample_images, serve_agent, wait_until

WHO = {"X-Reviewer": "qc-anna"}
# The agent's WEBHOOK_SECRET_OVERLAP_S: short, so that a test sees the overlap end.
OVERLAP_S = 10.0
ALL_EVENTS = [
    "inspection.completed",
    "inspection.failed",
    "batch.completed",
    "region.verdict",
    "image.disposition",
    "spc.alarm",
]


@pytest.fixture(scope="module")
def small_reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReferenceService]:
    """A reference model service that refuses images over 500,000 pixels."""
    service = start_reference_service(
        tmp_path_factory.mktemp("ref") / "service.log", max_image_pixels=500_000
    )
    yield service
    service.stop()


@pytest.fixture(scope="module")
def hooked(
    tmp_path_factory: pytest.TempPathFactory,
    database_url: str,
    small_reference: ReferenceService,
) -> Iterator[AgentServer]:
    """The agent with a 7.2 s retry window and a 0.2-0.5 s back-off."""
    settings = agent_settings(
        tmp_path_factory.mktemp("data"),
        database_url,
        small_reference.url,
        webhook_retry_hours=0.002,
        webhook_retry_initial_s=0.2,
        webhook_retry_max_s=0.5,
        webhook_timeout_s=3.0,
        webhook_secret_overlap_s=OVERLAP_S,
    )
    with serve_agent(settings) as server:
        yield server


def _add_endpoint(c: httpx2.Client, url: str, events: list[str]) -> dict[str, Any]:
    response = c.post("/api/webhooks", json={"url": url, "events": events})
    assert response.status_code == 201, response.text
    endpoint = response.json()
    assert endpoint["secret"].startswith("whsec_")
    return dict(endpoint)


def _verified(secret: str, got: Received) -> dict[str, Any]:
    """The payload of a request whose Standard Webhooks signature verifies."""
    payload = Webhook(secret).verify(got.body, got.headers)
    assert isinstance(payload, dict)
    return payload


def _deliveries(c: httpx2.Client, endpoint_id: int) -> list[dict[str, Any]]:
    response = c.get(f"/api/webhooks/{endpoint_id}/deliveries", params={"limit": 200})
    assert response.status_code == 200, response.text
    return list(response.json())


def _upload(c: httpx2.Client, path: Path, **data: str) -> httpx2.Response:
    return c.post("/api/upload", files={"image": (path.name, path.read_bytes())}, data=data)


def _raise_spc_alarms(database_url: str) -> list[Any]:
    """20 in-control days of boards (10 of 40 defective) and a bad 21st (30 of 40),
    inserted in March 2026, then the agent's SPC check over them (rule 1): it raises a
    p-chart alarm and u-chart alarms in the transaction that records them; returns them."""
    first = datetime(2026, 3, 1, 8, tzinfo=UTC)
    with _conn(database_url) as conn, conn.cursor() as cur:
        for d in range(21):
            bad, shorts = (30, 3) if d == 20 else (10, 1)
            for n in range(40):
                stamp = first + timedelta(days=d, minutes=n)
                classes = {"Short": [(5.0, 5.0)] * shorts} if n < bad else {}
                add_image(cur, f"{stamp:%Y%m%d_%H%M%S}_S{n:05d}", stamp, classes)
        conn.commit()
    settings = Settings(_env_file=None, database_url=database_url, spc_rules="1")  # type: ignore[call-arg]

    async def run() -> list[Any]:
        engine = create_engine(settings, database_url)
        try:
            query = ChartQuery(first.date(), (first + timedelta(days=20)).date())
            return await AlarmChecker(settings, create_session_factory(engine)).run(query)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def test_every_event_type_reaches_a_subscribed_receiver_signed_and_in_order(
    hooked: AgentServer, database_url: str, tmp_path: Path
) -> None:
    receiver = Receiver().up()
    boards = sample_images()
    with httpx2.Client(base_url=hooked.url, timeout=120) as c:
        endpoint = _add_endpoint(c, receiver.url, ALL_EVENTS)
        only_verdicts = _add_endpoint(c, Receiver().url, ["region.verdict"])  # never up

        single = _upload(c, boards[0], board_serial="SN-HOOK-1")
        assert single.status_code == 200, single.text
        img = single.json()["img_unique_id"]
        batch = c.post(
            "/api/upload/batch",
            params={"wait": "true"},
            files=[("images", (p.name, p.read_bytes())) for p in boards[1:3]],
        )
        assert batch.status_code == 200, batch.text
        batch_id = batch.json()["batch_id"]
        big = tmp_path / "too-big.png"
        big.write_bytes(make_image("PNG", (1000, 800)))
        refused = _upload(c, big)
        assert refused.status_code >= 400, refused.text
        ((failed_img, failed_error),) = db_rows(
            database_url,
            "SELECT img_unique_id, last_error FROM inspections"
            " WHERE original_filename = 'too-big.png'",
        )

        region = c.get(f"/api/images/{img}/regions").json()["classes"][0]["regions"][0]
        put = c.put(
            f"/api/regions/{region['region_unique_id']}/verdict",
            json={"verdict": "real", "comment": "bridged"},
            headers=WHO,
        )
        assert put.status_code == 200, put.text
        scrap = c.put(
            f"/api/images/{img}/disposition",
            json={"disposition": "scrap", "comment": "lifted pad"},
            headers=WHO,
        )
        assert scrap.status_code == 200, scrap.text
        raised = _raise_spc_alarms(database_url)
        assert ("p", None) in {(a.chart, a.class_name) for a in raised}

        wanted = Counter(
            {
                "inspection.completed": 3,
                "inspection.failed": 1,
                "batch.completed": 1,
                "region.verdict": 1,
                "image.disposition": 1,
                "spc.alarm": len(raised),
            }
        )
        wait_until(lambda: len(receiver.taken()) >= sum(wanted.values()), timeout_s=60)
        got = receiver.taken()
        payloads = [_verified(endpoint["secret"], g) for g in got]
        assert Counter(p["type"] for p in payloads) == wanted
        # The webhook-id is the event's stable id; each event arrived once.
        ids = [g.headers["webhook-id"] for g in got]
        assert len(set(ids)) == len(ids)
        # A tampered body does not verify.
        with pytest.raises(Exception, match="signature"):
            Webhook(endpoint["secret"]).verify(got[0].body + b" ", got[0].headers)

        by_type: dict[str, list[dict[str, Any]]] = {}
        for p in payloads:
            by_type.setdefault(p["type"], []).append(p["data"])
        first = next(d for d in by_type["inspection.completed"] if d["img_unique_id"] == img)
        assert first["board_serial"] == "SN-HOOK-1"
        assert first["outcome"] == "fail"
        assert first["total_defects"] == sum(first["defect_classes"].values()) > 0
        assert first["model_version"]
        (done,) = by_type["batch.completed"]
        assert done == {
            "batch_id": batch_id,
            "total_images": 2,
            "succeeded": 2,
            "failed": 0,
            "links": {"batch": f"/api/batches/{batch_id}"},
        }
        batch_imgs = {d["img_unique_id"] for d in by_type["inspection.completed"]} - {img}
        assert all(
            d["batch_id"] == batch_id
            for d in by_type["inspection.completed"]
            if d["img_unique_id"] in batch_imgs
        )
        (failed,) = by_type["inspection.failed"]
        assert failed["img_unique_id"] == failed_img
        assert failed["error"] == failed_error  # as ledgered
        (verdict,) = by_type["region.verdict"]
        assert verdict["region_unique_id"] == region["region_unique_id"]
        assert (verdict["verdict"], verdict["reviewer"], verdict["comment"]) == (
            "real",
            "qc-anna",
            "bridged",
        )
        assert verdict["board_serial"] == "SN-HOOK-1"
        assert verdict["class_name"]
        (disposition,) = by_type["image.disposition"]
        assert (disposition["disposition"], disposition["img_unique_id"]) == ("scrap", img)
        assert sorted(
            (a["chart"], a["class_name"] or "", a["rule"], a["first_key"])
            for a in by_type["spc.alarm"]
        ) == sorted((a.chart, a.class_name or "", a.rule, a.first_key) for a in raised)
        # One endpoint's events arrive in the order they were written: the board's
        # inspection before its verdict before its disposition, the batch's images before
        # the batch.
        order = [(p["type"], p["data"].get("img_unique_id")) for p in payloads]
        assert order.index(("inspection.completed", img)) < order.index(("region.verdict", img))
        assert order.index(("region.verdict", img)) < order.index(("image.disposition", img))
        assert max(
            i for i, (t, _) in enumerate(order) if t == "inspection.completed" and _ in batch_imgs
        ) < order.index(("batch.completed", None))

        # The deliveries API lists each, delivered at the first attempt (HTTP 204).
        deliveries = _deliveries(c, endpoint["id"])
        assert len(deliveries) == sum(wanted.values())
        assert all(d["status"] == "delivered" for d in deliveries)
        assert all([a["status_code"] for a in d["attempt_log"]] == [204] for d in deliveries)
        assert {d["event_id"] for d in deliveries} == set(ids)
        # The endpoint that subscribed to verdicts only got one delivery (still pending).
        (only,) = _deliveries(c, only_verdicts["id"])
        assert only["event_type"] == "region.verdict"
        listed = {e["id"]: e for e in c.get("/api/webhooks").json()}
        assert "secret" not in listed[endpoint["id"]]
        assert listed[endpoint["id"]]["delivered"] == sum(wanted.values())
        assert c.delete(f"/api/webhooks/{only_verdicts['id']}").status_code == 200
    receiver.down()


def test_a_receiver_down_then_up_gets_the_event_with_one_stable_id(
    hooked: AgentServer,
) -> None:
    receiver = Receiver()  # not listening yet: connections are refused
    with httpx2.Client(base_url=hooked.url, timeout=120) as c:
        endpoint = _add_endpoint(c, receiver.url, ["inspection.completed"])
        response = _upload(c, sample_images()[3])
        assert response.status_code == 200, response.text
        img = response.json()["img_unique_id"]

        def tried_twice() -> bool:
            found = _deliveries(c, endpoint["id"])
            return bool(found) and found[0]["attempts"] >= 2

        wait_until(tried_twice, timeout_s=30, interval_s=0.1)
        health = c.get("/api/health").json()
        assert health["webhooks"]["backlog_events"] >= 1
        metrics = c.get("/metrics").text
        backlog = next(
            line for line in metrics.splitlines() if line.startswith("aoi_webhook_backlog ")
        )
        assert float(backlog.split()[1]) >= 1
        receiver.up()
        wait_until(lambda: _deliveries(c, endpoint["id"])[0]["status"] == "delivered", timeout_s=30)
        (delivery,) = _deliveries(c, endpoint["id"])
    receiver.down()
    (got,) = receiver.taken()
    payload = _verified(endpoint["secret"], got)
    assert payload["data"]["img_unique_id"] == img
    assert got.headers["webhook-id"] == delivery["event_id"]
    attempts = delivery["attempt_log"]
    assert attempts[-1]["status_code"] == 204
    assert all(a["status_code"] is None and a["error"] for a in attempts[:-1])
    assert len(attempts) == delivery["attempts"] >= 3


def test_a_redirect_is_not_followed_the_delivery_is_parked_and_can_be_redelivered(
    hooked: AgentServer,
) -> None:
    receiver = Receiver(mode="redirect").up()
    with httpx2.Client(base_url=hooked.url, timeout=120) as c:
        endpoint = _add_endpoint(c, receiver.url, ["inspection.completed"])
        assert _upload(c, sample_images()[4]).status_code == 200
        wait_until(
            lambda: (found := _deliveries(c, endpoint["id"])) and found[0]["status"] == "parked",
            timeout_s=40,
        )
        (parked,) = _deliveries(c, endpoint["id"])
        assert parked["attempts"] >= 2
        assert all(a["status_code"] == 307 for a in parked["attempt_log"])
        assert "redirects are not followed" in parked["last_error"]
        # The 100 KiB answer was not read: the excerpt is bounded.
        assert all(len(a["response_excerpt"] or "") <= 1024 for a in parked["attempt_log"])
        assert {g.path for g in receiver.taken()} == {"/hook"}  # never /followed

        receiver.mode = "ok"
        before = len(receiver.taken())
        again = c.post(f"/api/webhooks/deliveries/{parked['id']}/redeliver")
        assert again.status_code == 200, again.text
        assert again.json()["status"] in {"pending", "delivered"}
        wait_until(lambda: _deliveries(c, endpoint["id"])[0]["status"] == "delivered", timeout_s=30)
        missing = c.post("/api/webhooks/deliveries/999999999/redeliver")
        assert missing.status_code == 404
        assert missing.json()["error"] == "webhook_delivery_not_found"
    receiver.down()
    got = receiver.taken()[before:]
    assert [g.headers["webhook-id"] for g in got] == [parked["event_id"]]
    assert _verified(endpoint["secret"], got[0])["type"] == "inspection.completed"
    # Same body as the parked attempts, signed anew.
    assert got[0].body == receiver.taken()[0].body


def test_bad_endpoints_are_refused(hooked: AgentServer) -> None:
    with httpx2.Client(base_url=hooked.url, timeout=30) as c:
        for body in (
            {"url": "ftp://10.0.0.1/x", "events": ["spc.alarm"]},
            {"url": "http://10.0.0.1/x", "events": ["no.such"]},
            {"url": "http://10.0.0.1/x", "events": []},
        ):
            assert c.post("/api/webhooks", json=body).status_code == 422
        assert c.delete("/api/webhooks/424242").status_code == 404
        assert c.get("/api/webhooks/424242/deliveries").status_code == 404


def test_cli_add_prints_the_secret_alone_on_its_last_line(
    hooked: AgentServer, database_url: str, tmp_path: Path
) -> None:
    env = {"DATABASE_URL": database_url, "DATA_DIR": str(tmp_path)}
    runner = CliRunner()
    added = runner.invoke(
        cli,
        [
            "webhooks",
            "add",
            "http://10.20.30.40:9000/aoi",
            "--events",
            "inspection.completed,region.verdict",
            "--description",
            "line 3 MES",
        ],
        env=env,
    )
    assert added.exit_code == 0, added.output
    secret = added.output.strip().splitlines()[-1]
    assert secret.startswith("whsec_")
    Webhook(secret)  # a valid Standard Webhooks secret (base64 of 24 bytes)
    ((endpoint_id, events, stored),) = db_rows(
        database_url,
        "SELECT id, events, secret FROM webhook_endpoints WHERE url = 'http://10.20.30.40:9000/aoi'",
    )
    assert stored == secret
    assert events == ["inspection.completed", "region.verdict"]

    listed = runner.invoke(cli, ["webhooks", "list", "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    endpoints = json.loads(listed.output)["endpoints"]
    assert any(e["id"] == endpoint_id and "secret" not in e for e in endpoints)

    bad = runner.invoke(cli, ["webhooks", "add", "http://x/y", "--events", "nope"], env=env)
    assert bad.exit_code == 1
    assert "unknown event type" in bad.output

    removed = runner.invoke(cli, ["webhooks", "remove", str(endpoint_id)], env=env)
    assert removed.exit_code == 0, removed.output
    assert db_rows(database_url, "SELECT 1 FROM webhook_endpoints WHERE id = %s", endpoint_id) == []
    gone = runner.invoke(cli, ["webhooks", "remove", str(endpoint_id)], env=env)
    assert gone.exit_code == 1


def _two_secrets_verify(old: str, new: str, got: Received) -> dict[str, Any]:
    """The payload of a request signed with both secrets: each verifies on its own."""
    signatures = got.headers["webhook-signature"].split(" ")
    assert len(signatures) == 2
    assert all(s.startswith("v1,") for s in signatures)
    assert _verified(old, got) == _verified(new, got)
    return _verified(new, got)


def test_a_rotated_secret_signs_with_both_during_the_overlap_then_only_the_new_one(
    hooked: AgentServer, database_url: str
) -> None:
    """POST /api/webhooks/{id}/rotate-secret answers the new secret once; deliveries during
    WEBHOOK_SECRET_OVERLAP_S carry signatures of the old and the new secret (a receiver
    verifying with either, by the `standardwebhooks` library, accepts them), after it
    only the new one's (the old secret no longer verifies)."""
    receiver = Receiver().up()
    boards = sample_images()
    with httpx2.Client(base_url=hooked.url, timeout=120) as c:
        endpoint = _add_endpoint(c, receiver.url, ["inspection.completed"])
        old = endpoint["secret"]

        def upload_and_receive(board: Path) -> Received:
            before = len(receiver.taken())
            assert _upload(c, board).status_code == 200
            wait_until(lambda: len(receiver.taken()) > before, timeout_s=30, interval_s=0.05)
            (got,) = receiver.taken()[before:]
            return got

        first = upload_and_receive(boards[0])
        assert len(first.headers["webhook-signature"].split(" ")) == 1
        _verified(old, first)

        rotated = c.post(f"/api/webhooks/{endpoint['id']}/rotate-secret")
        assert rotated.status_code == 200, rotated.text
        answer = rotated.json()
        new = answer["secret"]
        assert new.startswith("whsec_")
        assert new != old
        Webhook(new)
        assert answer["id"] == endpoint["id"]
        assert answer["url"] == receiver.url
        until = datetime.fromisoformat(answer["previous_secret_until"])
        ((stored, previous, stored_until, window),) = db_rows(
            database_url,
            "SELECT secret, previous_secret, previous_secret_until,"
            " extract(epoch FROM previous_secret_until - now())"
            " FROM webhook_endpoints WHERE id = %s",
            endpoint["id"],
        )
        assert (stored, previous, stored_until) == (new, old, until)
        assert 0 < window <= OVERLAP_S
        # Never shown again.
        listed = c.get("/api/webhooks").json()
        assert all("secret" not in e for e in listed)

        during = upload_and_receive(boards[1])
        assert during.at < until.timestamp(), "the delivery came after the overlap: too slow"
        assert _two_secrets_verify(old, new, during)["type"] == "inspection.completed"

        wait_until(lambda: time.time() > until.timestamp() + 0.5, timeout_s=OVERLAP_S + 5)
        after = upload_and_receive(boards[2])
        assert len(after.headers["webhook-signature"].split(" ")) == 1
        _verified(new, after)
        with pytest.raises(Exception, match="signature"):
            Webhook(old).verify(after.body, after.headers)

        missing = c.post("/api/webhooks/424242/rotate-secret")
        assert missing.status_code == 404
        assert missing.json()["error"] == "webhook_endpoint_not_found"
        assert c.delete(f"/api/webhooks/{endpoint['id']}").status_code == 200
    receiver.down()


def test_cli_rotate_prints_the_new_secret_alone_on_its_last_line(
    hooked: AgentServer, database_url: str, tmp_path: Path
) -> None:
    """`aoi-agent webhooks rotate ID`: the new secret alone on the last line, the old one
    kept for WEBHOOK_SECRET_OVERLAP_S (none kept when it is 0); an unknown id exits 1."""
    env = {"DATABASE_URL": database_url, "DATA_DIR": str(tmp_path)}
    runner = CliRunner()
    added = runner.invoke(
        cli,
        ["webhooks", "add", "http://10.20.30.41:9000/aoi", "--events", "spc.alarm"],
        env=env,
    )
    assert added.exit_code == 0, added.output
    old = added.output.strip().splitlines()[-1]
    ((endpoint_id,),) = db_rows(
        database_url, "SELECT id FROM webhook_endpoints WHERE secret = %s", old
    )

    def stored() -> tuple[Any, ...]:
        ((row),) = db_rows(
            database_url,
            "SELECT secret, previous_secret,"
            " round(extract(epoch FROM previous_secret_until - now()))"
            " FROM webhook_endpoints WHERE id = %s",
            endpoint_id,
        )
        return tuple(row)

    rotated = runner.invoke(cli, ["webhooks", "rotate", str(endpoint_id)], env=env)
    assert rotated.exit_code == 0, rotated.output
    new = rotated.output.strip().splitlines()[-1]
    assert new.startswith("whsec_")
    assert new != old
    Webhook(new)
    secret, previous, left_s = stored()
    assert (secret, previous) == (new, old)
    assert 86_390 <= left_s <= 86_400  # the default overlap, 24 h

    no_overlap = {**env, "WEBHOOK_SECRET_OVERLAP_S": "0"}
    again = runner.invoke(cli, ["webhooks", "rotate", str(endpoint_id), "--json"], env=no_overlap)
    assert again.exit_code == 0, again.output
    answer = json.loads(again.output)
    assert answer["previous_secret_until"] is None
    assert stored() == (answer["secret"], None, None)

    assert runner.invoke(cli, ["webhooks", "remove", str(endpoint_id)], env=env).exit_code == 0
    gone = runner.invoke(cli, ["webhooks", "rotate", str(endpoint_id)], env=env)
    assert gone.exit_code == 1
    assert "no webhook endpoint" in gone.output
