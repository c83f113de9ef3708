"""schemathesis over the agent's whole OpenAPI, against a live agent.

Every operation gets a bounded number of generated requests (positive and negative,
NUL bytes included; see tests/schemathesis.toml) and every schemathesis check: no
5xx, JSON error bodies that match the documented schemas, bounds that Swagger shows
and the agent enforces, and the same the other way round. The run must find nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from app.services.model_service.reference import ReferenceService
from tests.conftest import agent_settings
from tests.support import AgentServer, create_api_key, make_image, serve_agent

CONFIG = Path(__file__).with_name("schemathesis.toml")
RUN_SCHEMATHESIS = "import sys; from schemathesis.cli import schemathesis; sys.exit(schemathesis())"


@pytest.fixture(scope="module")
def secured(
    tmp_path_factory: pytest.TempPathFactory, database_url: str, reference_service: ReferenceService
) -> Iterator[AgentServer]:
    """The agent as a factory runs it: API keys required (so schemathesis also checks that
    every operation but health refuses a missing or wrong key). No limit on failed
    authentications: schemathesis sends a wrong key to every operation from one address,
    and once throttled even its valid key would be answered 429 (tests/api/
    test_auth_throttle.py tests the limit)."""
    settings = agent_settings(
        tmp_path_factory.mktemp("data"),
        database_url,
        reference_service.url,
        auth_mode="required",
        auth_failures_per_minute=0,
    )
    with serve_agent(settings) as server:
        yield server


def test_schemathesis_finds_nothing(secured: AgentServer, tmp_path: Path) -> None:
    agent = secured
    key = create_api_key(agent.settings.database_url or "", "fuzz-admin-0", "admin")
    # One stored inspection, so the id-taking operations reach more than their 404.
    with httpx2.Client(base_url=agent.url, timeout=60, headers={"X-API-Key": key}) as client:
        uploaded = client.post("/api/upload", files={"image": ("a.png", make_image("PNG"))})
    assert uploaded.status_code == 200, uploaded.text
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            RUN_SCHEMATHESIS,
            "--config-file",
            str(CONFIG),
            "run",
            f"{agent.url}/openapi.json",
            "--checks",
            "all",
            # One worker: with two, hypothesis' lambda descriptions parse source in
            # parallel threads and CPython 3.11's ast raises SystemError now and then.
            "--workers",
            "1",
            "--request-timeout",
            "60",
            "--no-color",
            "--generation-database",
            "none",
            "--report-dir",
            str(tmp_path),
            # While developing: AOI_FUZZ_ONLY=<regex of paths> fuzzes those operations only.
            *(
                ["--include-path-regex", os.environ["AOI_FUZZ_ONLY"]]
                if "AOI_FUZZ_ONLY" in os.environ
                else []
            ),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env={**os.environ, "AOI_FUZZ_API_KEY": key},
    )
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-5000:]
