"""IPC-CFX publishing end to end: the agent inspects real DeepPCB boards through the
reference model service, writes CFX messages to its outbox, and publishes them to the
machine's real RabbitMQ over AMQP 1.0; a real AMQP 1.0 receiver (proton's
BlockingConnection) reads them and checks each message's JSON against the CFX SDK's
class and field names and types (docs/cfx.md names the SDK file of each).

Each test module declares its own queue: RabbitMQ's AMQP 1.0 plugin declares a durable
queue when a link attaches to `/queue/<name>`, so the receiver attaches first and the
agent publishes to the same address (no exchange binding needed).

The outage test stops RabbitMQ's application (`rabbitmqctl stop_app`, as root, which CI
is) for a few seconds; it is skipped when `rabbitmqctl` cannot be run.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from app.services.model_service.reference import ReferenceService
from tests.conftest import agent_settings
from tests.services.cfx.sdk import check_envelope
from tests.support import AgentServer, serve_agent, wait_until

proton = pytest.importorskip("proton", reason="python-qpid-proton is the optional `cfx` extra")
from proton.utils import BlockingConnection  # noqa: E402

BROKER = "amqp://guest:guest@127.0.0.1:5672"
WHO = {"X-Reviewer": "qc-anna"}


class Consumer:
    """A real AMQP 1.0 receiver on `/queue/<name>` of the machine's RabbitMQ."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._connect()

    def _connect(self) -> None:
        self.connection = BlockingConnection(BROKER, timeout=10)
        self.receiver = self.connection.create_receiver(self.address, credit=500)

    def reconnect(self) -> None:
        """Attach again (after the broker restarted)."""
        with contextlib.suppress(Exception):
            self.connection.close()
        self._connect()

    def take(self, count: int, timeout_s: float = 60.0, skip_heartbeats: bool = True) -> list:
        """The next `count` envelopes (decoded JSON, in arrival order), Heartbeats and
        EndpointConnected left out unless asked for."""
        got: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout_s
        while len(got) < count:
            left = deadline - time.monotonic()
            assert left > 0, f"only {len(got)} of {count} CFX messages arrived: {got[-3:]}"
            message = self.receiver.receive(timeout=left)
            self.receiver.accept()
            body = message.body
            envelope = json.loads(bytes(body).decode() if not isinstance(body, str) else body)
            assert message.id == envelope["UniqueID"]
            assert message.properties["cfx-message"] == envelope["MessageName"]
            self.arrivals[envelope["UniqueID"]] = time.time()
            if skip_heartbeats and envelope["MessageName"] in {
                "CFX.Heartbeat",
                "CFX.EndpointConnected",
            }:
                self.link_messages.append(envelope)
                continue
            got.append(envelope)
        return got

    link_messages: list[dict[str, Any]]
    arrivals: dict[str, float]

    def close(self) -> None:
        """Detach and close."""
        self.connection.close()


def _broker_listens() -> bool:
    """Whether something accepts connections on the broker's port."""
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=2).close()
    except OSError:
        return False
    return True


@pytest.fixture(scope="module")
def consumer() -> Iterator[Consumer]:
    """A receiver on a queue of this module's own (declared by attaching to it). Without a
    broker on 127.0.0.1:5672 (a laptop) the CFX tests skip; in CI (CI=true), where
    RabbitMQ always runs, a missing broker is a failure, not a skip."""
    if not _broker_listens():
        if os.environ.get("CI"):
            pytest.fail("no AMQP broker on 127.0.0.1:5672 (CI starts RabbitMQ)")
        pytest.skip("no AMQP broker on 127.0.0.1:5672 (RabbitMQ with rabbitmq_amqp1_0)")
    queue = f"/queue/aoi-cfx-test-{uuid.uuid4().hex[:8]}"
    c = Consumer(queue)
    c.link_messages = []
    c.arrivals = {}
    yield c
    c.close()


@pytest.fixture(scope="module")
def cfx_agent(
    tmp_path_factory: pytest.TempPathFactory,
    database_url: str,
    reference_service: ReferenceService,
    consumer: Consumer,
) -> Iterator[AgentServer]:
    """The agent publishing to the consumer's queue, with a fast back-off."""
    settings = agent_settings(
        tmp_path_factory.mktemp("data"),
        database_url,
        reference_service.url,
        cfx_broker_url=BROKER,
        cfx_address=consumer.address,
        cfx_handle="plant1.line3.aoi-agent",
        cfx_heartbeat_s=1,
        cfx_retry_initial_s=0.2,
        cfx_retry_max_s=1.0,
        cfx_timeout_s=3.0,
    )
    with serve_agent(settings) as server:
        yield server


