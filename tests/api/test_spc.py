"""GET /api/spc/p-chart and /api/spc/u-chart on boards inspected through the agent (real
reference model service, real PostgreSQL), and their JSON errors for bad input."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.support import AgentServer
from tests.web.conftest import upload


@pytest.fixture(scope="module")
def inspected(agent: AgentServer, deeppcb: list[Path]) -> list[dict[str, Any]]:
    """Four DeepPCB boards inspected through the agent today."""
    return [upload(agent, path) for path in deeppcb[:4]]


def test_p_chart_counts_todays_boards_and_defective_ones(
    client: httpx2.Client, inspected: list[dict[str, Any]]
) -> None:
    today = datetime.now(UTC).date().isoformat()
    chart = client.get("/api/spc/p-chart", params={"start_date": today}).json()
    summary = client.get("/api/dashboard/summary", params={"start_date": today}).json()
    [point] = chart["points"]
    assert (point["key"], point["boards"]) == (today, len(inspected))
    assert point["count"] == summary["images_with_defects"]
    assert chart["center"] == pytest.approx(point["count"] / point["boards"])
    assert chart["alarms"] == []  # one point is its own baseline


def test_u_chart_counts_the_regions_of_a_class(
    client: httpx2.Client, inspected: list[dict[str, Any]]
) -> None:
    today = datetime.now(UTC).date().isoformat()
    summary = client.get("/api/dashboard/summary", params={"start_date": today}).json()
    top = summary["classes"][0]
    chart = client.get(
        "/api/spc/u-chart", params={"class": top["class_name"].upper(), "start_date": today}
    ).json()
    [point] = chart["points"]
    assert point["count"] == top["regions"]
    assert point["value"] == pytest.approx(top["regions"] / len(inspected))


@pytest.mark.parametrize(
    ("path", "params", "detail"),
    [
        ("/api/spc/p-chart", {"start_date": "2026-13-01"}, "start_date"),
        ("/api/spc/p-chart", {"start_date": "2026-12-07", "end_date": "2026-12-01"}, "after"),
        ("/api/spc/p-chart", {"start_date": "2020-01-01", "end_date": "2026-01-01"}, "731"),
        ("/api/spc/p-chart", {"subgroup": "shift"}, "SHIFTS"),
        ("/api/spc/p-chart", {"end_date": "9999-12-31"}, "outside"),
        ("/api/spc/u-chart", {"class": "Short", "start_date": "0001-01-01"}, "outside"),
        ("/api/spc/p-chart", {"subgroup": "week"}, "subgroup"),
        ("/api/spc/p-chart", {"baseline": "1"}, "baseline"),
        ("/api/spc/u-chart", {}, "class"),
        ("/api/spc/alarms", {"limit": "0"}, "limit"),
        ("/api/spc/alarms", {"open_only": "maybe"}, "open_only"),
    ],
)
def test_bad_chart_requests_are_422_json(
    client: httpx2.Client, path: str, params: dict[str, str], detail: str
) -> None:
    response = client.get(path, params=params)
    assert response.status_code == 422
    assert detail in response.text
    assert response.json()["error"]


def test_recorded_alarms_list_is_json(client: httpx2.Client) -> None:
    """No check has recorded anything on this fresh database yet (the tests of the check
    itself are in tests/services/spc/test_alarms.py)."""
    response = client.get("/api/spc/alarms", params={"open_only": "true"})
    assert response.status_code == 200
    assert response.json() == {"alarms": []}
