"""The Dashboard's board yield in Chromium: first-pass and re-inspection yield per product
and per line drawn from /api/dashboard/board-yield, the product/line/side/lot pickers
filled from the inspections' own board context, a picker filtering the whole dashboard,
and axe finding nothing critical, serious or moderate on the card.

Boards are DeepPCB images inspected through the agent with a board context; pass or fail
is set by a disposition (docs/boards.md#pass-or-fail), so the figures do not depend on
what the reference model service finds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx2
import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import shoot
from tests.e2e.test_accessibility import axe_source, violations
from tests.support import AgentServer

__all__ = ["axe_source"]

pytestmark = [pytest.mark.e2e]

# (serial, product, line, side, lot, dispositions of its inspections, oldest first)
BOARDS = [
    ("SN-UI-1", "PROD-A", "L1", "top", "LOT-1", ["pass"]),
    ("SN-UI-2", "PROD-A", "L1", "top", "LOT-1", ["repair", "pass"]),
    ("SN-UI-3", "PROD-A", "L2", "bottom", "LOT-2", ["scrap"]),
    ("SN-UI-4", "PROD-B", "L2", "top", "LOT-2", ["pass"]),
]


def _inspect(agent: AgentServer, deeppcb: list[Path]) -> None:
    headers = {"X-API-Key": agent.api_key or ""}
    images = iter(deeppcb[70:80])
    with httpx2.Client(base_url=agent.url, timeout=60, headers=headers) as c:
        for serial, product, line, side, lot, dispositions in BOARDS:
            for disposition in dispositions:
                image = next(images)
                context = {
                    "board_serial": serial,
                    "product": product,
                    "line": line,
                    "side": side,
                    "lot": lot,
                }
                answer = c.post(
                    "/api/upload", files={"image": (image.name, image.read_bytes())}, data=context
                )
                assert answer.status_code == 200, answer.text
                put = c.put(
                    f"/api/images/{answer.json()['img_unique_id']}/disposition",
                    json={"disposition": disposition},
                    headers={"X-Reviewer": "e2e"},
                )
                assert put.is_success, put.text


def _row(page: Page, kind: str, name: str) -> Any:
    return page.locator(f"#yield-table tr[data-{kind}='{name}']")


def test_dashboard_draws_yield_per_product_and_line_with_context_pickers(
    page: Page, agent: AgentServer, deeppcb: list[Path], axe_source: str, screenshot_dir: Any
) -> None:
    _inspect(agent, deeppcb)
    page.emulate_media(reduced_motion="reduce")
    page.goto(agent.url + "/dashboard")
    body = page.locator("body")
    expect(body).to_have_attribute("data-board-yield", "ready")

    # Pickers offer exactly the values sent with the inspections.
    options = page.eval_on_selector_all("#d-product option", "os => os.map(o => o.value)")
    assert options == ["", "PROD-A", "PROD-B"]
    assert page.eval_on_selector_all("#d-side option", "os => os.map(o => o.value)") == [
        "",
        "bottom",
        "top",
    ]
    assert page.eval_on_selector_all("#d-lot option", "os => os.map(o => o.value)") == [
        "",
        "LOT-1",
        "LOT-2",
    ]

    # PROD-A: 3 boards, SN-UI-1 passes first; SN-UI-2 fails first, passes its re-inspection.
    expect(_row(page, "product", "PROD-A").locator("[data-first-pass]")).to_have_text("33.3%")
    expect(_row(page, "product", "PROD-A").locator("[data-reinspection]")).to_have_text("100.0%")
    expect(_row(page, "product", "PROD-B").locator("[data-first-pass]")).to_have_text("100.0%")
    expect(_row(page, "line", "L2").locator("[data-first-pass]")).to_have_text("50.0%")
    expect(page.locator("[data-yield-stat='First-pass yield']")).to_have_text("50.0%")
    drawn = page.evaluate("Chart.getChart('chart-yield-product').data")
    assert drawn["labels"] == ["PROD-A", "PROD-B"]
    assert drawn["datasets"][0]["data"] == [33.3, 100.0]
    assert drawn["datasets"][1]["data"] == [100.0, None]
    by_line = page.evaluate("Chart.getChart('chart-yield-line').data")
    assert by_line["labels"] == ["L1", "L2"]
    assert by_line["datasets"][0]["data"] == [50.0, 50.0]

    found = violations(page, axe_source)
    assert found == [], "\n".join(found)
    shoot(page, screenshot_dir, "dashboard-yield")

    # A picker filters the whole dashboard: the yield card and the summary totals.
    expect(body).to_have_attribute("data-dashboard", "ready")
    with (
        page.expect_response(lambda r: "/api/dashboard/summary?" in r.url) as summary,
        page.expect_response(lambda r: "/api/spc/p-chart?" in r.url) as p_chart,
    ):
        page.select_option("#d-line", "L2")
    assert "line=L2" in summary.value.url
    assert "line=L2" in p_chart.value.url
    assert sum(p["boards"] for p in p_chart.value.json()["points"]) == 2
    assert summary.value.json()["total_images"] == 2
    expect(page.locator("[data-stat='Images']")).to_have_text("2")
    expect(_row(page, "line", "L1")).to_have_count(0)
    expect(_row(page, "product", "PROD-A").locator("[data-first-pass]")).to_have_text("0.0%")
    expect(body).to_have_attribute("data-board-yield", "ready")
    found = violations(page, axe_source)
    assert found == [], "\n".join(found)