def _upload(c: httpx2.Client, board: Path) -> str:
    response = c.post("/api/upload", files={"image": (board.name, board.read_bytes())})
    assert response.status_code == 200, response.text
    return str(response.json()["img_unique_id"])


@pytest.mark.deeppcb
def test_an_inspection_its_verdicts_and_a_scrap_reach_the_broker_as_cfx_messages(
    cfx_agent: AgentServer, consumer: Consumer, deeppcb: list[Path]
) -> None:
    with httpx2.Client(base_url=cfx_agent.url, timeout=120) as c:
        img = _upload(c, deeppcb[0])
        regions = c.get(f"/api/images/{img}/regions").json()
        found = [(g["class_name"], r) for g in regions["classes"] for r in g["regions"]]
        assert found, "every DeepPCB test board has defects"
        started, inspected, completed = consumer.take(3)

        # WorkStarted / UnitsInspected / WorkCompleted, one TransactionID, in that order.
        assert [m["MessageName"] for m in (started, inspected, completed)] == [
            "CFX.Production.WorkStarted",
            "CFX.Production.TestAndInspection.UnitsInspected",
            "CFX.Production.WorkCompleted",
        ]
        bodies = [check_envelope(m) for m in (started, inspected, completed)]
        assert bodies[0]["TransactionID"] == bodies[1]["TransactionId"]
        assert bodies[1]["TransactionId"] == bodies[2]["TransactionID"]
        assert all(m["Source"] == "plant1.line3.aoi-agent" for m in (started, inspected))
        assert bodies[2]["Result"] == "Completed"
        unit = bodies[1]["InspectedUnits"][0]
        assert unit["UnitIdentifier"] == img == bodies[0]["PrimaryIdentifier"]
        assert unit["OverallResult"] == "Failed"  # defects were found
        defects = unit["Inspections"][0]["DefectsFound"]
        assert len(defects) == len(found)
        by_id = {str(r["region_unique_id"]): (name, r) for name, r in found}
        for defect in defects:
            name, region = by_id[defect["UniqueIdentifier"]]
            assert defect["DefectCode"] == name
            box = region["bounding_box"]
            assert defect["RegionOfInterest"]["StartPointX"] == box["x"]
            assert defect["RegionOfInterest"]["StartPointY"] == box["y"]
            assert {"X": box["x"] + box["width"], "Y": box["y"] + box["height"]} in defect[
                "RegionOfInterest"
            ]["RegionSegments"]
            assert defect["ConfidenceLevel"] is None  # the reference model gives none
        # The overlay link is signed and serves the overlay without a key.
        link = defects[0]["DefectImages"][0]["ImageURL"]
        overlay = httpx2.get(link, timeout=30)
        assert overlay.status_code == 200
        assert overlay.content.startswith(b"\x89PNG")

        # A real defect is confirmed, a false call rejected, a scrap disqualifies the unit.
        first, second = found[0][1]["region_unique_id"], found[-1][1]["region_unique_id"]
        for region_id, verdict in ((first, "real"), (second, "false_call")):
            put = c.put(f"/api/regions/{region_id}/verdict", json={"verdict": verdict}, headers=WHO)
            assert put.status_code == 200, put.text
        scrap = c.put(
            f"/api/images/{img}/disposition",
            json={"disposition": "scrap", "comment": "lifted pad"},
            headers=WHO,
        )
        assert scrap.status_code == 200, scrap.text
        confirmed, rejected, verified, disqualified = consumer.take(4)
        for message, outcome in ((confirmed, "DefectConfirmed"), (rejected, "DefectRejected")):
            body = check_envelope(message)
            assert body["InspectionMethod"] == "Human"
            assert body["Inspector"]["OperatorIdentifier"] == "qc-anna"
            [defect] = body["InspectedUnits"][0]["Inspections"][0]["DefectsFound"]
            assert defect["Verification"] == outcome
        assert check_envelope(confirmed)["InspectedUnits"][0]["Inspections"][0]["DefectsFound"][0][
            "UniqueIdentifier"
        ] == str(first)
        assert check_envelope(verified)["InspectedUnits"][0]["Verification"] == "DefectConfirmed"
        body = check_envelope(disqualified)
        assert disqualified["MessageName"] == "CFX.Production.UnitsDisqualified"
        assert body["PrimaryIdentifier"] == img
        assert body["Reason"] == "DefectiveRepairNotPossible"
        assert body["Comments"] == "lifted pad"

    # The link messages: EndpointConnected once connected, Heartbeats every second.
    wait_until(lambda: len(consumer.link_messages) >= 2, timeout_s=10)
    names = [m["MessageName"] for m in consumer.link_messages]
    assert names[0] == "CFX.EndpointConnected"
    hello = check_envelope(consumer.link_messages[0])
    assert hello["CFXHandle"] == "plant1.line3.aoi-agent"
    assert hello["RequestNetworkUri"] == "amqp://127.0.0.1:5672"  # no password
    beat = check_envelope(consumer.link_messages[1])
    assert beat["HeartbeatFrequency"] == "00:00:01"


