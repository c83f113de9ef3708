"""API keys, scopes, signed links, web sessions, CSRF, CORS and security headers, against
an agent that requires keys (AUTH_MODE=required), over real HTTP and real PostgreSQL."""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx2
import pytest
from PIL import Image as PILImage
from pythonjsonlogger.json import JsonFormatter

from app.config import Settings
from app.main import create_app
from app.services.model_service.reference import ReferenceService
from app.services.security.signing import LinkSigner, load_secret
from tests.conftest import agent_settings
from tests.support import (
    AgentServer,
    create_api_key,
    db_execute,
    db_rows,
    make_image,
    serve_agent,
)

OPEN = "open"


@pytest.fixture(scope="module")
def secured(
    tmp_path_factory: pytest.TempPathFactory,
    database_url: str,
    reference_service: ReferenceService,
) -> Iterator[AgentServer]:
    """An agent that requires keys, lets http://mes.example call it (CORS)."""
    settings = agent_settings(
        tmp_path_factory.mktemp("data"),
        database_url,
        reference_service.url,
        auth_mode="required",
        cors_origins="http://mes.example, http://qc.example/",
    )
    with serve_agent(settings) as server:
        yield server


@pytest.fixture(scope="module")
def keys(secured: AgentServer) -> dict[str, str]:
    """One key per scope; the admin key is made directly, the others through the API."""
    admin = create_api_key(secured.settings.database_url or "", "test-admin", "admin")
    made = {"admin": admin}
    with httpx2.Client(base_url=secured.url, headers={"X-API-Key": admin}) as c:
        for scope in ("read", "write"):
            response = c.post("/api/keys", json={"name": f"test-{scope}", "scope": scope})
            assert response.status_code == 201, response.text
            made[scope] = response.json()["key"]
    return made


@pytest.fixture(scope="module")
def stored(secured: AgentServer, keys: dict[str, str]) -> dict[str, Any]:
    """One inspection made with the write key (its upload answer)."""
    with httpx2.Client(base_url=secured.url, timeout=60) as c:
        response = c.post(
            "/api/upload",
            files={"image": ("board.png", make_image())},
            headers={"Authorization": f"Bearer {keys['write']}"},
        )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def _request(
    agent: AgentServer, method: str, path: str, key: str | None, **kwargs: Any
) -> httpx2.Response:
    headers = {"X-API-Key": key} if key else {}
    with httpx2.Client(base_url=agent.url, timeout=60) as c:
        return c.request(method, path, headers=headers, **kwargs)


