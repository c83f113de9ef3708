"""Reason codes of verdicts (REVIEW_REASONS and the admin's list), their place in the
history, the exports and the dashboard's false-call Pareto; and the blind second review
outside audit mode (the regions, detail and history of a board withhold its first review
from its auditor). Real agent, real PostgreSQL, the reference model service over HTTP."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from pydantic import ValidationError

from app.config import Settings
from app.services.model_service.reference import ReferenceService
from tests.conftest import agent_settings
from tests.support import AgentServer, db_rows, serve_agent

ANNA = {"X-Reviewer": "qc-anna"}
BEN = {"X-Reviewer": "qc-ben"}
SETTING = ["dust", "oxidation", "registration"]


@pytest.fixture(scope="module")
def agent(
    tmp_path_factory: pytest.TempPathFactory, database_url: str, reference_service: ReferenceService
) -> Iterator[AgentServer]:
    """The agent with REVIEW_REASONS=dust,oxidation,registration and every completely
    reviewed board queued for a second review (rate 1)."""
    settings = agent_settings(
        tmp_path_factory.mktemp("data"),
        database_url,
        reference_service.url,
        review_audit_rate=1.0,
        review_reasons=",".join(SETTING),
    )
    with serve_agent(settings) as server:
        yield server


@pytest.fixture(scope="module")
def boards(agent: AgentServer, deeppcb: list[Path]) -> list[dict[str, Any]]:
    """Three DeepPCB boards inspected in one batch, with their region ids (model order)."""
    files = [("images", (p.name, p.read_bytes())) for p in deeppcb[60:63]]
    with httpx2.Client(base_url=agent.url, timeout=120) as c:
        response = c.post("/api/upload/batch", params={"wait": "true"}, files=files)
        assert response.status_code == 200, response.text
        out = []
        for item in response.json()["results"]:
            regions = c.get(f"/api/images/{item['img_unique_id']}/regions").json()
            ids = sorted(r["region_unique_id"] for g in regions["classes"] for r in g["regions"])
            assert len(ids) >= 2, "the test boards need two regions each"
            out.append({"id": item["img_unique_id"], "regions": ids})
    return out


def _verdict(
    c: httpx2.Client, region: int, verdict: str | None, reason: str | None = None, **kw: Any
) -> httpx2.Response:
    body: dict[str, Any] = {"verdict": verdict}
    if reason is not None:
        body["reason"] = reason
    return c.put(f"/api/regions/{region}/verdict", json=body, headers=kw.get("who", ANNA))


def _reviews(c: httpx2.Client, img_id: str, who: dict[str, str] | None = None) -> dict[int, Any]:
    answer = c.get(f"/api/images/{img_id}/regions", headers=who or {}).json()
    return {r["region_unique_id"]: r["review"] for g in answer["classes"] for r in g["regions"]}


@pytest.mark.parametrize(
    ("value", "expected"),
    [("", []), (" dust , oxidation ", ["dust", "oxidation"]), ("scratch_2", ["scratch_2"])],
)
def test_review_reasons_setting_is_a_comma_separated_list(value: str, expected: list[str]) -> None:
    assert Settings(_env_file=None, review_reasons=value).review_reasons == expected  # type: ignore[call-arg]


def test_the_default_reasons_are_documented_ones() -> None:
    defaults = Settings(_env_file=None).review_reasons  # type: ignore[call-arg]
    assert defaults == ["dust", "oxidation", "registration", "marking"]


@pytest.mark.parametrize(
    "value", ["Dust", "dust,dust", "a b", ",".join(f"r{i}" for i in range(10))]
)
def test_a_bad_review_reasons_setting_is_refused(value: str) -> None:
    with pytest.raises(ValidationError, match="REVIEW_REASONS"):
        Settings(_env_file=None, review_reasons=value)  # type: ignore[call-arg]


def test_a_reason_is_stored_on_the_verdict_and_in_the_history(
    client: httpx2.Client, agent: AgentServer, boards: list[dict[str, Any]]
) -> None:
    db = agent.settings.database_url or ""
    listed = client.get("/api/review/reasons").json()
    assert listed == {
        "reasons": [{"code": c, "key": f"Shift+{i + 1}"} for i, c in enumerate(SETTING)],
        "source": "setting",
    }
    region = boards[2]["regions"][0]
    answer = _verdict(client, region, "false_call", "oxidation")
    assert answer.status_code == 200, answer.text
    assert answer.json()["review"]["reason"] == "oxidation"
    assert db_rows(
        db, "SELECT verdict, reason FROM region_verdicts WHERE region_unique_id = %s", region
    ) == [("false_call", "oxidation")]
    assert _reviews(client, boards[2]["id"])[region]["reason"] == "oxidation"
    # A new verdict without a reason clears it; the history keeps both changes.
    assert _verdict(client, region, "real").json()["review"]["reason"] is None
    events = client.get(f"/api/images/{boards[2]['id']}/review").json()["events"]
    assert [(e["value"], e["reason"]) for e in events[:2]] == [
        ("real", None),
        ("false_call", "oxidation"),
    ]
    assert db_rows(
        db,
        "SELECT value, reason FROM review_events WHERE region_unique_id = %s ORDER BY id",
        region,
    ) == [("false_call", "oxidation"), ("real", None)]


@pytest.mark.parametrize(
    ("verdict", "reason", "error"),
    [
        ("false_call", "marking", "unknown_reason"),  # well formed, not in the list
        ("unsure", "dust", "invalid_request"),  # a reason goes with real/false_call only
        (None, "dust", "invalid_request"),
        ("real", "DUST", "invalid_request"),
        ("real", "x" * 33, "invalid_request"),
    ],
)
def test_a_reason_outside_the_list_or_with_the_wrong_verdict_is_a_422(
    client: httpx2.Client,
    agent: AgentServer,
    boards: list[dict[str, Any]],
    verdict: str | None,
    reason: str,
    error: str,
) -> None:
    region = boards[2]["regions"][1]
    answer = _verdict(client, region, verdict, reason)
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert body["error"] == error
    assert body["errors"][0]["loc"][-1] in ("reason", "body")
    assert db_rows(
        agent.settings.database_url or "",
        "SELECT count(*) FROM region_verdicts WHERE region_unique_id = %s",
        region,
    ) == [(0,)]


def test_the_admin_list_replaces_the_setting_until_it_is_emptied(
    client: httpx2.Client, agent: AgentServer, boards: list[dict[str, Any]]
) -> None:
    region = boards[2]["regions"][1]
    stored = client.put("/api/review/reasons", json={"reasons": ["scratch", "dust"]})
    assert stored.status_code == 200, stored.text
    assert stored.json() == {
        "reasons": [{"code": "scratch", "key": "Shift+1"}, {"code": "dust", "key": "Shift+2"}],
        "source": "admin",
    }
    assert client.get("/api/review/reasons").json()["source"] == "admin"
    assert _verdict(client, region, "real", "scratch").status_code == 200
    refused = _verdict(client, region, "real", "oxidation")  # the setting's, not the admin's
    assert refused.status_code == 422
    assert refused.json()["error"] == "unknown_reason"
    assert "scratch, dust" in refused.json()["detail"]
    for bad in (["dust", "dust"], [f"r{i}" for i in range(10)], ["Dust"], ["a\x00"]):
        answer = client.put("/api/review/reasons", json={"reasons": bad})
        assert answer.status_code == 422, (bad, answer.text)
    back = client.put("/api/review/reasons", json={"reasons": []}).json()
    assert back["source"] == "setting"
    assert [r["code"] for r in back["reasons"]] == SETTING
    # The verdict keeps the code it was given, though the list no longer has it.
    assert _reviews(client, boards[2]["id"])[region]["reason"] == "scratch"


def test_exports_and_the_pareto_show_the_reasons(
    client: httpx2.Client, boards: list[dict[str, Any]]
) -> None:
    board = boards[1]
    a, b = board["regions"][:2]
    assert _verdict(client, a, "false_call", "dust").status_code == 200
    assert _verdict(client, b, "false_call").status_code == 200  # no reason

    rows = list(csv.DictReader(io.StringIO(client.get("/api/export/regions.csv").text)))
    header = list(rows[0])
    assert header.index("reason") == header.index("verdict") + 1
    by_id = {int(r["region_unique_id"]): r for r in rows}
    assert (by_id[a]["verdict"], by_id[a]["reason"]) == ("false_call", "dust")
    assert (by_id[b]["verdict"], by_id[b]["reason"]) == ("false_call", "")

    coco = client.get("/api/export/coco.json").json()
    notes = {n["region_unique_id"]: n for n in coco["annotations"]}
    assert (notes[a]["verdict"], notes[a]["reason"]) == ("false_call", "dust")
    assert notes[b]["reason"] is None

    pareto = client.get("/api/dashboard/false-calls/reasons").json()
    # Every false call of the database so far: this board's two (the others are real).
    assert pareto["false_calls"] == 2
    assert pareto["reasons"] == [
        {"reason": "dust", "false_calls": 1, "share": 0.5, "cumulative_share": 0.5},
        {"reason": None, "false_calls": 1, "share": 0.5, "cumulative_share": 1.0},
    ]
    old = client.get(
        "/api/dashboard/false-calls/reasons",
        params={"start_date": "2020-01-01", "end_date": "2020-01-31"},
    ).json()
    assert (old["false_calls"], old["reasons"]) == (0, [])
    other = client.get(
        "/api/dashboard/false-calls/reasons", params={"model_version": "no-such-model"}
    ).json()
    assert other["false_calls"] == 0
    bad = client.get(
        "/api/dashboard/false-calls/reasons",
        params={"start_date": "2026-02-02", "end_date": "2026-01-01"},
    )
    assert bad.status_code == 422


def test_an_auditor_never_sees_the_first_review_outside_audit_mode(
    client: httpx2.Client, agent: AgentServer, boards: list[dict[str, Any]]
) -> None:
    """The bug: GET /api/images/{id}/regions (what the viewer reads outside audit mode)
    answered the first verdicts to the board's auditor."""
    db = agent.settings.database_url or ""
    board = boards[0]
    for region in board["regions"]:
        assert _verdict(client, region, "false_call", "dust").status_code == 200
    put = client.put(
        f"/api/images/{board['id']}/disposition", json={"disposition": "scrap"}, headers=ANNA
    )
    assert put.status_code == 200, put.text
    assert db_rows(db, "SELECT img_unique_id FROM review_audits") == [(board["id"],)]

    # The first reviewer, and a request naming nobody, see the first review.
    assert all(r["verdict"] == "false_call" for r in _reviews(client, board["id"], ANNA).values())
    assert all(r is not None for r in _reviews(client, board["id"]).values())
    found = client.get("/api/query/defects", params={"img_unique_id": board["id"]}, headers=ANNA)
    assert all(r["review"]["reason"] == "dust" for r in found.json()["regions"])
    listed = client.get("/api/images", params={"q": board["id"]}, headers=ANNA).json()
    assert listed["images"][0]["review"]["false_calls"] == len(board["regions"])
    assert listed["images"][0]["review"]["disposition"] == "scrap"
    # Any other reviewer may become the auditor: nothing of the first review reaches them.
    for who in (BEN, {"X-Reviewer": "qc-carl"}):
        assert all(r is None for r in _reviews(client, board["id"], who).values())
        detail = client.get(f"/api/images/{board['id']}", headers=who).json()
        assert detail["disposition"] is None
        found = client.get(
            "/api/query/defects", params={"img_unique_id": board["id"]}, headers=who
        ).json()["regions"]
        assert len(found) == len(board["regions"])
        assert all(r["review"] is None for r in found)
        history = client.get(f"/api/images/{board['id']}/review", headers=who).json()
        assert (history["events"], history["disposition"]) == ([], None)
        assert "qc-anna" not in str(history)
        # The History list's badges show the board unreviewed to them.
        listed = client.get("/api/images", params={"q": board["id"]}, headers=who).json()
        assert listed["images"][0]["review"] == {
            "state": "unreviewed",
            "regions": len(board["regions"]),
            "reviewed_regions": 0,
            "false_calls": 0,
            "disposition": None,
        }

    # Ben audits, with reasons too; the first verdicts stay hidden from him.
    first = board["regions"][0]
    audit = client.put(
        f"/api/review/audit/regions/{first}/verdict",
        json={"verdict": "false_call", "reason": "registration"},
        headers=BEN,
    )
    assert audit.status_code == 200, audit.text
    assert audit.json()["reason"] == "registration"
    seen = client.get(f"/api/review/audit/images/{board['id']}", headers=BEN).json()
    assert seen["regions"][0] == {
        "region_unique_id": first,
        "verdict": "false_call",
        "reason": "registration",
    }
    unknown = client.put(
        f"/api/review/audit/regions/{first}/verdict",
        json={"verdict": "real", "reason": "glare"},
        headers=BEN,
    )
    assert unknown.status_code == 422
    assert unknown.json()["error"] == "unknown_reason"
    assert all(r is None for r in _reviews(client, board["id"], BEN).values())
    # Carl is not its auditor any more (Ben is): the first review is his to see again.
    carl = _reviews(client, board["id"], {"X-Reviewer": "qc-carl"})
    assert all(r["reason"] == "dust" for r in carl.values())
