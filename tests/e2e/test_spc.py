"""The Dashboard's control charts in Chromium: the p- and u-chart drawn from /api/spc/*,
the flagged point marked, and the alarm badge counting the open alarms.

Twenty earlier days of boards (40 a day, 4 defective) are inserted directly into the
agent's database for volume (`add_image` of the rollup tests); today's boards are three
DeepPCB images inspected through the agent, all with defects, so today is beyond the
p-chart's upper limit.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2
from playwright.sync_api import Page, expect

from tests.e2e.conftest import shoot
from tests.services.history.test_rollups import _conn, add_image
from tests.support import AgentServer


def test_dashboard_draws_control_charts_and_the_alarm_badge(
    page: Page,
    agent: AgentServer,
    inspected: list[dict[str, Any]],
    database_url: str,
    screenshot_dir: Any,
) -> None:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    with _conn(database_url) as conn, conn.cursor() as cur:
        for d in range(1, 21):
            day = today - timedelta(days=d)
            for n in range(40):
                classes = {"Short": [(5.0, 5.0)]} if n < 4 else {}
                img_id = f"{day:%Y%m%d}_{n:06d}_SPC{n:03d}"
                add_image(cur, img_id, day + timedelta(hours=8, minutes=n), classes)
        conn.commit()
    headers = {"X-API-Key": agent.api_key}  # type: ignore[attr-defined]
    with httpx2.Client(base_url=agent.url, headers=headers, timeout=30) as c:
        expected = c.get("/api/spc/p-chart").json()
    open_alarms = [a for a in expected["alarms"] if a["open"]]
    assert open_alarms, "today's all-defective boards are beyond the upper limit"

    page.goto(agent.url + "/dashboard")
    expect(page.locator("body")).to_have_attribute("data-spc", "ready")
    values = page.evaluate("Chart.getChart('chart-spc-p').data.datasets[0].data")
    assert values == [p["value"] for p in expected["points"]]
    ucl = page.evaluate("Chart.getChart('chart-spc-p').data.datasets[2].data")
    assert ucl[-1] == expected["points"][-1]["ucl"]
    marked = page.evaluate("Chart.getChart('chart-spc-p').data.datasets[0].pointStyle")
    assert marked[-1] == "triangle"
    assert marked[0] == "circle"
    badge = page.locator("#spc-badge")
    expect(badge).to_have_attribute("data-open-alarms", str(len(open_alarms)))
    expect(badge).to_contain_text("open alarm")
    expect(page.locator("#spc-alarms")).to_contain_text("rule 1")
    assert page.evaluate("Chart.getChart('chart-spc-u').data.datasets[0].data.length") == 21
    # No SHIFTS: no per-shift choice to fail on.
    expect(page.locator("#spc-subgroup option[value=shift]")).to_have_count(0)
    shoot(page, screenshot_dir, "spc-dashboard")
