"""schemathesis over the agent's whole OpenAPI, against a live agent.

Every operation gets a bounded number of generated requests (positive and negative,
NUL bytes included; see tests/schemathesis.toml) and every schemathesis check: no
5xx, JSON error bodies that match the documented schemas, bounds that Swagger shows
and the agent enforces, and the same the other way round. The run must find nothing.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx2

from tests.support import AgentServer, make_image

CONFIG = Path(__file__).with_name("schemathesis.toml")
RUN_SCHEMATHESIS = "import sys; from schemathesis.cli import schemathesis; sys.exit(schemathesis())"


def test_schemathesis_finds_nothing(agent: AgentServer, tmp_path: Path) -> None:
    # One stored inspection, so the id-taking operations reach more than their 404.
    with httpx2.Client(base_url=agent.url, timeout=60) as client:
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
            # `OPTIONS` answering with the right `Allow` is section 1 of issue 6 (the
            # customer's contract), built on another branch: drop this once it is merged.
            "--exclude-checks",
            "allow_header_conformance",
            "--workers",
            "2",
            "--request-timeout",
            "60",
            "--no-color",
            "--generation-database",
            "none",
            "--report-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-5000:]
