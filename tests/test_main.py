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


def test_every_openapi_schema_has_an_example_that_is_valid(client: httpx2.Client) -> None:
    from pydantic import BaseModel

    from app.models import (
        boards,
        context,
        dashboard,
        golden,
        model_answers,
        model_compare,
        replay,
        review,
        review_audit,
        schemas,
        spc,
        webhook_schemas,
    )

    spec = client.get("/openapi.json").json()
    modules = (
        schemas,
        dashboard,
        review,
        review_audit,
        golden,
        spc,
        boards,
        context,
        model_compare,
        model_answers,
        replay,
        webhook_schemas,
    )
    models = {
        name: obj
        for module in modules
        for name, obj in vars(module).items()
        if isinstance(obj, type) and issubclass(obj, BaseModel)
    }
    components = spec["components"]["schemas"]
    assert "HTTPValidationError" not in components  # the real 422 body is documented
    for name, schema in components.items():
        assert schema.get("examples"), f"{name} has no example"
        model = models[name.removesuffix("-Output").removesuffix("-Input")]
        for example in schema["examples"]:
            model.model_validate(example)


def test_openapi_documents_media_types_and_the_real_422_body(client: httpx2.Client) -> None:
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]

    def content(path: str, status: str = "200") -> set[str]:
        return set(paths[path]["get"]["responses"][status]["content"])

    assert content("/api/download/image/{img_unique_id}/{kind}") == {
        "image/png",
        "image/jpeg",
        "image/tiff",
        "image/bmp",
    }
    assert content("/api/download/json/{img_unique_id}") == {"application/json"}
    assert content("/api/download/batch/{batch_id}") == {"application/zip"}
    assert content("/api/images/{img_unique_id}/thumbnail") == {"image/jpeg"}
    for path, operations in paths.items():
        for method, operation in operations.items():
            assert method != "head", path  # HEAD works but is not documented twice
            if operation.get("parameters"):
                body = operation["responses"]["422"]["content"]["application/json"]
                assert body["schema"]["$ref"].endswith("/ValidationErrorBody"), path
    real = client.get("/api/images", params={"limit": 0}).json()
    assert set(real) >= {"error", "detail", "errors"}
    assert paths["/api/upload"]["post"]["requestBody"]["content"]["multipart/form-data"][
        "encoding"
    ]["image"]["contentType"].startswith("image/jpeg")