# (method, path, class): one request per route of the API and the UI; `{id}` is the
# stored inspection, `{batch}` a batch. Each class needs that scope (or higher).
ROUTES = [
    ("GET", "/api/health", OPEN),
    ("GET", "/api/health/live", OPEN),
    ("GET", "/api/health/ready", OPEN),
    ("GET", "/docs", OPEN),
    ("GET", "/openapi.json", OPEN),
    ("GET", "/static/css/app.css", OPEN),
    ("GET", "/signin", OPEN),
    ("GET", "/api/images", "read"),
    ("GET", "/api/images/{id}", "read"),
    ("GET", "/api/images/{id}/classes", "read"),
    ("GET", "/api/images/{id}/regions", "read"),
    ("GET", "/api/images/{id}/thumbnail", "read"),
    ("GET", "/api/query/defects", "read"),
    ("GET", "/api/export/regions.csv", "read"),
    ("GET", "/api/export/coco.json", "read"),
    ("GET", "/api/export/dataset.zip", "read"),
    ("GET", "/api/stats", "read"),
    ("GET", "/metrics", "read"),
    ("GET", "/api/batches/nosuchbatch", "read"),
    ("GET", "/api/download/image/{id}/overlay", "read"),
    ("GET", "/api/download/json/{id}", "read"),
    ("GET", "/api/download/batch/nosuchbatch", "read"),
    ("GET", "/download/image/{id}/mask", "read"),
    ("GET", "/api/dashboard/summary", "read"),
    ("GET", "/api/dashboard/defects-per-day", "read"),
    ("GET", "/api/dashboard/heatmap", "read"),
    ("GET", "/api/dashboard/review", "read"),
    ("GET", "/api/review/next", "read"),
    ("GET", "/api/review/batches", "read"),
    ("GET", "/api/images/{id}/review", "read"),
    ("PUT", "/api/images/{id}/disposition", "write"),
    ("PUT", "/api/regions/1/verdict", "write"),
    ("GET", "/api/review/figures", "read"),
    ("GET", "/api/review/audit/next", "read"),
    ("GET", "/api/review/audit/images/{id}", "read"),
    ("PUT", "/api/review/audit/regions/1/verdict", "write"),
    ("GET", "/api/review/reasons", "read"),
    ("PUT", "/api/review/reasons", "admin"),
    ("GET", "/api/dashboard/false-calls/reasons", "read"),
    ("POST", "/api/upload", "write"),
    ("POST", "/api/upload/batch", "write"),
    ("POST", "/api/images/{id}/retry", "write"),
    ("POST", "/api/batches/B_20990101_000000_NOPE00/retry", "write"),
    ("DELETE", "/api/images/nosuchimage", "admin"),
    ("GET", "/api/keys", "admin"),
    ("POST", "/api/keys", "admin"),
    ("DELETE", "/api/keys/nosuchkey", "admin"),
    ("POST", "/api/replays", "admin"),
    ("GET", "/api/replays/999999", "admin"),
    ("POST", "/api/replays/999999/resume", "admin"),
    ("GET", "/api/images/{id}/golden", "read"),
    ("GET", "/api/images/{id}/golden/crop", "read"),
    ("GET", "/api/golden/nosuchgolden/image", "read"),
    ("GET", "/api/golden", "admin"),
    ("PUT", "/api/golden/nosuchgolden", "admin"),
    ("DELETE", "/api/golden/nosuchgolden", "admin"),
    ("GET", "/api/boards/SN-NOSUCHBOARD", "read"),
    ("GET", "/api/dashboard/board-yield", "read"),
    ("GET", "/api/dashboard/board-contexts", "read"),
    ("GET", "/api/spc/p-chart", "read"),
    ("GET", "/api/spc/u-chart", "read"),
    ("GET", "/api/spc/alarms", "read"),
    ("GET", "/api/reports/2026-02-25?format=xlsx", "read"),
    ("GET", "/api/webhooks", "admin"),
    ("POST", "/api/webhooks", "admin"),
    ("DELETE", "/api/webhooks/424242", "admin"),
    ("GET", "/api/webhooks/424242/deliveries", "admin"),
    ("POST", "/api/webhooks/424242/rotate-secret", "admin"),
    ("POST", "/api/webhooks/deliveries/424242/redeliver", "admin"),
    ("GET", "/api/models", "read"),
    ("GET", "/api/models/compare", "read"),
    ("GET", "/api/models/answers/1", "read"),
    ("PUT", "/api/models/answer-regions/1/verdict", "write"),
]
RANK = {None: -1, "read": 0, "write": 1, "admin": 2}


@pytest.mark.parametrize("scope", [None, "read", "write", "admin"])
def test_each_scope_against_each_route_class(
    secured: AgentServer, keys: dict[str, str], stored: dict[str, Any], scope: str | None
) -> None:
    key = keys[scope] if scope else None
    for method, template, needed in ROUTES:
        path = template.format(id=stored["img_unique_id"])
        response = _request(secured, method, path, key)
        where = f"{method} {path} with {scope or 'no'} key"
        if needed == OPEN or RANK[scope] >= RANK[needed]:
            assert response.status_code not in (401, 403), f"{where}: {response.text}"
        elif scope is None:
            assert response.status_code == 401, where
            body = response.json()
            assert body["error"] == "not_authenticated"
            assert "aoi-agent keys create" in body["detail"]
            assert response.headers["www-authenticate"].startswith("Bearer")
        else:
            assert response.status_code == 403, where
            body = response.json()
            assert body["error"] == "insufficient_scope"
            assert f"scope '{needed}'" in body["detail"]
            assert f"--scope {needed}" in body["detail"]


