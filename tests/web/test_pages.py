"""The web UI over plain HTTP: pages, vendored assets, and the dashboard aggregates
(`app/web`, `app/api/dashboard.py`) checked against the database."""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2
import pytest

from app.web.pages import STATIC_DIR
from tests.support import db_rows

PAGES = ["/", "/batch", "/history", "/review", "/dashboard", "/models", "/admin/webhooks"]
NAV_LINKS = [
    'href="/"',
    'href="/batch"',
    'href="/history"',
    'href="/review"',
    'href="/dashboard"',
    'href="/admin/webhooks"',
    'href="/models"',
]
EXTERNAL = re.compile(r"""(?:src|href|action)\s*=\s*["']?\s*(?:https?:)?//""", re.IGNORECASE)

pytestmark = pytest.mark.deeppcb


def _pages(inspected: list[dict[str, Any]]) -> list[str]:
    return [*PAGES, f"/results/{inspected[0]['img_unique_id']}", "/board/SN-ANY"]


def test_every_page_has_the_nav_bar(client: httpx2.Client, inspected: list[dict[str, Any]]) -> None:
    for path in _pages(inspected):
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith("text/html")
        html = response.text
        assert html.count('id="main-nav"') == 1, path
        for link in NAV_LINKS:
            assert link in html, (path, link)
        assert 'aria-current="page"' in html, path


def test_pages_fetch_nothing_from_outside(
    client: httpx2.Client, inspected: list[dict[str, Any]]
) -> None:
    for path in _pages(inspected):
        html = client.get(path).text
        assert not EXTERNAL.search(html), f"{path} references an external URL"
        for asset in re.findall(r'(?:src|href)="(/static/[^"?]+)', html):
            assert client.get(asset).status_code == 200, asset


def test_own_scripts_and_styles_name_no_external_host() -> None:
    """Our JS/CSS may name the SVG namespace, but never load anything from a host;
    the vendored files carry no source-map or other URL that a browser would fetch."""
    for file in [*STATIC_DIR.glob("js/*.js"), *STATIC_DIR.glob("css/*.css")]:
        text = file.read_text()
        urls = set(re.findall(r"https?://[^\s\"'`)]+", text)) - {"http://www.w3.org/2000/svg"}
        assert not urls, (file.name, urls)
    for file in [
        *STATIC_DIR.glob("vendor/bootstrap/*/*.*s"),
        *STATIC_DIR.glob("vendor/chartjs/*.js"),
    ]:
        assert "sourceMappingURL" not in file.read_text()[-300:], file.name


@pytest.mark.parametrize(
    ("path", "media_type", "starts_with"),
    [
        ("/static/vendor/bootstrap/css/bootstrap.min.css", "text/css", "@charset"),
        ("/static/vendor/bootstrap/js/bootstrap.bundle.min.js", "javascript", "/*!"),
        ("/static/vendor/chartjs/chart.umd.min.js", "javascript", "/*!"),
        ("/static/js/common.js", "javascript", "//"),
        ("/static/css/app.css", "text/css", "/*"),
    ],
)
def test_vendored_assets_are_served(
    client: httpx2.Client, path: str, media_type: str, starts_with: str
) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert media_type in response.headers["content-type"]
    assert response.text.lstrip().startswith(starts_with)
    assert len(response.content) > 1000


def test_vendored_libraries_keep_their_licences() -> None:
    assert "MIT" in (STATIC_DIR / "vendor/bootstrap/LICENSE").read_text()
    assert "MIT" in (STATIC_DIR / "vendor/chartjs/LICENSE.md").read_text()


def test_pages_carry_the_upload_limits(client: httpx2.Client, agent: Any) -> None:
    html = client.get("/batch").text
    blob = re.search(r'<script id="upload-limits" type="application/json">(.*?)</script>', html)
    assert blob
    limits = json.loads(blob.group(1))
    assert limits["max_file_size_bytes"] == agent.settings.max_file_size_bytes
    assert limits["max_batch_size"] == agent.settings.max_batch_size
    assert set(limits["accepted_types"]) == {"image/jpeg", "image/png", "image/tiff", "image/bmp"}


