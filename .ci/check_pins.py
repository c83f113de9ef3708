"""Check that `requirements.txt`, `requirements-test.txt` and `requirements-cfx.txt` resolve
on every platform the README promises (Linux, Windows, macOS) and that each is a complete
set of pins there.

uv's resolver answers for another platform without that machine (`--python-platform`), from
the registry's metadata and wheel tags. A resolution fails on a conflict (two pins of one
package), on a pin with no wheel or sdist for the platform, and — the second check — when
the platform needs a package the file does not pin (pip would then take whatever is newest).

macOS means macOS 14 (Sonoma) or newer on Apple silicon: the pinned onnxruntime and torch
publish arm64 wheels for macOS 14 and up only (README, "Start it").

Usage: `python .ci/check_pins.py` (needs `uv` on PATH or as `python -m uv`); exit 1 on a
problem, with one line per problem.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FILES = ("requirements.txt", "requirements-test.txt", "requirements-cfx.txt")
PLATFORMS = ("x86_64-unknown-linux-gnu", "x86_64-pc-windows-msvc", "aarch64-apple-darwin")
PYTHONS = ("3.11", "3.13")
# The oldest macOS the pins support (see the module docstring).
MACOS_TARGET = "14.0"
# Packages a resolution may add that are not ours to pin: torch's CUDA wheels on Linux
# (the test machines install the CPU build of torch, which needs none of them).
NOT_PINNED = re.compile(r"^(nvidia-.*|cuda-.*|triton)$")
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==")


def canonical(name: str) -> str:
    """PEP 503 normalised package name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned(path: Path) -> set[str]:
    """Names pinned with `==` in `path` and in the files it includes with `-r`."""
    names: set[str] = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line.startswith("-r "):
            names |= pinned(path.parent / line[3:].strip())
        elif match := PIN.match(line):
            names.add(canonical(match.group(1)))
    return names


def uv_command() -> list[str]:
    """How to run uv here."""
    found = shutil.which("uv")
    return [found] if found else [sys.executable, "-m", "uv"]


def check(file: str, platform: str, python: str) -> list[str]:
    """Problems of `file` resolved for `platform` and `python`; empty when there is none."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "resolved.txt"
        env = dict(os.environ, MACOSX_DEPLOYMENT_TARGET=MACOS_TARGET)
        result = subprocess.run(
            [
                *uv_command(),
                "pip",
                "compile",
                "--quiet",
                "--no-header",
                "--no-annotate",
                "--python-platform",
                platform,
                "--python-version",
                python,
                file,
                "-o",
                str(out),
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        where = f"{file} on {platform}, Python {python}"
        if result.returncode != 0:
            reason = " ".join(result.stderr.split())
            return [f"{where} does not resolve: {reason}"]
        resolved = {
            canonical(match.group(1))
            for line in out.read_text(encoding="utf-8").splitlines()
            if (match := PIN.match(line.strip()))
        }
    missing = sorted(
        name
        for name in resolved - pinned(ROOT / file)
        if not NOT_PINNED.match(name) and name != "aoi-inference-agent"
    )
    if missing:
        return [f"{where} needs packages the file does not pin: {', '.join(missing)}"]
    return []


def main() -> int:
    """Check every file on every platform; print the problems; 0 when there is none."""
    problems = [
        problem
        for file in FILES
        for platform in PLATFORMS
        for python in PYTHONS
        for problem in check(file, platform, python)
    ]
    for problem in problems:
        print(f"pins: {problem}")
    if not problems:
        print(f"pins: {', '.join(FILES)} resolve on {', '.join(PLATFORMS)} ({', '.join(PYTHONS)})")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