@pytest.mark.deeppcb
def test_a_board_serial_is_the_units_identifier(
    cfx_agent: AgentServer, consumer: Consumer, deeppcb: list[Path]
) -> None:
    """A board uploaded with its serial (docs/boards.md) is known to the line by it: the
    serial is the UnitIdentifier / PrimaryIdentifier of its messages, verdicts included;
    its product and recipe revision are the RecipeName and Revision / RecipeRevision, its
    side the RelevantSurface, its lot the WorkOrderIdentifier, its panel position the
    UnitPositionNumber."""
    board = deeppcb[1]
    with httpx2.Client(base_url=cfx_agent.url, timeout=120) as c:
        response = c.post(
            "/api/upload",
            files={"image": (board.name, board.read_bytes())},
            data={
                "board_serial": "SN123456",
                "product": "PX-7",
                "recipe_revision": "r3",
                "side": "bottom",
                "lot": "WO-77",
                "panel_position": "2",
            },
        )
        assert response.status_code == 200, response.text
        img = response.json()["img_unique_id"]
        started, inspected, _completed = consumer.take(3)
        work = check_envelope(started)
        assert work["PrimaryIdentifier"] == "SN123456"
        assert (work["RecipeName"], work["Revision"]) == ("PX-7", "r3")
        assert work["RelevantSurface"] == "SecondarySurface"
        assert work["WorkOrderIdentifier"] == {"WorkOrderId": "WO-77", "Batch": None}
        assert work["Lane"] is None  # no lane sent
        body = check_envelope(inspected)
        assert body["InspectedPanel"] is None  # no panel sent
        assert (body["RecipeName"], body["RecipeRevision"]) == ("PX-7", "r3")
        unit = body["InspectedUnits"][0]
        assert unit["UnitIdentifier"] == "SN123456"
        assert unit["UnitPositionNumber"] == 2
        region = c.get(f"/api/images/{img}/regions").json()["classes"][0]["regions"][0]
        put = c.put(
            f"/api/regions/{region['region_unique_id']}/verdict",
            json={"verdict": "real"},
            headers=WHO,
        )
        assert put.status_code == 200, put.text
        (verified,) = consumer.take(1)
        verification = check_envelope(verified)
        assert verification["InspectedUnits"][0]["UnitIdentifier"] == "SN123456"
        assert verification["RecipeName"] == "PX-7"


