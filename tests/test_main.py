"""The app as a whole: API docs served offline, OpenAPI tags, unknown routes."""

from __future__ import annotations

import re

import httpx2


def test_swagger_ui_is_served_from_vendored_assets(client: httpx2.Client) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    urls = re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", page.text)
    assert urls, page.text
    assert not [u for u in urls if u.startswith(("http://", "https://", "//"))]
    for url in urls:
        assert client.get(url).status_code == 200, url


def test_openapi_groups_routes_by_tag_and_documents_errors(client: httpx2.Client) -> None:
    spec = client.get("/openapi.json").json()
    tags = {tag for path in spec["paths"].values() for op in path.values() for tag in op["tags"]}
    assert {"Upload", "Query", "Download", "System"} <= tags
    upload = spec["paths"]["/api/upload"]["post"]
    assert "multipart/form-data" in upload["requestBody"]["content"]
    assert {"400", "413", "415", "502", "503"} <= set(upload["responses"])


def test_unknown_route_is_a_json_404(client: httpx2.Client) -> None:
    response = client.get("/api/nothing-here")
    assert response.status_code == 404
    assert response.json()["detail"] == (
        "no such endpoint: GET /api/nothing-here; the API answers at the root (the PRD's"
        " paths, e.g. /upload, /images) and under /api; see /docs"
    )