def test_every_api_operation_is_covered_by_the_route_table(secured: AgentServer) -> None:
    """A new route must be added to ROUTES (and so to the scope matrix) or be open."""
    schema = httpx2.get(secured.url + "/openapi.json").json()

    def covers(tested: str, documented: str) -> bool:
        pairs = list(zip(tested.split("/"), documented.split("/"), strict=False))
        same_length = tested.count("/") == documented.count("/")
        return same_length and all(d.startswith("{") or t == d for t, d in pairs)

    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert any(m == method.upper() and covers(p, path) for m, p, _ in ROUTES), (
                f"{method.upper()} {path} is not in ROUTES"
            )
            secured_op = bool(operation.get("security"))
            assert secured_op == (not path.startswith("/api/health")), path


def test_openapi_declares_bearer_and_x_api_key(secured: AgentServer) -> None:
    schema = httpx2.get(secured.url + "/openapi.json").json()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["Bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schemes["Bearer"]["description"],
    }
    assert schemes["X-API-Key"]["in"] == "header"
    assert schema["paths"]["/api/images"]["get"]["security"] == [
        {"Bearer": []},
        {"X-API-Key": []},
    ]


def test_wrong_revoked_and_malformed_keys_are_refused(
    secured: AgentServer, keys: dict[str, str]
) -> None:
    made = create_api_key(secured.settings.database_url or "", "short-lived", "read")
    assert _request(secured, "GET", "/api/images", made).status_code == 200
    for bad in ("nonsense", made[:-1] + ("A" if made[-1] != "A" else "B"), "aoi_zz"):
        response = _request(secured, "GET", "/api/images", bad)
        assert response.status_code == 401
        assert "not valid" in response.json()["detail"]
    revoked = _request(secured, "DELETE", "/api/keys/short-lived", keys["admin"])
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"] is not None
    assert _request(secured, "GET", "/api/images", made).status_code == 401


def test_keys_are_stored_as_salted_hashes_with_last_use(
    secured: AgentServer, keys: dict[str, str]
) -> None:
    assert _request(secured, "GET", "/api/stats", keys["read"]).status_code == 200
    rows = db_rows(
        secured.settings.database_url or "",
        "SELECT name, prefix, key_hash, last_used_at FROM api_keys WHERE name = 'test-read'",
    )
    _, prefix, key_hash, last_used = rows[0]
    assert keys["read"].startswith(prefix + "_")
    assert key_hash.startswith("scrypt$")
    assert keys["read"] not in key_hash
    assert keys["read"].split("_", 2)[2] not in key_hash
    assert last_used is not None
    listed = _request(secured, "GET", "/api/keys", keys["admin"]).json()
    assert {k["name"] for k in listed} >= {"test-admin", "test-read", "test-write"}
    assert all("key" not in k and "key_hash" not in k for k in listed)


def test_key_management_refuses_bad_and_duplicate_names(
    secured: AgentServer, keys: dict[str, str]
) -> None:
    dup = _request(
        secured, "POST", "/api/keys", keys["admin"], json={"name": "test-read", "scope": "read"}
    )
    assert dup.status_code == 409
    assert dup.json()["error"] == "key_name_taken"
    bad = _request(secured, "POST", "/api/keys", keys["admin"], json={"name": "a b", "scope": "x"})
    assert bad.status_code == 422
    missing = _request(secured, "DELETE", "/api/keys/nobody", keys["admin"])
    assert missing.status_code == 404