@pytest.mark.deeppcb
def test_a_panel_its_position_and_the_lane_are_the_sdk_fields_for_them(
    cfx_agent: AgentServer, consumer: Consumer, deeppcb: list[Path]
) -> None:
    """A board of a panel, on lane 2 (docs/cfx.md's mapping table): the panel's barcode is
    the `PrimaryIdentifier` of WorkStarted / WorkCompleted / UnitsDisqualified and the
    `InspectedPanel.UnitIdentifier` of UnitsInspected; the board is its `Units` entry by
    its serial at `PositionNumber` = the panel position; the lane is `WorkStarted.Lane`
    (an int). Line and station have no field in these messages: they are in the
    endpoint's handle (the envelope's `Source`), and nowhere else."""
    board = deeppcb[2]
    context = {
        "board_serial": "SN-PANEL-7",
        "panel_id": "PANEL-0042",
        "panel_position": "3",
        "lane": "2",
        "line": "LINE-Q9",
        "station": "STATION-Q9",
    }
    with httpx2.Client(base_url=cfx_agent.url, timeout=120) as c:
        response = c.post(
            "/api/upload", files={"image": (board.name, board.read_bytes())}, data=context
        )
        assert response.status_code == 200, response.text
        assert response.json()["context"]["lane"] == 2
        img = response.json()["img_unique_id"]
        envelopes = consumer.take(3)
        started, inspected, completed = (check_envelope(e) for e in envelopes)

        assert started["PrimaryIdentifier"] == completed["PrimaryIdentifier"] == "PANEL-0042"
        assert started["Lane"] == 2
        for body in (started, completed):
            (unit,) = body["Units"]
            assert unit["UnitIdentifier"] == "SN-PANEL-7"
            assert unit["PositionNumber"] == 3
            assert body["UnitCount"] == 1
        assert started["Units"][0]["Status"] == "Pass"
        defects = sum(c.get(f"/api/images/{img}").json()["defect_classes"].values())
        assert completed["Units"][0]["Status"] == ("Fail" if defects else "Pass")

        (unit,) = inspected["InspectedUnits"]
        assert (unit["UnitIdentifier"], unit["UnitPositionNumber"]) == ("SN-PANEL-7", 3)
        panel = inspected["InspectedPanel"]
        assert panel["UnitIdentifier"] == "PANEL-0042"
        assert panel["OverallResult"] == unit["OverallResult"]
        assert panel["Inspections"] == []

        for envelope in envelopes:
            assert envelope["Source"] == "plant1.line3.aoi-agent"  # CFX_HANDLE
            text = json.dumps(envelope)
            assert "LINE-Q9" not in text
            assert "STATION-Q9" not in text

        scrap = c.put(
            f"/api/images/{img}/disposition",
            json={"disposition": "scrap", "comment": "cracked"},
            headers=WHO,
        )
        assert scrap.status_code == 200, scrap.text
        verified, disqualified = (check_envelope(e) for e in consumer.take(2))
        assert verified["InspectedPanel"]["UnitIdentifier"] == "PANEL-0042"
        assert verified["InspectedUnits"][0]["UnitPositionNumber"] == 3
        assert disqualified["PrimaryIdentifier"] == "PANEL-0042"
        (unit,) = disqualified["Units"]
        assert (unit["UnitIdentifier"], unit["PositionNumber"], unit["Status"]) == (
            "SN-PANEL-7",
            3,
            "Scrap",
        )


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=120)


@pytest.mark.deeppcb
@pytest.mark.skipif(shutil.which("rabbitmqctl") is None, reason="needs rabbitmqctl (root)")
def test_a_broker_outage_delays_messages_and_loses_none_in_order(
    cfx_agent: AgentServer, consumer: Consumer, deeppcb: list[Path]
) -> None:
    consumer.take(0)
    boards = deeppcb[1:7]
    _rabbitmqctl("stop_app")
    try:
        with httpx2.Client(base_url=cfx_agent.url, timeout=120) as c:
            ids = [_upload(c, board) for board in boards]
            # Every inspection stored while the broker is down; the messages wait.
            health = c.get("/api/health").json()
            assert health["outbox"]["backlog_messages"] >= 3 * len(ids)
            assert health["outbox"]["oldest_age_s"] > 0
            metrics = c.get("/metrics").text
            assert 'aoi_outbox_messages{sink="cfx"}' in metrics
            backlog = [
                line
                for line in metrics.splitlines()
                if line.startswith('aoi_outbox_messages{sink="cfx"}')
            ]
            assert float(backlog[0].split()[-1]) >= 3 * len(ids)
    finally:
        _rabbitmqctl("start_app")
    consumer.reconnect()
    got = consumer.take(3 * len(ids), timeout_s=120)
    inspected = [
        m["MessageBody"]["InspectedUnits"][0]["UnitIdentifier"]
        for m in got
        if m["MessageName"].endswith("UnitsInspected")
    ]
    # Every one, once each, in the order the inspections were stored.
    assert inspected == ids
    assert len({m["UniqueID"] for m in got}) == len(got)
    with httpx2.Client(base_url=cfx_agent.url, timeout=30) as c:
        wait_until(lambda: c.get("/api/health").json()["outbox"]["backlog_messages"] == 0)
