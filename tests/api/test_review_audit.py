"""Reviewer figures and the double-review sample (REVIEW_AUDIT_RATE): first verdicts by
one reviewer through the real API, blind second verdicts by another, Cohen's kappa, the
seconds per verdict, against real PostgreSQL and the reference model service."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from pydantic import ValidationError

from app.config import Settings
from app.services.model_service.reference import ReferenceService
from app.services.review.audit import cohen_kappa
from app.services.review.sample import in_audit_sample
from tests.conftest import agent_settings
from tests.support import AgentServer, db_execute, db_rows, serve_agent

ANNA = {"X-Reviewer": "qc-anna"}
BEN = {"X-Reviewer": "qc-ben"}
# A hand-computed example: 6 regions, 5 equal verdicts, p_o = 5/6; first reviewer's
# shares real 3, false_call 2, unsure 1; second's real 2, false_call 3, unsure 1:
# p_e = (3·2 + 2·3 + 1·1) / 36 = 13/36; κ = (5/6 − 13/36) / (1 − 13/36) = 17/23.
FIRST = ["real", "real", "false_call", "false_call", "unsure", "real"]
SECOND = ["real", "false_call", "false_call", "false_call", "unsure", "real"]
KAPPA = 17 / 23


@pytest.fixture(scope="module")
def agent(
    tmp_path_factory: pytest.TempPathFactory, database_url: str, reference_service: ReferenceService
) -> Iterator[AgentServer]:
    """The agent with every completely reviewed board queued for audit (rate 1)."""
    settings = agent_settings(
        tmp_path_factory.mktemp("data"),
        database_url,
        reference_service.url,
        review_audit_rate=1.0,
    )
    with serve_agent(settings) as server:
        yield server


@pytest.fixture(scope="module")
def boards(agent: AgentServer, deeppcb: list[Path]) -> list[dict[str, Any]]:
    """Four DeepPCB boards inspected in one batch, with their region ids (model order)."""
    files = [("images", (p.name, p.read_bytes())) for p in deeppcb[40:44]]
    with httpx2.Client(base_url=agent.url, timeout=120) as c:
        response = c.post("/api/upload/batch", params={"wait": "true"}, files=files)
        assert response.status_code == 200, response.text
        boards = []
        for item in response.json()["results"]:
            regions = c.get(f"/api/images/{item['img_unique_id']}/regions").json()
            ids = sorted(r["region_unique_id"] for g in regions["classes"] for r in g["regions"])
            boards.append({"id": item["img_unique_id"], "regions": ids})
    return boards


def _put(c: httpx2.Client, url: str, verdict: str | None, who: dict[str, str]) -> Any:
    response = c.put(url, json={"verdict": verdict}, headers=who)
    assert response.status_code == 200, response.text
    return response.json()


def _first_review(c: httpx2.Client, board: dict[str, Any], verdicts: list[str]) -> None:
    for i, region in enumerate(board["regions"]):
        verdict = verdicts[i] if i < len(verdicts) else "real"
        _put(c, f"/api/regions/{region}/verdict", verdict, ANNA)


def test_the_sample_is_reproducible_and_bounded_by_the_rate() -> None:
    ids = [f"20260225_1030{i:02d}_ABC{i:03d}" for i in range(60)]
    half = [i for i in ids if in_audit_sample(i, 0.5)]
    assert half == [i for i in ids if in_audit_sample(i, 0.5)]  # same boards every time
    assert 15 < len(half) < 45
    assert not any(in_audit_sample(i, 0.0) for i in ids)
    assert all(in_audit_sample(i, 1.0) for i in ids)


@pytest.mark.parametrize("rate", [-0.1, 1.5, "five per cent"])
def test_an_invalid_audit_rate_is_a_settings_error(rate: object) -> None:
    with pytest.raises(ValidationError, match="review_audit_rate"):
        Settings(_env_file=None, review_audit_rate=rate)  # type: ignore[call-arg]


def test_kappa_matches_the_hand_computed_example_and_is_undefined_at_chance_one() -> None:
    agreement = cohen_kappa((a, b, 1) for a, b in zip(FIRST, SECOND, strict=True))
    assert agreement.n == 6
    assert agreement.observed == pytest.approx(5 / 6)
    assert agreement.expected == pytest.approx(13 / 36)
    assert agreement.kappa == pytest.approx(KAPPA)
    # Both reviewers said `real` every time: p_e = 1, kappa undefined (not a division error).
    assert cohen_kappa([("real", "real", 4)]).kappa is None
    assert cohen_kappa([]).kappa is None


def test_a_completed_board_is_audited_blind_and_kappa_is_reported(
    client: httpx2.Client, agent: AgentServer, boards: list[dict[str, Any]]
) -> None:
    db = agent.settings.database_url or ""
    first, second = boards[0], boards[1]
    assert len(first["regions"]) + len(second["regions"]) >= len(FIRST)
    # Half-reviewed: not queued yet.
    _put(client, f"/api/regions/{first['regions'][0]}/verdict", FIRST[0], ANNA)
    if len(first["regions"]) > 1:
        assert db_rows(db, "SELECT count(*) FROM review_audits") == [(0,)]
    pairs = list(zip([*first["regions"], *second["regions"]], FIRST, SECOND, strict=False))
    _first_review(client, first, FIRST)
    _first_review(client, second, FIRST[len(first["regions"]) :])
    queued = {r[0] for r in db_rows(db, "SELECT img_unique_id FROM review_audits")}
    assert queued == {first["id"], second["id"]}

    # The first reviewer is not offered the boards and may not audit them.
    assert client.get("/api/review/audit/next", headers=ANNA).json()["img_unique_id"] is None
    refused = client.get(f"/api/review/audit/images/{first['id']}", headers=ANNA)
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"] == "audit_not_allowed"

    # The auditor gets the oldest queued board in audit mode, without the first verdicts.
    offered = client.get("/api/review/audit/next", headers=BEN).json()
    assert offered["img_unique_id"] in queued
    assert offered["pending"] == 2
    assert offered["viewer_url"].endswith("?review=1&audit=1")
    blind = client.get(f"/api/review/audit/images/{first['id']}", headers=BEN)
    assert blind.status_code == 200, blind.text
    assert [r["verdict"] for r in blind.json()["regions"]] == [None] * len(first["regions"])
    assert "qc-anna" not in blind.text
    assert "false_call" not in blind.text

    for region, _, verdict in pairs:
        _put(client, f"/api/review/audit/regions/{region}/verdict", verdict, BEN)
    # The second verdicts are stored apart: the first ones are unchanged.
    stored = dict(db_rows(db, "SELECT region_unique_id, verdict FROM region_verdicts"))
    assert [stored[r] for r, _, _ in pairs] == FIRST[: len(pairs)]
    seen = client.get(f"/api/review/audit/images/{first['id']}", headers=BEN).json()
    expected = [SECOND[i] if i < len(SECOND) else None for i in range(len(first["regions"]))]
    assert [r["verdict"] for r in seen["regions"]] == expected

    figures = client.get("/api/review/figures").json()
    pair = figures["pairs"][0]
    assert (pair["first_reviewer"], pair["second_reviewer"]) == ("qc-anna", "qc-ben")
    assert pair["regions"] == len(FIRST)
    assert pair["kappa"] == pytest.approx(KAPPA)
    assert figures["agreement"]["kappa"] == pytest.approx(KAPPA)
    assert figures["audit_rate"] == 1.0
    assert figures["audits_queued"] == 2
    anna = next(r for r in figures["reviewers"] if r["reviewer"] == "qc-anna")
    assert anna["verdicts"] == len(first["regions"]) + len(second["regions"]) + 1


def test_a_second_auditor_and_an_unsampled_board_are_refused(
    client: httpx2.Client, boards: list[dict[str, Any]]
) -> None:
    region = boards[0]["regions"][0]
    taken = client.put(
        f"/api/review/audit/regions/{region}/verdict",
        json={"verdict": "real"},
        headers={"X-Reviewer": "qc-carl"},
    )
    assert taken.status_code == 403, taken.text
    unsampled = client.get(f"/api/review/audit/images/{boards[3]['id']}", headers=BEN)
    assert unsampled.status_code == 404
    assert unsampled.json()["error"] == "audit_not_queued"


def test_with_rate_zero_a_completed_board_is_not_queued(
    agent: AgentServer, boards: list[dict[str, Any]]
) -> None:
    db = agent.settings.database_url or ""
    off = agent.settings.model_copy(update={"review_audit_rate": 0.0})
    with serve_agent(off) as other, httpx2.Client(base_url=other.url, timeout=60) as c:
        _first_review(c, boards[3], [])
        progress = c.get(f"/api/images/{boards[3]['id']}/review").json()["progress"]
        assert progress["reviewed_regions"] == progress["regions"]
        assert c.get("/api/review/figures").json()["audit_rate"] == 0.0
    assert db_rows(
        db, "SELECT count(*) FROM review_audits WHERE img_unique_id = %s", boards[3]["id"]
    ) == [(0,)]


def test_seconds_per_verdict_leave_breaks_and_first_actions_out(
    client: httpx2.Client, agent: AgentServer, boards: list[dict[str, Any]]
) -> None:
    """The events' times are written directly: a real clock cannot be made to show gaps of
    seconds and a 400 s break on demand. Everything else goes through the API."""
    db = agent.settings.database_url or ""
    region = boards[2]["regions"][0]
    # Seconds after 2026-03-01 10:00 UTC: verdicts at 0, 2, 8, 408 (after a break), 411,
    # a withdrawal at 412, a verdict at 416. Timed: 2, 6, 3, 4 (the first and the one
    # after the break are not): median 3.5, p90 = 4 + 0.7·(6 − 4) = 5.4, 3600·4/15 = 960/h.
    for at, value in [
        (0, "real"),
        (2, "real"),
        (8, "unsure"),
        (408, "real"),
        (411, "real"),
        (412, None),
        (416, "false_call"),
    ]:
        db_execute(
            db,
            "INSERT INTO review_events (img_unique_id, region_unique_id, kind, value, reviewer,"
            " created_at) VALUES (%s, %s, 'verdict', %s, 'qc-timer',"
            " timestamptz '2026-03-01 10:00:00+00' + make_interval(secs => %s))",
            boards[2]["id"],
            region,
            value,
            at,
        )
    figures = client.get(
        "/api/review/figures", params={"start_date": "2026-03-01", "end_date": "2026-03-01"}
    ).json()
    assert figures["idle_gap_s"] == 300
    (timer,) = figures["reviewers"]
    assert timer["reviewer"] == "qc-timer"
    assert (timer["verdicts"], timer["timed_verdicts"]) == (6, 4)
    assert timer["seconds_median"] == pytest.approx(3.5)
    assert timer["seconds_p90"] == pytest.approx(5.4)
    assert timer["verdicts_per_hour"] == pytest.approx(960)
    (day,) = figures["days"]
    assert day["day"] == "2026-03-01"
    assert day["seconds_median"] == pytest.approx(3.5)
    assert figures["pairs"] == []
    assert figures["agreement"]["kappa"] is None
