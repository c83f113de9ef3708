"""A scripted model service for the fault tests (real HTTP on a loopback port): it answers
every `/upload` with what the test sets, what the reference service cannot be made to send
on demand; and the checks the fault tests share."""

from __future__ import annotations

import asyncio
import base64
import copy
import io
from collections.abc import Awaitable, Callable
from typing import Any

import httpx2
from PIL import Image as PILImage
from starlette.responses import JSONResponse, Response

from tests.support import (
    AgentServer,
    ScriptedService,
    db_rows,
    make_image,
    sample_analysis,
)

WIDTH, HEIGHT = 64, 48


Handler = Callable[[], Awaitable[Response]]


def png(size: tuple[int, int] = (WIDTH, HEIGHT)) -> bytes:
    buffer = io.BytesIO()
    PILImage.new("RGB", size, (200, 30, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


GOOD: dict[str, Any] = {
    "result_json": sample_analysis(WIDTH, HEIGHT),
    "images": {
        "combined": b64(png((2 * WIDTH, HEIGHT))),
        "mask": b64(png()),
        "overlay": b64(png()),
    },
}


class ScriptedModelService(ScriptedService):
    """The scripted model service of tests/support.py answering every `/upload` with
    `self.handler`; `/files/{name}` serves a good PNG of this module's size."""

    def __init__(self) -> None:
        super().__init__(file_image=png())
        self.handler = self.answer(GOOD)

    @property
    def handler(self) -> Handler:
        return self._handler

    @handler.setter
    def handler(self, handler: Handler) -> None:
        self._handler = handler
        self.script = [handler]

    @staticmethod
    def answer(body: Any, status: int = 200, delay_s: float = 0.0) -> Handler:
        async def handler() -> Response:
            if delay_s:
                await asyncio.sleep(delay_s)
            if isinstance(body, bytes):
                return Response(body, status_code=status, media_type="application/json")
            return JSONResponse(body, status_code=status)

        return handler


def with_change(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    body = copy.deepcopy(GOOD)
    change(body)
    return body


def region(body: dict[str, Any]) -> dict[str, Any]:
    return body["result_json"]["classes"]["pin_hole"]["regions"][0]  # type: ignore[no-any-return]


def set_value(target: dict[str, Any], key: str, value: Any) -> None:
    target[key] = value


def assert_nothing_stored(agent: AgentServer, img_unique_id: str) -> str:
    """The inspection has no result row and no result file; returns its `last_error`."""
    db = agent.settings.database_url or ""
    for table in ("images", "classes", "regions"):
        assert db_rows(
            db, f"SELECT count(*) FROM {table} WHERE img_unique_id = %s", img_unique_id
        ) == [(0,)]
    [(status, last_error)] = db_rows(
        db, "SELECT status, last_error FROM inspections WHERE img_unique_id = %s", img_unique_id
    )
    assert status == "failed"
    results = agent.settings.resolved_result_dir
    assert not list(results.rglob(f"*{img_unique_id}*"))
    assert not [p for p in results.rglob("*") if p.is_file() and p.suffix in (".tmp", ".part")]
    assert "\x00" not in last_error
    for leak in ("INSERT", "SELECT", "Traceback", "psycopg", "sqlalchemy"):
        assert leak not in last_error
    return str(last_error)


def upload_board(agent: AgentServer) -> httpx2.Response:
    with httpx2.Client(base_url=agent.url, timeout=120) as client:
        return client.post(
            "/api/upload", files={"image": ("board.png", make_image("PNG", (WIDTH, HEIGHT)))}
        )
