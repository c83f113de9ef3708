"""Fixtures of the web UI tests: a few DeepPCB inspections stored through the API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.support import AgentServer


def upload(agent: AgentServer, image: Path) -> dict[str, Any]:
    """Inspect `image` through `POST /api/upload` (with the agent's `api_key`, if it has
    one: keys required); returns the answer."""
    key = getattr(agent, "api_key", None)
    headers = {"X-API-Key": key} if key else {}
    with httpx2.Client(base_url=agent.url, timeout=60, headers=headers) as c:
        response = c.post("/api/upload", files={"image": (image.name, image.read_bytes())})
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


@pytest.fixture(scope="module")
def inspected(agent: AgentServer, deeppcb: list[Path]) -> list[dict[str, Any]]:
    """Three DeepPCB images inspected by the module's agent (upload answers, oldest first)."""
    return [upload(agent, image) for image in deeppcb[:3]]
