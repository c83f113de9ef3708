"""GET /api/reports/{day}: the shift or day report as XLSX and PDF, opened the way a reader
would (openpyxl for the workbook, pypdf for the PDF's text), on boards inspected through
the agent (real reference model service, real PostgreSQL), and 422 JSON for bad input.

SHIFTS splits the UTC day in two (D before noon, N after) so the current shift is known.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import pytest
from openpyxl import load_workbook
from pypdf import PdfReader

from app.services.model_service.reference import ReferenceService
from tests.conftest import agent_settings
from tests.support import AgentServer, serve_agent
from tests.web.conftest import upload

SHIFTS = "D=00:00-12:00,N=12:00-00:00"


@pytest.fixture(scope="module")
def agent(
    tmp_path_factory: pytest.TempPathFactory, database_url: str, reference_service: ReferenceService
) -> Iterator[AgentServer]:
    """The agent with two shifts, UTC."""
    data = tmp_path_factory.mktemp("data")
    with serve_agent(agent_settings(data, database_url, reference_service.url, shifts=SHIFTS)) as a:
        yield a


@pytest.fixture(scope="module")
def boards(agent: AgentServer, deeppcb: list[Path]) -> dict[str, Any]:
    """Four DeepPCB boards inspected today; one region reviewed as a false call."""
    ids = [upload(agent, path)["img_unique_id"] for path in deeppcb[:4]]
    with httpx2.Client(base_url=agent.url, timeout=60) as c:
        regions = c.get(f"/api/images/{ids[0]}/regions").json()
        region = regions["classes"][0]["regions"][0]["region_unique_id"]
        verdict = c.put(
            f"/api/regions/{region}/verdict",
            json={"verdict": "false_call"},
            headers={"X-Reviewer": "anna"},
        )
        assert verdict.status_code == 200, verdict.text
        summary = c.get("/api/dashboard/summary").json()
    return {"ids": ids, "summary": summary}


def _today() -> str:
    return datetime.now(UTC).date().isoformat()


def test_xlsx_report_of_the_day(client: httpx2.Client, boards: dict[str, Any]) -> None:
    response = client.get(f"/api/reports/{_today()}", params={"format": "xlsx"})
    assert response.status_code == 200, response.text
    assert f'filename="aoi-report-{_today()}.xlsx"' in response.headers["content-disposition"]
    book = load_workbook(io.BytesIO(response.content))
    assert book.sheetnames == ["Summary", "Pareto", "p-chart", "u-chart", "Top boards"]
    summary = {row[0]: row[1] for row in book["Summary"].iter_rows(min_row=2, values_only=True)}
    expected = boards["summary"]
    assert summary["Boards inspected"] == 4
    assert summary["Defective boards (≥ 1 region)"] == expected["images_with_defects"]
    assert summary["Defect regions"] == expected["total_defects"]
    assert summary["Regions reviewed"] == 1
    assert summary["False-call rate"] == "100.0 %"
    pareto = list(book["Pareto"].iter_rows(min_row=2, values_only=True))
    assert [(r[0], r[1]) for r in pareto] == [
        (c["class_name"], c["regions"]) for c in expected["classes"]
    ]
    assert pareto[-1][3] == pytest.approx(1.0)
    p_rows = list(book["p-chart"].iter_rows(min_row=2, values_only=True))
    assert p_rows[-1][:3] == (_today(), 4, expected["images_with_defects"])
    top = list(book["Top boards"].iter_rows(min_row=2, values_only=True))
    assert {r[0] for r in top} <= set(boards["ids"])
    assert len(book["Pareto"]._charts) == 1


def test_pdf_report_of_the_current_shift(client: httpx2.Client, boards: dict[str, Any]) -> None:
    shift = "D" if datetime.now(UTC).hour < 12 else "N"
    response = client.get(f"/api/reports/{_today()}", params={"format": "pdf", "shift": shift})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    pages = PdfReader(io.BytesIO(response.content)).pages
    text = " ".join(" ".join(page.extract_text() for page in pages).split())
    assert f"AOI report {_today()} shift {shift}" in text
    assert "Boards inspected 4" in text
    assert "p-chart: fraction of defective boards" in text
    assert boards["summary"]["classes"][0]["class_name"] in text
    assert "False-call rate 100.0 %" in text


@pytest.mark.parametrize(
    ("path", "params", "detail"),
    [
        ("/api/reports/2026-02-30", {}, "day"),
        ("/api/reports/07.12.2026", {}, "day"),
        ("/api/reports/0001-01-01", {}, "outside"),
        ("/api/reports/9999-12-31", {"format": "xlsx"}, "outside"),
        ("/api/reports/2026-12-07", {"shift": "Z"}, "D, N"),
        ("/api/reports/2026-12-07", {"shift": "A;B"}, "shift"),
        ("/api/reports/2026-12-07", {"format": "docx"}, "format"),
    ],
)
def test_bad_report_requests_are_422_json(
    client: httpx2.Client, path: str, params: dict[str, str], detail: str
) -> None:
    response = client.get(path, params=params)
    assert response.status_code == 422
    assert detail in response.json()["detail"] or detail in response.text