def test_result_urls_are_signed_links_that_open_without_a_key(
    secured: AgentServer, stored: dict[str, Any]
) -> None:
    overlay = stored["images"]["overlay"]
    assert urlsplit(overlay).path == f"/download/image/{stored['img_unique_id']}/overlay"
    assert "signature=" in overlay
    assert "expires=" in overlay
    image = httpx2.get(overlay)
    assert image.status_code == 200
    assert image.content.startswith(b"\x89PNG")
    analysis = httpx2.get(stored["json_url"])
    assert analysis.status_code == 200
    assert analysis.json()["image_shape"] == {"height": 48, "width": 64}
    assert httpx2.get(stored["input_url"]).content == make_image()


def test_batch_zip_link_opens_without_a_key(secured: AgentServer, keys: dict[str, str]) -> None:
    response = _request(
        secured,
        "POST",
        "/api/upload/batch?wait=true",
        keys["write"],
        files=[("images", ("a.png", make_image())), ("images", ("b.png", make_image()))],
    )
    assert response.status_code == 200, response.text
    zip_url = response.json()["zip_url"]
    assert "signature=" in zip_url
    archive = httpx2.get(zip_url)
    assert archive.status_code == 200
    assert archive.content.startswith(b"PK")
    # the status URL is an API call, not a download: it needs a key
    assert httpx2.get(response.json()["status_url"]).status_code == 401


def test_tampered_links_are_refused(secured: AgentServer, stored: dict[str, Any]) -> None:
    overlay = stored["images"]["overlay"]
    other_kind = overlay.replace("/overlay?", "/input?")
    signature = overlay.rsplit("signature=", 1)[1]
    flipped = overlay[: -len(signature)] + ("A" if signature[0] != "A" else "B") + signature[1:]
    later = re.sub(r"expires=(\d+)", lambda m: f"expires={int(m.group(1)) + 3600}", overlay)
    json_with_image_sig = stored["json_url"].split("?")[0] + "?" + overlay.split("?")[1]
    for link in (other_kind, flipped, later, json_with_image_sig):
        response = httpx2.get(link)
        assert response.status_code == 403, link
        assert response.json()["error"] == "link_invalid"
        assert "fresh link" in response.json()["detail"]
    unsigned = httpx2.get(overlay.split("?")[0])
    assert unsigned.status_code == 401


def test_a_signed_thumbnail_link_serves_only_its_own_rendition(
    secured: AgentServer, stored: dict[str, Any], keys: dict[str, str]
) -> None:
    """The signature covers the whole query: one parameter more, changed or repeated (a
    bigger thumbnail, the input instead of the overlay) is refused, not served."""
    listing = _request(secured, "GET", "/api/images?limit=1", keys["read"])
    thumbnail = listing.json()["images"][0]["thumbnail_url"]
    assert "signature=" in thumbnail
    served = httpx2.get(thumbnail)
    assert served.status_code == 200
    assert served.content.startswith(b"\xff\xd8")  # a JPEG
    signature = thumbnail.rsplit("signature=", 1)[1]
    for link in (
        thumbnail + "&kind=input",
        thumbnail + "&size=1024",
        thumbnail.replace("?", "?size=1024&"),
        thumbnail + "&signature=" + signature,
        re.sub(r"expires=\d+&", "", thumbnail),
    ):
        response = httpx2.get(link)
        assert response.status_code == 403, link
        assert response.headers["content-type"] == "application/json"
        assert response.json()["error"] == "link_invalid"
        assert "parameter" in response.json()["detail"]
    signer = LinkSigner(load_secret(None, secured.settings.resolved_data_dir), ttl_s=60)
    path = urlsplit(thumbnail).path
    small = httpx2.get(secured.url + signer.sign(path, {"kind": "input", "size": "32"}))
    assert small.status_code == 200  # a link made for that rendition serves it
    assert PILImage.open(io.BytesIO(small.content)).size == (32, 24)


