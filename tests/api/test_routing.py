"""The API at the PRD's root paths and under /api (one definition each), HEAD and OPTIONS."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Any

import httpx2
import pytest
from fastapi import APIRouter, Depends, FastAPI
from fastapi.routing import APIRoute, iter_route_contexts

from app.api.routing import include_api
from app.main import create_app
from tests.support import AgentServer, template_of

PAGES = ["/", "/batch", "/history", "/dashboard", "/models"]
# Routes served under /api only: their root path is a web page (`/models`, the Models
# page), and none is a PRD path.
API_ONLY = ("/api/models",)


@pytest.fixture(scope="module")
def inspected(agent: AgentServer, deeppcb: list[Path]) -> dict[str, str]:
    """A DeepPCB image inspected in a batch: its id and batch id; its DeepPCB template is
    the golden image `golden_id`."""
    with httpx2.Client(base_url=agent.url, timeout=60) as c:
        files = [("images", (deeppcb[30].name, deeppcb[30].read_bytes()))]
        manifest = {"manifest": '{"board_serial": "SN-ROUTING"}'}
        body = c.post(
            "/api/upload/batch", params={"wait": "true"}, files=files, data=manifest
        ).json()
        golden = c.put(
            "/api/golden/routing",
            files={"image": (deeppcb[30].name, template_of(deeppcb[30]))},
        )
        assert golden.status_code == 201, golden.text
        # A webhook endpoint for an event that does not happen here: its deliveries stay [].
        hook = c.post(
            "/api/webhooks", json={"url": "http://127.0.0.1:9/hook", "events": ["spc.alarm"]}
        )
        assert hook.status_code == 201, hook.text
        # A replay of that batch through the agent's own model service (docs/replay.md).
        replay = c.post(
            "/api/replays",
            json={"model_url": agent.settings.segformer_service_url, "batch_id": body["batch_id"]},
        )
        assert replay.status_code == 202, replay.text
    return {
        "endpoint_id": str(hook.json()["id"]),
        "img_unique_id": body["accepted"][0]["img_unique_id"],
        "batch_id": body["batch_id"],
        "run_id": str(replay.json()["run_id"]),
        "kind": "overlay",
        "golden_id": "routing",
        "board_serial": "SN-ROUTING",
        "day": date.today().isoformat(),
    }


def api_routes(agent: AgentServer) -> list[Any]:
    """Every route of the agent's app, flattened (FastAPI's own route walk)."""
    return list(iter_route_contexts(create_app(agent.settings).routes))


def test_every_api_route_has_a_hidden_root_twin_from_the_same_definition(
    agent: AgentServer,
) -> None:
    routes = api_routes(agent)
    api = [
        r for r in routes if isinstance(r.original_route, APIRoute) and r.path.startswith("/api/")
    ]
    assert len(api) >= 18
    by_key = {(r.path, frozenset(r.methods or ())): r for r in routes}
    for route in api:
        if route.path.startswith(API_ONLY):
            twin = by_key.get((route.path.removeprefix("/api"), frozenset(route.methods)))
            assert twin is None or twin.original_route is not route.original_route
            continue
        twin = by_key.get((route.path.removeprefix("/api"), frozenset(route.methods)))
        assert twin is not None, f"{route.methods} {route.path} has no root alias"
        assert twin.original_route is route.original_route  # one definition
        assert route.include_in_schema
        assert not twin.include_in_schema


def test_prd_fr4_paths_are_at_the_root_and_documented_once(agent: AgentServer) -> None:
    prd = {
        ("POST", "/upload"),
        ("POST", "/upload/batch"),
        ("GET", "/images"),
        ("GET", "/images/{img_unique_id}"),
        ("GET", "/images/{img_unique_id}/classes"),
        ("GET", "/images/{img_unique_id}/regions"),
        ("GET", "/download/image/{img_unique_id}/{kind}"),
        ("GET", "/download/batch/{batch_id}"),
        ("GET", "/download/json/{img_unique_id}"),
        ("GET", "/query/defects"),
        ("GET", "/health"),
        ("GET", "/stats"),
    }
    served = {(m, r.path) for r in api_routes(agent) for m in (r.methods or ())}
    assert prd <= served
    spec = create_app(agent.settings).openapi()
    for method, path in prd:
        assert method.lower() in spec["paths"][f"/api{path}"]
        assert path not in spec["paths"]
    assert "at the root" in spec["info"]["description"]
    assert "PRD" in spec["info"]["description"]


def _concrete(path: str, values: dict[str, str]) -> str:
    return re.sub(r"{(\w+)}", lambda m: values[m.group(1)], path)


def _comparable(response: httpx2.Response) -> Any:
    if response.headers.get("content-type", "").startswith("application/json"):
        body = response.json()
        if isinstance(body, dict) and "disk" in body:  # free space moves between calls
            body["disk"].pop("free_bytes")
        return body
    return response.content


def test_both_copies_of_every_get_route_answer_the_same(
    agent: AgentServer, client: httpx2.Client, inspected: dict[str, str]
) -> None:
    checked = 0
    for route in api_routes(agent):
        if not route.path.startswith("/api/") or "GET" not in route.methods:
            continue
        if route.path.startswith(API_ONLY):
            continue
        path = _concrete(route.path, inspected)
        if path.endswith("/golden/crop"):
            path += "?x=0&y=0&width=16&height=16"
        if path.endswith("/spc/u-chart"):
            path += "?class=short"
        headers = {"X-Reviewer": "routing-check"}  # the review routes ask who reviews
        under_api = client.get(path, headers=headers)
        at_root = client.get(path.removeprefix("/api"), headers=headers)
        if "/review/audit/images/" in route.path:  # not in the double-review sample: 404
            assert under_api.status_code == at_root.status_code == 404, (path, under_api.text)
            continue
        assert under_api.status_code == at_root.status_code == 200, (path, under_api.text)
        assert under_api.headers["content-type"] == at_root.headers["content-type"]
        # ZIP entries carry the time they were written, reports the time they were made,
        # a dataset's manifest the time it was made, a replay its progress.
        changing = ("/download/batch/", "/reports/", "/dataset.zip", "/replays/")
        if not any(part in path for part in changing):
            assert _comparable(under_api) == _comparable(at_root), path
        checked += 1
    assert checked >= 14


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("POST", "/upload", {"files": {"wrong_field": ("a.png", b"x")}}),
        ("POST", "/upload/batch", {"content": b"not multipart"}),
        ("POST", "/images/20990101_000000_NOPE00/retry", {}),
        ("DELETE", "/images/20990101_000000_NOPE00", {}),
        ("GET", "/images/20990101_000000_NOPE00/regions", {}),
        ("GET", "/images", {"params": {"limit": 101}}),
        ("POST", "/webhooks/424242/rotate-secret", {}),
    ],
)
def test_both_copies_refuse_bad_requests_alike(
    client: httpx2.Client, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    under_api = client.request(method, f"/api{path}", **kwargs)
    at_root = client.request(method, path, **kwargs)
    assert 400 <= at_root.status_code < 500
    # Each answer has its own request id; everything else is the same.
    bodies = [
        {k: v for k, v in r.json().items() if k != "request_id"} for r in (under_api, at_root)
    ]
    assert (under_api.status_code, bodies[0]) == (at_root.status_code, bodies[1])


def test_root_upload_answers_like_api_upload(
    client: httpx2.Client, agent: AgentServer, deeppcb: list[Path]
) -> None:
    image = deeppcb[31]
    answers = [
        client.post(path, files={"image": (image.name, image.read_bytes())}).json()
        for path in ("/upload", "/api/upload")
    ]
    assert answers[0]["img_unique_id"] != answers[1]["img_unique_id"]
    assert set(answers[0]) == set(answers[1])
    assert answers[0]["defect_classes"] == answers[1]["defect_classes"]
    assert client.get(f"/images/{answers[0]['img_unique_id']}").status_code == 200


def test_no_alias_shadows_a_web_page(client: httpx2.Client) -> None:
    for page in [*PAGES, "/results/20260225_103045_ABC123"]:
        response = client.get(page)
        assert response.status_code == 200, page
        assert response.headers["content-type"].startswith("text/html"), page


def test_unknown_root_path_says_where_the_api_is(client: httpx2.Client) -> None:
    response = client.get("/imagez")
    assert response.status_code == 404
    detail = response.json()["detail"]
    for hint in ("root", "/api", "/docs"):
        assert hint in detail


def test_head_answers_headers_of_the_get_without_a_body(
    client: httpx2.Client, inspected: dict[str, str], agent: AgentServer
) -> None:
    img_id, batch_id = inspected["img_unique_id"], inspected["batch_id"]
    for path in (
        f"/download/image/{img_id}/overlay",
        f"/api/download/image/{img_id}/input",
        f"/download/json/{img_id}",
        f"/images/{img_id}/thumbnail",
    ):
        got, head = client.get(path), client.head(path)
        assert head.status_code == 200, path
        assert head.content == b""
        assert head.headers["content-type"] == got.headers["content-type"]
        assert int(head.headers["content-length"]) == len(got.content)
        assert head.headers["content-disposition"] == got.headers["content-disposition"]
    zip_head = client.head(f"/download/batch/{batch_id}")
    assert zip_head.status_code == 200
    assert zip_head.headers["content-type"] == "application/zip"
    assert zip_head.content == b""
    for path in ("/images", "/health", "/stats", "/", "/static/css/app.css"):
        head = client.head(path)
        assert head.status_code == 200, path
        assert head.content == b""
    missing = client.head("/download/json/20990101_000000_NOPE00")
    assert missing.status_code == 404
    assert missing.content == b""


def test_head_of_a_post_only_route_is_405_with_allow(client: httpx2.Client) -> None:
    response = client.head("/upload")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST, OPTIONS"


@pytest.mark.parametrize(
    ("path", "allow"),
    [
        ("/upload", "POST, OPTIONS"),
        ("/api/upload/batch", "POST, OPTIONS"),
        ("/images/20260225_103045_ABC123", "GET, HEAD, DELETE, OPTIONS"),
        ("/api/images/20260225_103045_ABC123", "GET, HEAD, DELETE, OPTIONS"),
        ("/download/image/20260225_103045_ABC123/mask", "GET, HEAD, OPTIONS"),
        ("/health", "GET, HEAD, OPTIONS"),
        ("/history", "GET, HEAD, OPTIONS"),
        ("/static/js/upload.js", "GET, HEAD, OPTIONS"),
    ],
)
def test_options_answers_204_with_the_allowed_methods(
    client: httpx2.Client, path: str, allow: str
) -> None:
    response = client.options(path)
    assert response.status_code == 204
    assert response.headers["allow"] == allow
    assert response.content == b""


def test_options_of_an_unknown_path_is_404_and_wrong_method_lists_allow(
    client: httpx2.Client,
) -> None:
    assert client.options("/nothing-here").status_code == 404
    response = client.put("/images/20260225_103045_ABC123")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD, DELETE, OPTIONS"
    assert response.json()["error"] == "http_error"


def test_dependencies_of_a_router_and_of_its_inclusion_guard_both_copies() -> None:
    """What a router carries (e.g. an API-key check) applies at the root and under /api."""

    def on_router() -> None: ...

    def on_include() -> None: ...

    router = APIRouter(dependencies=[Depends(on_router)])

    @router.get("/things/{thing_id}")
    async def thing(thing_id: int) -> int:
        return thing_id

    app = FastAPI()
    include_api(app, router, dependencies=[Depends(on_include)])
    copies = [r for r in iter_route_contexts(app.routes) if r.path.endswith("/things/{thing_id}")]
    assert sorted(r.path for r in copies) == ["/api/things/{thing_id}", "/things/{thing_id}"]
    for copy in copies:
        calls = {d.call for d in copy.dependant.dependencies}
        assert {on_router, on_include} <= calls, copy.path
