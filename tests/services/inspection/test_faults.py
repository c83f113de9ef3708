"""Model-service faults, end to end through the agent: a service that hangs, is slow,
sends garbage, a truncated PNG, a URL on another host, numbers that fit no column,
strings no column can hold.

The reference service always answers well, so these tests run the agent against a
small scripted model service (real HTTP on a loopback port) whose answer each test
sets: what a real one cannot be made to do on demand. The agent, its database and
its files are real. Every bad answer must give 502 (or 503 for a hang) naming what
is wrong, store no result row and no result file, and leave the ledger row failed
with a sentence for people (never SQL, never a traceback).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx2
import pytest

from tests.conftest import agent_settings
from tests.services.inspection.scripted import (
    GOOD,
    HEIGHT,
    WIDTH,
    ScriptedModelService,
    assert_nothing_stored,
    b64,
    png,
    region,
    set_value,
    upload_board,
    with_change,
)
from tests.support import (
    AgentServer,
    db_rows,
    make_image,
    serve_agent,
)


@pytest.fixture(scope="module")
def other_host() -> Iterator[ScriptedModelService]:
    """Another server the agent must never be talked into fetching from (SSRF)."""
    with ScriptedModelService() as other:
        yield other


@pytest.fixture(scope="module")
def faulty_agent(
    tmp_path_factory: pytest.TempPathFactory, database_url: str, service: ScriptedModelService
) -> Iterator[AgentServer]:
    settings = agent_settings(
        tmp_path_factory.mktemp("data"), database_url, service.url
    ).model_copy(update={"segformer_timeout_s": 1.5, "segformer_max_retries": 2})
    with serve_agent(settings) as server:
        yield server


def rename_class(name: str) -> Callable[[dict[str, Any]], None]:
    def change(body: dict[str, Any]) -> None:
        classes = body["result_json"]["classes"]
        classes[name] = classes.pop("pin_hole")

    return change


TRUNCATED_PNG = png()[:-30]  # whole base64, but the PNG stops before its end

BAD_ANSWERS: list[tuple[str, Any, str]] = [
    (
        "truncated-png",
        with_change(lambda b: set_value(b["images"], "mask", b64(TRUNCATED_PNG))),
        "'mask' image is not a whole PNG",
    ),
    (
        "wrong-shape",
        with_change(lambda b: set_value(b["images"], "overlay", b64(png((WIDTH, HEIGHT + 1))))),
        "'overlay' image is 64 x 49 pixels",
    ),
    (
        "region-id-beyond-32-bits",
        with_change(lambda b: set_value(region(b), "region_id", 2**40)),
        "region_id",
    ),
    (
        "area-beyond-64-bits",
        with_change(lambda b: set_value(region(b), "area_pixels", 10**30)),
        "area_pixels",
    ),
    (
        "bbox-beyond-32-bits",
        with_change(lambda b: set_value(region(b)["bounding_box"], "x", -(2**33))),
        "bounding_box.x",
    ),
    ("nul-in-class-name", with_change(rename_class("pin\x00hole")), "control characters"),
    ("class-name-too-long", with_change(rename_class("x" * 300)), "1 to 128 characters"),
    (
        "nan-circularity",
        # Python's json writes NaN, as a careless service would; JSON has no NaN.
        json.dumps(
            with_change(lambda b: set_value(region(b), "circularity", float("nan")))
        ).encode(),
        "circularity",
    ),
    ("garbage", b"\x00\x01 not json at all", "not JSON"),
    ("html-error-page", b"<html>proxy error</html>", "not JSON"),
]


@pytest.mark.parametrize(
    ("body", "names"), [(b, n) for _, b, n in BAD_ANSWERS], ids=[i for i, _, _ in BAD_ANSWERS]
)
def test_a_bad_answer_is_502_naming_the_field_and_stores_nothing(
    faulty_agent: AgentServer, service: ScriptedModelService, body: Any, names: str
) -> None:
    service.handler = service.answer(body)
    response = upload_board(faulty_agent)
    assert response.status_code == 502, response.text
    answer = response.json()
    assert answer["error"] == "model_service_bad_answer"
    assert names in answer["detail"]
    assert answer["request_id"] == response.headers["x-request-id"]
    last_error = assert_nothing_stored(faulty_agent, answer["img_unique_id"])
    assert names.split(" ")[0].strip("'") in last_error or "model service" in last_error


def test_a_result_url_on_another_host_is_never_fetched(
    faulty_agent: AgentServer, service: ScriptedModelService, other_host: ScriptedModelService
) -> None:
    foreign = f"http://localhost:{other_host.port}/files/mask.png"
    service.handler = service.answer(
        with_change(lambda b: set_value(b["images"], "mask", {"url": foreign}))
    )
    response = upload_board(faulty_agent)
    assert response.status_code == 502, response.text
    assert "only from the model service itself" in response.json()["detail"]
    assert other_host.file_calls == 0
    assert_nothing_stored(faulty_agent, response.json()["img_unique_id"])


def test_result_urls_on_the_service_itself_are_fetched(
    faulty_agent: AgentServer, service: ScriptedModelService
) -> None:
    before = service.file_calls
    body = with_change(lambda b: set_value(b["images"], "mask", "/files/mask.png"))
    service.handler = service.answer(body)
    response = upload_board(faulty_agent)
    assert response.status_code == 200, response.text
    assert service.file_calls == before + 1


def test_a_slow_service_within_the_timeout_succeeds(
    faulty_agent: AgentServer, service: ScriptedModelService
) -> None:
    service.handler = service.answer(GOOD, delay_s=1.0)
    response = upload_board(faulty_agent)
    assert response.status_code == 200, response.text
    img_id = response.json()["img_unique_id"]
    with httpx2.Client(base_url=faulty_agent.url) as client:
        regions = client.get(f"/api/images/{img_id}/regions").json()
    assert regions["total_regions"] == 1


def test_a_hanging_service_is_503_in_bounded_time_with_the_input_kept(
    faulty_agent: AgentServer, service: ScriptedModelService
) -> None:
    service.handler = service.answer(GOOD, delay_s=30)
    started = time.monotonic()
    response = upload_board(faulty_agent)
    elapsed = time.monotonic() - started
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["retry_url"].endswith("/retry")
    assert elapsed < 15
    last_error = assert_nothing_stored(faulty_agent, body["img_unique_id"])
    assert any(
        words in last_error for words in ("did not answer", "timed out", "sent no answer within")
    )
    data_dir = faulty_agent.settings.resolved_data_dir
    assert list((data_dir / "uploads").rglob(f"*{body['img_unique_id']}*"))


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"", id="empty"),
        pytest.param(make_image("PNG")[:60], id="truncated"),
    ],
)
def test_a_bad_upload_never_reaches_the_model_service(
    faulty_agent: AgentServer, service: ScriptedModelService, content: bytes
) -> None:
    before = service.calls
    with httpx2.Client(base_url=faulty_agent.url) as client:
        response = client.post("/api/upload", files={"image": ("a.png", content)})
    assert response.status_code == 400
    assert service.calls == before


def test_a_png_with_a_wrong_checksum_is_400_and_costs_no_model_call(
    faulty_agent: AgentServer, service: ScriptedModelService
) -> None:
    from tests.api.test_bad_input import png_with_bad_idat_crc

    before = service.calls
    with httpx2.Client(base_url=faulty_agent.url) as client:
        response = client.post("/api/upload", files={"image": ("a.png", png_with_bad_idat_crc())})
    assert response.status_code == 400
    assert "checksum" in response.json()["detail"]
    assert service.calls == before
    db = faulty_agent.settings.database_url or ""
    names = db_rows(db, "SELECT original_filename FROM inspections")
    assert all(isinstance(n, str) for (n,) in names)