def test_expired_links_are_refused(secured: AgentServer, stored: dict[str, Any]) -> None:
    secret = load_secret(None, secured.settings.resolved_data_dir)
    signer = LinkSigner(secret, ttl_s=60)
    path = f"/download/image/{stored['img_unique_id']}/overlay"
    fresh = httpx2.get(secured.url + signer.sign(path))
    assert fresh.status_code == 200
    expired = httpx2.get(secured.url + signer.sign(path, now=time.time() - 3600))
    assert expired.status_code == 403
    assert expired.json()["error"] == "link_expired"
    assert "expired at" in expired.json()["detail"]


@contextlib.contextmanager
def _signed_in(agent: AgentServer, key: str) -> Iterator[httpx2.Client]:
    """A client with the web session cookie of `key`, got from the sign-in form."""
    with httpx2.Client(base_url=agent.url, timeout=60) as client:
        response = client.post(
            "/signin", data={"key": key, "next": "/history"}, headers={"Origin": agent.url}
        )
        assert response.status_code == 303
        assert response.headers["location"] == "/history"
        cookie = response.headers["set-cookie"]
        assert "HttpOnly" in cookie
        assert "samesite=strict" in cookie.lower()
        assert key not in cookie
        yield client


def test_pages_ask_to_sign_in_and_a_session_opens_them(
    secured: AgentServer, keys: dict[str, str]
) -> None:
    page = httpx2.get(secured.url + "/dashboard")
    assert page.status_code == 303
    assert page.headers["location"] == "/signin?next=/dashboard"
    wrong = httpx2.post(
        secured.url + "/signin", data={"key": "wrong"}, headers={"Origin": secured.url}
    )
    assert wrong.status_code == 401
    assert "not valid" in wrong.text
    with _signed_in(secured, keys["read"]) as browser:
        assert browser.get("/dashboard").status_code == 200
        assert "key: test-read" in browser.get("/history").text
        assert browser.get("/api/images").status_code == 200
        out = browser.post("/signout", headers={"Origin": secured.url})
        assert out.status_code == 303
        assert browser.get("/dashboard").status_code == 303


def _session_cookie(agent: AgentServer, key: str) -> str:
    """The `aoi_session` cookie value the sign-in form gives for `key`."""
    response = httpx2.post(
        agent.url + "/signin", data={"key": key, "next": "/"}, headers={"Origin": agent.url}
    )
    assert response.status_code == 303, response.text
    return response.cookies["aoi_session"]


def _with_cookie(agent: AgentServer, cookie: str, path: str) -> httpx2.Response:
    """GET `path` with the session cookie `cookie`, as a copy of it in another browser."""
    with httpx2.Client(base_url=agent.url, cookies={"aoi_session": cookie}) as c:
        return c.get(path)


def test_sign_out_ends_the_session_for_every_copy_of_the_cookie(
    secured: AgentServer, keys: dict[str, str]
) -> None:
    database = secured.settings.database_url or ""
    with _signed_in(secured, keys["read"]) as browser:
        copied = browser.cookies["aoi_session"]
        assert _with_cookie(secured, copied, "/api/images").status_code == 200
        # Only the token's SHA-256 is stored, never the token.
        stored = db_rows(
            database,
            "SELECT encode(token_sha256, 'hex'), ended_at FROM web_sessions"
            " WHERE token_sha256 = sha256(convert_to(%s, 'UTF8'))",
            copied,
        )
        assert stored == [(hashlib.sha256(copied.encode()).hexdigest(), None)]
        assert browser.post("/signout", headers={"Origin": secured.url}).status_code == 303
    refused = _with_cookie(secured, copied, "/api/images")
    assert refused.status_code == 401
    assert refused.json()["error"] == "not_authenticated"
    page = _with_cookie(secured, copied, "/dashboard")
    assert page.status_code == 303
    assert page.headers["location"] == "/signin?next=/dashboard"
    ((ended,),) = db_rows(
        database,
        "SELECT ended_at FROM web_sessions WHERE token_sha256 = sha256(convert_to(%s, 'UTF8'))",
        copied,
    )
    assert ended is not None