def test_page_routes_stay_out_of_the_api_schema(client: httpx2.Client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "/history" not in paths
    assert "/api/dashboard/heatmap" in paths


# ---- dashboard aggregates ------------------------------------------------------------------


def _class_regions(database_url: str) -> dict[str, int]:
    rows = db_rows(
        database_url, "SELECT class_name, sum(total_regions) FROM classes GROUP BY class_name"
    )
    return {name: int(n) for name, n in rows}


def test_summary_matches_the_database(
    client: httpx2.Client, inspected: list[dict[str, Any]], database_url: str
) -> None:
    summary = client.get("/api/dashboard/summary").json()
    expected = _class_regions(database_url)
    from_uploads: Counter[str] = Counter()
    for answer in inspected:
        from_uploads.update(answer["defect_classes"])
    (images,) = db_rows(database_url, "SELECT count(*) FROM images")[0]
    assert summary["total_images"] == images >= 3
    assert {c["class_name"]: c["regions"] for c in summary["classes"]} == expected
    assert summary["total_defects"] == sum(expected.values())
    # The three uploads are in there (other tests of the module may add more).
    for name, n in from_uploads.items():
        assert expected[name] >= n
    regions = [c["regions"] for c in summary["classes"]]
    assert regions == sorted(regions, reverse=True)
    cumulative = [c["cumulative_share"] for c in summary["classes"]]
    assert cumulative == sorted(cumulative)
    assert cumulative[-1] == pytest.approx(1.0)
    assert sum(c["share"] for c in summary["classes"]) == pytest.approx(1.0)


def test_summary_of_a_range_without_inspections_is_empty(client: httpx2.Client) -> None:
    summary = client.get(
        "/api/dashboard/summary", params={"start_date": "2001-01-01", "end_date": "2001-01-31"}
    ).json()
    assert summary["total_images"] == 0
    assert summary["total_defects"] == 0
    assert summary["classes"] == []


def test_defects_per_day_counts_today(
    client: httpx2.Client, inspected: list[dict[str, Any]], database_url: str
) -> None:
    answer = client.get("/api/dashboard/defects-per-day").json()
    today = datetime.now(UTC).date()
    assert len(answer["days"]) == 30
    assert answer["end_date"] == today.isoformat()
    assert answer["start_date"] == (today - timedelta(days=29)).isoformat()
    by_day = {d["day"]: d for d in answer["days"]}
    row = by_day[today.isoformat()]
    (images,) = db_rows(database_url, "SELECT count(*) FROM images")[0]
    expected = _class_regions(database_url)
    assert row["images"] == images
    assert row["by_class"] == expected
    assert row["defects"] == sum(expected.values())
    assert all(d["images"] == 0 and d["defects"] == 0 for k, d in by_day.items() if k != str(today))


def test_defects_per_day_of_one_class(
    client: httpx2.Client, inspected: list[dict[str, Any]], database_url: str
) -> None:
    name, regions = max(_class_regions(database_url).items(), key=lambda kv: kv[1])
    answer = client.get("/api/dashboard/defects-per-day", params={"class_name": name}).json()
    today = datetime.now(UTC).date().isoformat()
    row = next(d for d in answer["days"] if d["day"] == today)
    assert row["by_class"] == {name: regions}
    assert row["defects"] == regions


def test_defects_per_day_refuses_a_reversed_or_huge_range(client: httpx2.Client) -> None:
    reversed_range = client.get(
        "/api/dashboard/defects-per-day",
        params={"start_date": "2026-03-01", "end_date": "2026-02-01"},
    )
    assert reversed_range.status_code == 422
    assert reversed_range.json()["detail"] == "start_date 2026-03-01 is after end_date 2026-02-01"
    huge = client.get(
        "/api/dashboard/defects-per-day",
        params={"start_date": "2000-01-01", "end_date": "2026-01-01"},
    )
    assert huge.status_code == 422
    assert "at most 731" in huge.json()["detail"]


def _expected_grid(database_url: str, bins: int, class_name: str | None = None) -> list[list[int]]:
    rows = db_rows(
        database_url,
        "SELECT r.centroid_x, r.centroid_y, i.image_width, i.image_height, c.class_name"
        " FROM regions r JOIN images i USING (img_unique_id)"
        " JOIN classes c ON c.class_unique_id = r.class_unique_id",
    )
    grid = [[0] * bins for _ in range(bins)]
    for x, y, width, height, name in rows:
        if class_name and name != class_name:
            continue
        col = min(int(bins * x / width), bins - 1)
        row = min(int(bins * y / height), bins - 1)
        grid[row][col] += 1
    return grid


@pytest.mark.parametrize("bins", [8, 32])
def test_heatmap_counts_every_centroid_in_its_cell(
    client: httpx2.Client, inspected: list[dict[str, Any]], database_url: str, bins: int
) -> None:
    answer = client.get("/api/dashboard/heatmap", params={"bins": bins}).json()
    expected = _expected_grid(database_url, bins)
    (regions,) = db_rows(database_url, "SELECT count(*) FROM regions")[0]
    assert answer["bins"] == bins
    assert answer["counts"] == expected
    assert answer["total_regions"] == regions > 0
    assert answer["max_count"] == max(max(line) for line in expected)


def test_heatmap_of_one_class(
    client: httpx2.Client, inspected: list[dict[str, Any]], database_url: str
) -> None:
    name = next(iter(inspected[0]["defect_classes"]))
    answer = client.get("/api/dashboard/heatmap", params={"bins": 16, "class_name": name}).json()
    assert answer["counts"] == _expected_grid(database_url, 16, name)
    assert answer["total_regions"] == _class_regions(database_url)[name]


def test_heatmap_refuses_a_silly_grid(client: httpx2.Client) -> None:
    response = client.get("/api/dashboard/heatmap", params={"bins": 1000})
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_request"
