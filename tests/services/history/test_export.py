"""The batch ZIP's summary.csv is safe to open in a spreadsheet."""

from __future__ import annotations

import csv
import io
import zipfile

import httpx2

from tests.support import AgentServer, make_image


def test_summary_csv_neutralises_file_names_that_are_formulas(agent: AgentServer) -> None:
    names = ["=HYPERLINK(1).png", "@SUM(A1).png", "+1.png", "-1.png", "plain.png"]
    with httpx2.Client(base_url=agent.url, timeout=120) as client:
        response = client.post(
            "/api/upload/batch?wait=true",
            files=[("images", (n, make_image("PNG", (32, 32)))) for n in names],
        )
        assert response.status_code == 200, response.text
        archive = client.get(f"/api/download/batch/{response.json()['batch_id']}")
    with zipfile.ZipFile(io.BytesIO(archive.content)) as zipped:
        rows = list(csv.DictReader(io.StringIO(zipped.read("summary.csv").decode("utf-8"))))
    assert sorted(r["original_filename"] for r in rows) == sorted(
        ["'=HYPERLINK(1).png", "'@SUM(A1).png", "'+1.png", "'-1.png", "plain.png"]
    )
    assert {r["status"] for r in rows} == {"succeeded"}