def test_revoking_a_key_ends_its_sessions_at_once(
    secured: AgentServer, keys: dict[str, str]
) -> None:
    made = _request(
        secured, "POST", "/api/keys", keys["admin"], json={"name": "tablet", "scope": "read"}
    )
    assert made.status_code == 201
    cookies = [_session_cookie(secured, made.json()["key"]) for _ in range(2)]
    other = _session_cookie(secured, keys["read"])
    assert all(_with_cookie(secured, c, "/api/images").status_code == 200 for c in cookies)
    assert _request(secured, "DELETE", "/api/keys/tablet", keys["admin"]).status_code == 200
    assert [_with_cookie(secured, c, "/api/images").status_code for c in cookies] == [401, 401]
    assert _with_cookie(secured, other, "/api/images").status_code == 200


def test_expired_sessions_are_refused_and_deleted_at_the_next_sign_in(
    secured: AgentServer, keys: dict[str, str]
) -> None:
    database = secured.settings.database_url or ""
    old = _session_cookie(secured, keys["read"])
    db_execute(
        database,
        "UPDATE web_sessions SET expires_at = now() - interval '1 second'"
        " WHERE token_sha256 = sha256(convert_to(%s, 'UTF8'))",
        old,
    )
    assert _with_cookie(secured, old, "/api/images").status_code == 401
    _session_cookie(secured, keys["read"])
    assert db_rows(database, "SELECT count(*) FROM web_sessions WHERE expires_at <= now()") == [
        (0,)
    ]


def test_sign_in_refuses_to_redirect_elsewhere(secured: AgentServer, keys: dict[str, str]) -> None:
    response = httpx2.post(
        secured.url + "/signin",
        data={"key": keys["read"], "next": "//evil.example/"},
        headers={"Origin": secured.url},
    )
    assert response.headers["location"] == "/"


def test_cookie_session_refuses_cross_site_requests(
    secured: AgentServer, keys: dict[str, str], stored: dict[str, Any]
) -> None:
    database = secured.settings.database_url or ""
    before = db_rows(database, "SELECT count(*) FROM inspections")[0][0]
    with _signed_in(secured, keys["admin"]) as browser:
        files = {"image": ("x.png", make_image())}
        for headers in (
            {"Origin": "http://evil.example"},
            {"Referer": "http://evil.example/page"},
            {},
        ):
            response = browser.post("/api/upload", files=files, headers=headers)
            assert response.status_code == 403, headers
            assert response.json()["error"] == "cross_site_request_refused"
        deleted = browser.delete(
            f"/api/images/{stored['img_unique_id']}", headers={"Origin": "http://evil.example"}
        )
        assert deleted.status_code == 403
        assert db_rows(database, "SELECT count(*) FROM inspections")[0][0] == before
        same_site = browser.post("/api/upload", files=files, headers={"Origin": secured.url})
        assert same_site.status_code == 200
    assert db_rows(database, "SELECT count(*) FROM inspections")[0][0] == before + 1
    # a login form posted from another site does not sign anyone in (login CSRF)
    foreign = httpx2.post(
        secured.url + "/signin",
        data={"key": keys["admin"]},
        headers={"Origin": "http://evil.example"},
    )
    assert foreign.status_code == 403
    assert "set-cookie" not in foreign.headers


