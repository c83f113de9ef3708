"""Checks a dataset ZIP against its manifest (`aoi-agent dataset verify`): offline, no
agent or database needed."""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

MANIFEST_NAME = "manifest.json"
_READ_BYTES = 1024 * 1024


@dataclass
class DatasetCheck:
    """What `verify_dataset` found.

    Attributes:
        checked: files whose SHA-256 and size were compared.
        problems: one sentence per file that is missing, extra, or differs.
        manifest: the manifest without its file list (format, filters, counts...).
    """

    checked: int = 0
    problems: list[str] = field(default_factory=list)
    manifest: dict[str, object] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether every file matches and none is missing or extra."""
        return not self.problems


def verify_dataset(path: Path) -> DatasetCheck:
    """Every file of the ZIP at `path` against `manifest.json`: same SHA-256 and size, none
    missing, none extra. Files are hashed in 1 MiB reads (constant memory).

    Raises:
        ValueError: not a ZIP, or no readable manifest.json in it.
        OSError: the file cannot be read.
    """
    check = DatasetCheck()
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise ValueError(f"{path} is not a ZIP file") from exc
    with archive:
        try:
            manifest = json.loads(archive.read(MANIFEST_NAME))
            files = manifest.pop("files")
        except (KeyError, ValueError, TypeError) as exc:
            raise ValueError(f"{path} has no readable {MANIFEST_NAME}") from exc
        check.manifest = manifest
        present = {i.filename for i in archive.infolist() if not i.is_dir()} - {MANIFEST_NAME}
        for entry in files:
            name = entry["path"]
            if name not in present:
                check.problems.append(f"{name}: listed in the manifest but missing")
                continue
            present.discard(name)
            digest, size = hashlib.sha256(), 0
            with archive.open(name) as member:
                while chunk := member.read(_READ_BYTES):
                    digest.update(chunk)
                    size += len(chunk)
            check.checked += 1
            if digest.hexdigest() != entry["sha256"]:
                check.problems.append(f"{name}: SHA-256 differs from the manifest")
            elif size != entry["size"]:
                check.problems.append(f"{name}: {size} bytes, the manifest says {entry['size']}")
        check.problems += [f"{name}: not in the manifest" for name in sorted(present)]
    return check
