"""The README's examples on a fresh clone: every file the README and docs/*.md upload is
in the repository (samples/), and the README's first `curl`, run exactly as written from
the repository root, inspects that board."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess

import httpx2
import pytest

from tests.support import REPO_ROOT, SAMPLES_DIR, AgentServer

DOCS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
# `-F image=@path`, `-F "images=@path"`, and the CLI's `aoi-agent upload path…`.
UPLOADED = re.compile(r"-F \"?images?=@([^\"\s]+)")
CLI_UPLOAD = re.compile(r"^aoi-agent upload ((?:[^-\s]\S*\s+)+)", re.MULTILINE)
EXAMPLE_URL = "http://localhost:8000"


def test_every_file_the_docs_upload_is_in_the_repository() -> None:
    named = {
        (doc.name, path)
        for doc in DOCS
        for path in UPLOADED.findall(doc.read_text(encoding="utf-8"))
        + [p for m in CLI_UPLOAD.findall(doc.read_text(encoding="utf-8")) for p in m.split()]
    }
    assert ("README.md", "samples/deeppcb/images/00041201.jpg") in named
    missing = sorted((doc, path) for doc, path in named if not (REPO_ROOT / path).exists())
    assert missing == []
    assert all((REPO_ROOT / path).resolve().is_relative_to(SAMPLES_DIR) for _, path in named)


def test_readme_first_upload_runs_as_written(client: httpx2.Client, agent: AgentServer) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    first = next(line for line in readme.splitlines() if line.startswith("curl ") and "=@" in line)
    args = [a.replace(EXAMPLE_URL, agent.url) for a in shlex.split(first)]
    assert args[0] == "curl", first
    assert any(a.startswith(agent.url) for a in args), first
    done = subprocess.run(
        [curl, "-sS", *args[1:]],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    answer = json.loads(done.stdout)
    assert answer["success"] is True, answer
    assert answer["total_defects"] >= 1
    detail = client.get(f"/images/{answer['img_unique_id']}").json()
    assert detail["original_filename"] == "00041201.jpg"
    assert (detail["image_width"], detail["image_height"]) == (640, 640)