def test_cors_preflight_allows_configured_origins_only(secured: AgentServer) -> None:
    ask = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "x-api-key"}
    allowed = httpx2.options(
        secured.url + "/api/upload", headers={"Origin": "http://qc.example", **ask}
    )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "http://qc.example"
    assert "POST" in allowed.headers["access-control-allow-methods"]
    assert "x-api-key" in allowed.headers["access-control-allow-headers"].lower()
    refused = httpx2.options(
        secured.url + "/api/upload", headers={"Origin": "http://evil.example", **ask}
    )
    assert "access-control-allow-origin" not in refused.headers
    assert refused.status_code == 400
    assert refused.json()["error"] == "cors_refused"
    assert "CORS_ORIGINS" in refused.json()["detail"]
    simple = httpx2.get(secured.url + "/api/health", headers={"Origin": "http://mes.example"})
    assert simple.headers["access-control-allow-origin"] == "http://mes.example"


@pytest.mark.parametrize(
    "path", ["/api/health", "/signin", "/static/js/common.js", "/api/images", "/no-such-page"]
)
def test_security_headers_on_every_answer(secured: AgentServer, path: str) -> None:
    response = httpx2.get(secured.url + path)
    csp = response.headers["content-security-policy"]
    assert "default-src 'self'" in csp
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "same-origin"


def test_no_inline_script_or_style_in_pages(secured: AgentServer, keys: dict[str, str]) -> None:
    """The CSP refuses inline scripts and style attributes; pages must carry none."""
    with _signed_in(secured, keys["read"]) as browser:
        for path in ("/", "/batch", "/history", "/dashboard", "/results/x", "/signin", "/docs"):
            html = browser.get(path).text
            for tag in re.findall(r"<script\b[^>]*>", html):
                assert "src=" in tag or 'type="application/json"' in tag, (path, tag)
            assert " style=" not in html, path
            assert not re.search(r"\son[a-z]+=", html), path


def test_keys_never_reach_the_log(
    secured: AgentServer, keys: dict[str, str], tmp_path: Path
) -> None:
    log_file = tmp_path / "app.log"
    handler = logging.FileHandler(log_file, encoding="utf-8")
    handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        bad = keys["write"][:-2] + "zz"
        _request(secured, "GET", "/api/images", keys["read"])
        _request(secured, "GET", "/api/images", bad)
        with httpx2.Client(base_url=secured.url) as c:
            c.get("/api/stats", headers={"Authorization": f"Bearer {keys['admin']}"})
            c.post("/signin", data={"key": keys["read"]}, headers={"Origin": secured.url})
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.close()
    text = log_file.read_text(encoding="utf-8")
    assert "/api/images" in text  # the requests were logged
    for key in (*keys.values(), bad):
        assert key not in text
        assert key.split("_", 2)[2] not in text


@pytest.mark.parametrize(
    ("host", "mode", "required"),
    [
        ("127.0.0.1", "auto", False),
        ("::1", "auto", False),
        ("[::1]", "auto", False),
        ("localhost", "auto", False),
        ("127.0.0.2", "auto", False),
        ("0.0.0.0", "auto", True),
        ("192.168.1.20", "auto", True),
        ("aoi.factory.local", "auto", True),
        ("127.0.0.1", "required", True),
        ("0.0.0.0", "off", False),
    ],
)
def test_auth_mode(host: str, mode: str, required: bool) -> None:
    settings = Settings(_env_file=None, host=host, auth_mode=mode)  # type: ignore[call-arg]
    assert settings.auth_required is required


def test_auth_off_keeps_everything_open_and_links_unsigned(
    client: httpx2.Client, tmp_path: Path
) -> None:
    answer = client.post("/api/upload", files={"image": ("a.png", make_image())}).json()
    assert "signature" not in answer["images"]["overlay"]
    assert client.get(answer["images"]["overlay"]).status_code == 200
    assert client.get("/api/keys").status_code == 200
    assert client.get("/").status_code == 200
    assert client.get("/signin", follow_redirects=False).status_code == 303
    app = create_app(Settings(_env_file=None, data_dir=tmp_path))  # type: ignore[call-arg]
    assert app.state.security.required is False
