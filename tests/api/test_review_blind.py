"""The blind second review everywhere a reader could infer a first review from: the
History filters (`review_state`, `disposition` on `/api/images` and `/api/query/defects`),
the exports (regions CSV, COCO, batch ZIP summary, XLSX report) and the review figures
(dashboard review card, false-call Pareto, kappa). Two reviewers through the real API,
against real PostgreSQL and the reference model service.

Anna reviews board A (all false calls, reason `dust`, scrap); Ben reviews board B the
same way. With REVIEW_AUDIT_RATE=1 both boards are queued for a second review: Ben may
audit A, so for him A must look unreviewed and undecided; B is his own. Board C stays
unreviewed.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import pytest
from openpyxl import load_workbook

from app.services.model_service.reference import ReferenceService
from tests.conftest import agent_settings
from tests.support import AgentServer, serve_agent

ANNA = {"X-Reviewer": "qc-anna"}
BEN = {"X-Reviewer": "qc-ben"}
SERIAL_A = "SN-BLIND-A"
SERIAL_D = "SN-BLIND-D"
PRODUCT = "P-BLIND"


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
        review_reasons="dust,oxidation",
    )
    with serve_agent(settings) as server:
        yield server


@pytest.fixture(scope="module")
def boards(agent: AgentServer, deeppcb: list[Path]) -> dict[str, Any]:
    """Boards A (Anna's review), B (Ben's), C (unreviewed) and D (Anna's) of one batch,
    with their region ids; A, B and D all false calls with reason `dust`; A and B scrap,
    D without disposition. A and D carry board serials of one product."""
    files = [("images", (p.name, p.read_bytes())) for p in deeppcb[80:84]]
    manifest = {
        deeppcb[80].name: {"board_serial": SERIAL_A, "product": PRODUCT},
        deeppcb[83].name: {"board_serial": SERIAL_D, "product": PRODUCT},
    }
    with httpx2.Client(base_url=agent.url, timeout=120) as c:
        response = c.post(
            "/api/upload/batch",
            params={"wait": "true"},
            files=files,
            data={"manifest": json.dumps(manifest)},
        )
        assert response.status_code == 200, response.text
        batch_id = response.json()["batch_id"]
        found = []
        for item in response.json()["results"]:
            regions = c.get(f"/api/images/{item['img_unique_id']}/regions").json()
            ids = sorted(r["region_unique_id"] for g in regions["classes"] for r in g["regions"])
            assert ids, "the test boards need regions"
            found.append({"id": item["img_unique_id"], "regions": ids})
        for board, who in ((found[0], ANNA), (found[1], BEN), (found[3], ANNA)):
            for region in board["regions"]:
                put = c.put(
                    f"/api/regions/{region}/verdict",
                    json={"verdict": "false_call", "reason": "dust"},
                    headers=who,
                )
                assert put.status_code == 200, put.text
            if board is found[3]:
                continue  # D: no disposition (all false calls: it passes, docs/boards.md)
            put = c.put(
                f"/api/images/{board['id']}/disposition",
                json={"disposition": "scrap"},
                headers=who,
            )
            assert put.status_code == 200, put.text
    a, b, c_, d = found
    return {"a": a, "b": b, "c": c_, "d": d, "batch_id": batch_id}


def _listed(c: httpx2.Client, who: dict[str, str] | None, **params: str) -> set[str]:
    response = c.get("/api/images", params={"limit": "100", **params}, headers=who or {})
    assert response.status_code == 200, response.text
    return {i["img_unique_id"] for i in response.json()["images"]}


def _defect_boards(c: httpx2.Client, who: dict[str, str] | None, **params: str) -> set[str]:
    response = c.get("/api/query/defects", params={"limit": "100", **params}, headers=who or {})
    assert response.status_code == 200, response.text
    return {r["img_unique_id"] for r in response.json()["regions"]}


def test_the_boards_are_queued_for_audit(
    client: httpx2.Client, boards: dict[str, Any], agent: AgentServer
) -> None:
    offered = client.get("/api/review/audit/next", headers=BEN).json()
    assert offered["img_unique_id"] == boards["a"]["id"]  # Ben may audit A, not his B
    assert offered["pending"] == 2  # A and D


@pytest.mark.parametrize(
    ("params", "anyone", "anna", "ben"),
    [
        ({"review_state": "reviewed"}, "abd", "ad", "b"),
        ({"review_state": "has_false_calls"}, "abd", "ad", "b"),
        ({"disposition": "scrap"}, "ab", "a", "b"),
        ({"review_state": "reviewed", "disposition": "scrap"}, "ab", "a", "b"),
        ({"review_state": "unreviewed"}, "c", "bc", "acd"),
    ],
)
def test_the_review_filters_treat_the_audited_board_as_unreviewed(
    client: httpx2.Client,
    boards: dict[str, Any],
    params: dict[str, str],
    anyone: str,
    anna: str,
    ben: str,
) -> None:
    """Ben (who may audit A) finds A only among the unreviewed boards, in the listing and
    the defect query alike, and Anna likewise B; an anonymous reader finds both where they
    are."""
    for who, expected in ((None, anyone), (ANNA, anna), (BEN, ben)):
        ids = {boards[k]["id"] for k in expected}
        assert _listed(client, who, **params) == ids, (who, params)
        assert _defect_boards(client, who, **params) == ids, (who, params)
    counted = client.get("/api/images", params={"limit": "1", **params}, headers=BEN).json()
    assert (counted["total"], counted["total_is_exact"]) == (len(ben), True)


def test_the_listing_shows_the_audited_board_unreviewed(
    client: httpx2.Client, boards: dict[str, Any]
) -> None:
    listed = client.get("/api/images", params={"q": boards["a"]["id"]}, headers=BEN).json()
    (row,) = listed["images"]
    assert row["review"]["state"] == "unreviewed"
    assert (row["review"]["false_calls"], row["review"]["disposition"]) == (0, None)


def test_the_exports_carry_no_first_review_of_the_audited_board(
    client: httpx2.Client, boards: dict[str, Any]
) -> None:
    a, b = boards["a"]["id"], boards["b"]["id"]

    def regions_csv(who: dict[str, str], **params: str) -> list[dict[str, str]]:
        response = client.get("/api/export/regions.csv", params=params, headers=who)
        assert response.status_code == 200, response.text
        return list(csv.DictReader(io.StringIO(response.text)))

    for row in regions_csv(BEN, batch_id=boards["batch_id"]):
        review = (row["verdict"], row["reason"], row["disposition"])
        if row["img_unique_id"] == a:
            assert review == ("", "", "")
        elif row["img_unique_id"] == b:
            assert review == ("false_call", "dust", "scrap")
    anna_rows = regions_csv(ANNA, img_unique_id=a)
    assert {r["verdict"] for r in anna_rows} == {"false_call"}
    assert {r["img_unique_id"] for r in regions_csv(BEN, review_state="reviewed")} == {b}

    coco = client.get("/api/export/coco.json", params={"img_unique_id": a}, headers=BEN).json()
    assert [i["disposition"] for i in coco["images"]] == [None]
    assert coco["annotations"]
    assert {(x["verdict"], x["reason"]) for x in coco["annotations"]} == {(None, None)}
    seen = client.get("/api/export/coco.json", params={"img_unique_id": a}, headers=ANNA).json()
    assert [i["disposition"] for i in seen["images"]] == ["scrap"]

    def dataset_reviews(who: dict[str, str]) -> set[str]:
        response = client.get("/api/export/dataset.zip", params={"img_unique_id": a}, headers=who)
        assert response.status_code == 200, response.text
        found: set[str] = set()
        with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
            for name in archive.namelist():
                if name.startswith("annotations/") and name.endswith(".json"):
                    coco = json.loads(archive.read(name))
                    for entry in coco["annotations"] + coco["hard_negatives"]:
                        found.add(entry["review"])
        return found

    assert dataset_reviews(BEN) == {"unreviewed"}  # unjudged: ignore regions, no negatives
    assert dataset_reviews(ANNA) == {"false_call"}

    response = client.get(f"/download/batch/{boards['batch_id']}", headers=BEN)
    assert response.status_code == 200, response.text
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        summary = archive.read("summary.csv").decode("utf-8")
    rows = {r["img_unique_id"]: r for r in csv.DictReader(io.StringIO(summary))}
    assert (rows[a]["verdicts"], rows[a]["reasons"], rows[a]["disposition"]) == ("", "", "")
    assert rows[b]["verdicts"].startswith("false_call=")
    assert (rows[b]["reasons"].split("=")[0], rows[b]["disposition"]) == ("dust", "scrap")


def _report_summary(client: httpx2.Client, who: dict[str, str] | None) -> dict[str, Any]:
    today = datetime.now(UTC).date().isoformat()
    response = client.get(f"/api/reports/{today}", params={"format": "xlsx"}, headers=who or {})
    assert response.status_code == 200, response.text
    book = load_workbook(io.BytesIO(response.content))
    return {row[0]: row[1] for row in book["Summary"].iter_rows(min_row=2, values_only=True)}


def test_the_report_and_the_figures_leave_the_audited_board_out(
    client: httpx2.Client, boards: dict[str, Any]
) -> None:
    """Ben's figures count A as unreviewed and undecided (docs/review.md: figures of a
    reviewer who audits boards leave those boards' first review out)."""
    a, b, d = (len(boards[k]["regions"]) for k in "abd")
    assert _report_summary(client, None)["Regions reviewed"] == a + b + d
    assert _report_summary(client, BEN)["Regions reviewed"] == b
    assert _report_summary(client, ANNA)["Regions reviewed"] == a + d

    everyone = client.get("/api/dashboard/review").json()
    ben = client.get("/api/dashboard/review", headers=BEN).json()
    assert (everyone["total"]["reviewed_images"], everyone["total"]["false_calls"]) == (
        3,
        a + b + d,
    )
    assert (ben["total"]["reviewed_images"], ben["total"]["false_calls"]) == (1, b)
    assert ben["total"]["images"] == everyone["total"]["images"]
    assert everyone["dispositions"] == {"scrap": 2}
    assert ben["dispositions"] == {"scrap": 1}
    assert sum(c["false_call"] for c in ben["classes"]) == b

    pareto = client.get("/api/dashboard/false-calls/reasons", headers=BEN).json()
    assert pareto["false_calls"] == b
    assert client.get("/api/dashboard/false-calls/reasons").json()["false_calls"] == a + b + d

    def product_yield(who: dict[str, str] | None) -> tuple[int, int]:
        response = client.get(
            "/api/dashboard/board-yield", params={"product": PRODUCT}, headers=who or {}
        )
        assert response.status_code == 200, response.text
        total = response.json()["total"]
        return total["boards"], total["first_pass_passed"]

    # D passes on its first review (all false calls, no disposition), A is scrapped; for
    # Ben, who may audit both, D is unreviewed: it does not pass.
    assert product_yield(None) == (2, 1)
    assert product_yield(ANNA) == (2, 1)
    assert product_yield(BEN) == (2, 0)


def test_kappa_leaves_the_boards_the_reader_audits_out(
    client: httpx2.Client, boards: dict[str, Any]
) -> None:
    """Were Ben's own audit counted in the kappa he reads, flipping one of his second
    verdicts and reading the kappa again would tell him the first verdict."""
    for region in boards["a"]["regions"]:
        put = client.put(
            f"/api/review/audit/regions/{region}/verdict",
            json={"verdict": "real"},
            headers=BEN,
        )
        assert put.status_code == 200, put.text
    anna = client.get("/api/review/figures", headers=ANNA).json()
    assert [(p["first_reviewer"], p["second_reviewer"]) for p in anna["pairs"]] == [
        ("qc-anna", "qc-ben")
    ]
    assert anna["pairs"][0]["regions"] == len(boards["a"]["regions"])
    ben = client.get("/api/review/figures", headers=BEN).json()
    assert ben["pairs"] == []
    assert ben["agreement"]["regions"] == 0
    # Still blind after the audit: A is Ben's to audit, not to compare.
    assert _listed(client, BEN, review_state="has_false_calls") == {boards["b"]["id"]}


def test_the_board_timeline_shows_the_audited_inspection_unreviewed(
    client: httpx2.Client, boards: dict[str, Any]
) -> None:
    def inspection(who: dict[str, str]) -> dict[str, Any]:
        response = client.get(f"/api/boards/{SERIAL_A}", headers=who)
        assert response.status_code == 200, response.text
        (found,) = response.json()["inspections"]
        assert found["img_unique_id"] == boards["a"]["id"]
        return found

    def reviews(found: dict[str, Any]) -> list[Any]:
        return [r["review"] for c in found["regions"]["classes"] for r in c["regions"]]

    ben = inspection(BEN)
    assert ben["disposition"] is None
    assert reviews(ben) == [None] * len(boards["a"]["regions"])
    assert ben["outcome"] == "fail"  # regions without a verdict: not passed
    anna = inspection(ANNA)
    assert anna["disposition"]["disposition"] == "scrap"
    assert {r["verdict"] for r in reviews(anna)} == {"false_call"}
