"""The file side of a hot folder: which files count, when one is complete, where it goes.

A watched folder `DIR` is laid out as:

    DIR/<any sub-folders>/<image files>      dropped here by the AOI machine
    DIR/processed/YYYYMMDD/<same path>       inspected (local date of the move)
    DIR/processed/YYYYMMDD/<name>.duplicate.txt   beside a file skipped as already inspected
    DIR/failed/<same path>                   not inspected, and why:
    DIR/failed/<same path>.error.txt

Nothing is ever deleted or overwritten: a name already taken gets `_1`, `_2`, ...
Moves use `os.replace` within `DIR` (one file system, so atomic on Windows and
POSIX alike). Every function here blocks: call them from a worker thread.

Links are never followed (`link_on_the_way`): a symbolic link, a Windows junction or
any other reparse point in `DIR` is left where it is, with a note in `failed/` naming it.
No note ever quotes a file's content.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath

from app.models.context import (
    MAX_MANIFEST_BYTES,
    ContextError,
    InspectionContext,
    context_from_name,
    contexts_from_manifest,
)

PROCESSED_DIR = "processed"
FAILED_DIR = "failed"
# Names that copy tools give files still being written; such a file is taken once renamed.
TEMPORARY_SUFFIXES = (".tmp", ".temp", ".part", ".partial", ".crdownload", ".filepart", "~")
TEMPORARY_PREFIXES = (".", "~$")
NOTE_KINDS = ("error", "duplicate")
# A board-context sidecar: `<image name>.json` or `<image stem>.json` (docs/boards.md);
# never taken as an image, moved along with its image.
SIDECAR_SUFFIX = ".json"
LINK_REASON = (
    "a link (symbolic link, junction or other reparse point): the hot folder never follows"
    " links, so it is left where it is; put the file itself in the folder instead"
)
# Windows: another process holds the file open without sharing (a writer still busy).
_SHARING_VIOLATIONS = {32, 33}  # ERROR_SHARING_VIOLATION, ERROR_LOCK_VIOLATION


def relative_name(root: Path, path: Path) -> str:
    """`path` relative to `root`, `/`-separated (the file name the agent records)."""
    return PurePosixPath(path.relative_to(root)).as_posix()


def is_candidate(root: Path, path: Path) -> bool:
    """Whether `path` (under `root`) is a dropped file the hot folder should take.

    Files under `processed/` and `failed/`, hidden files and folders, and files whose
    names mark them as still being written (`.tmp`, `.part`, `~$...`) are not.
    """
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        return False
    if not parts or parts[0] in (PROCESSED_DIR, FAILED_DIR):
        return False
    if any(part.startswith(TEMPORARY_PREFIXES) for part in parts):
        return False
    name = path.name.lower()
    return not name.endswith(TEMPORARY_SUFFIXES) and not name.endswith(SIDECAR_SUFFIX)


def sidecar_of(path: Path) -> Path | None:
    """The board-context sidecar of an image file: `<name>.json` (e.g. `a.jpg.json`), else
    `<stem>.json` (`a.json`), whichever exists first; None when neither does."""
    for candidate in (
        path.with_name(path.name + SIDECAR_SUFFIX),
        path.with_name(path.stem + SIDECAR_SUFFIX),
    ):
        if candidate != path and (candidate.is_file() or is_link(candidate)):
            return candidate
    return None


def _move_sidecar(source: Path, target: Path) -> None:
    """Move the sidecar of `source` (if any) beside `target`, as `<target name>.json`;
    a sidecar that cannot be moved stays where it is (it is never taken as an image)."""
    sidecar = sidecar_of(source)
    if sidecar is not None:
        with contextlib.suppress(OSError):
            os.replace(sidecar, _free_name(target.with_name(target.name + SIDECAR_SUFFIX)))


def is_link(path: Path) -> bool:
    """Whether `path` itself is a symbolic link, or on Windows a junction or another reparse
    point (checked with `lstat`, never following it). False when it does not exist."""
    try:
        info = os.lstat(path)
    except OSError:
        return False
    if stat.S_ISLNK(info.st_mode):
        return True
    attributes = getattr(info, "st_file_attributes", 0)  # Windows only
    return bool(attributes & getattr(stat, "FILE_ATTRIBUTE_REPARSE_POINT", 0))


def link_on_the_way(root: Path, path: Path) -> Path | None:
    """The hot folder's one rule on links: the first link (`is_link`) among the folders
    between `root` and `path` and `path` itself, or None when there is none and `path`
    may be taken. `root` itself is not checked (the operator chose it). A path outside
    `root` counts as a link to outside: `path` itself is returned."""
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        return path
    here = root
    for part in parts:
        here = here / part
        if is_link(here):
            return here
    return None


def scan(
    root: Path, start: Path | None = None, on_link: Callable[[Path], None] | None = None
) -> Iterator[Path]:
    """Every candidate file under `start` (default: the whole hot folder `root`;
    recursive; `processed/` and `failed/` skipped), never through a link: a file or
    folder that is a link (`is_link`) is not yielded nor entered, and is passed to
    `on_link` instead (a `start` that is or lies behind a link yields nothing)."""
    start = start or root
    link = link_on_the_way(root, start) if start != root else None
    if link is not None:
        if on_link is not None:
            on_link(link)
        return
    for folder, dirs, files in os.walk(start):  # os.walk never enters symbolic links
        here = Path(folder)
        kept = []
        for name in sorted(dirs):
            path = here / name
            if not is_candidate(root, path):
                continue
            if is_link(path):  # also Windows junctions, which os.walk may enter
                if on_link is not None:
                    on_link(path)
                continue
            kept.append(name)
        dirs[:] = kept
        for name in sorted(files):
            path = here / name
            if not is_candidate(root, path):
                continue
            if is_link(path):
                if on_link is not None:
                    on_link(path)
                continue
            yield path


@dataclass
class Observed:
    """Size (bytes) and modification time (ns) of a file when last looked at, and since
    when (monotonic seconds) they have not changed."""

    size_bytes: int
    mtime_ns: int
    unchanged_since: float


def look(path: Path) -> tuple[int, int] | None:
    """(size in bytes, mtime in ns) of a regular file, or None if it is gone or not a file."""
    try:
        info = path.stat()
    except OSError:
        return None
    if not path.is_file():
        return None
    return info.st_size, info.st_mtime_ns


def readable_now(path: Path) -> tuple[bool, str | None]:
    """Whether the file can be opened and read now, and if not, why, when that lasts.

    Returns:
        (True, None): readable. (False, None): not now, but not for a lasting reason: it
        vanished, or another process holds it open without sharing (Windows: a writer
        still busy); look again later. (False, reason): it cannot be read (permissions,
        an I/O error); the reason names the problem, never anything of the content.
    """
    try:
        with path.open("rb") as fh:
            fh.read(1)
    except FileNotFoundError:
        return False, None
    except OSError as exc:
        if getattr(exc, "winerror", None) in _SHARING_VIOLATIONS or exc.errno == errno.EBUSY:
            return False, None
        why = exc.strerror or type(exc).__name__
        return False, (
            f"cannot be read ({why}); it is left where it is and taken once it can be read"
            " (check its permissions)"
        )
    return True, None


class SettleTracker:
    """Decides when a dropped file is complete: its size and mtime unchanged for `settle_s`
    seconds and the file openable. An empty file must stay so for `EMPTY_FACTOR` x longer
    (a writer may have created it and not yet written). A settled file that cannot be
    read for a lasting reason (permissions) is dropped into `unreadable` with the reason,
    for the caller to report (`take_unreadable`)."""

    EMPTY_FACTOR = 5

    def __init__(self, settle_s: float) -> None:
        self.settle_s = settle_s
        self.files: dict[Path, Observed] = {}
        self.unreadable: dict[Path, str] = {}

    def take_unreadable(self) -> dict[Path, str]:
        """The files found unreadable since the last call, with the reason (no longer
        followed: a later listing follows them again)."""
        found, self.unreadable = self.unreadable, {}
        return found

    def observe(self, path: Path, now: float | None = None) -> None:
        """Start (or keep) following `path`."""
        if path not in self.files:
            seen = look(path)
            if seen is not None:
                now = time.monotonic() if now is None else now
                self.files[path] = Observed(seen[0], seen[1], now)

    def forget(self, path: Path) -> None:
        """Stop following `path`."""
        self.files.pop(path, None)

    def complete(self, now: float | None = None) -> list[Path]:
        """The followed files that are complete now (and no longer followed), in name order.

        Files that disappeared are dropped.
        """
        now = time.monotonic() if now is None else now
        done: list[Path] = []
        for path, seen in list(self.files.items()):
            current = look(path)
            if current is None:
                del self.files[path]
                continue
            if current != (seen.size_bytes, seen.mtime_ns):
                self.files[path] = Observed(current[0], current[1], now)
                continue
            needed = self.settle_s * (self.EMPTY_FACTOR if seen.size_bytes == 0 else 1)
            if now - seen.unchanged_since < needed:
                continue
            readable, problem = readable_now(path)
            if readable:
                del self.files[path]
                done.append(path)
            elif problem is not None:
                del self.files[path]
                self.unreadable[path] = problem
        return sorted(done)


def _free_name(path: Path) -> Path:
    """`path`, or `stem_1.ext`, `stem_2.ext`, ... whichever does not exist yet."""
    candidate, n = path, 0
    while candidate.exists() or any(_note_for(candidate, k).exists() for k in NOTE_KINDS):
        n += 1
        candidate = path.with_name(f"{path.stem}_{n}{path.suffix}")
    return candidate


def _note_for(path: Path, kind: str = "error") -> Path:
    return path.with_name(f"{path.name}.{kind}.txt")


def _write_note(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8", newline="\n")
    os.replace(tmp, path)


def note_left_in_place(root: Path, path: Path, reason: str) -> Path | None:
    """Write `root/failed/<path under root>.error.txt` (file, time, reason) for a file the
    hot folder leaves where it is (a link, an unreadable file); the note names the file
    and never quotes anything of its content or of a link's target.

    Returns:
        The note, or None when a note of that name exists already (it is never
        overwritten, so a restart does not pile up notes).

    Raises:
        OSError: the note could not be written.
    """
    note = _note_for(root / FAILED_DIR / path.relative_to(root))
    if note.exists():
        return None
    note.parent.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().astimezone().isoformat(timespec="seconds")
    _write_note(note, f"file: {relative_name(root, path)}\ntime: {stamp}\nreason: {reason}\n")
    return note


def move_to_processed(
    root: Path, path: Path, note: str | None = None, when: datetime | None = None
) -> Path:
    """Move an inspected file to `root/processed/YYYYMMDD/<its path under root>`.

    Args:
        note: if given, written beside it as `<name>.duplicate.txt` (why it was not
            inspected again).
        when: the date of the folder (default now, local time).

    Returns:
        Where the file now is.

    Raises:
        OSError: the move failed (the file stays where it was).
    """
    day = (when or datetime.now()).strftime("%Y%m%d")
    target = _free_name(root / PROCESSED_DIR / day / path.relative_to(root))
    target.parent.mkdir(parents=True, exist_ok=True)
    if note:
        _write_note(_note_for(target, "duplicate"), note)
    os.replace(path, target)
    _move_sidecar(path, target)
    return target


def move_to_failed(root: Path, path: Path, reason: str) -> Path:
    """Move a file that was not inspected to `root/failed/<its path under root>`, with
    `<name>.error.txt` beside it saying why (written first, so a crash between the two
    leaves the reason, never a silent file).

    Returns:
        Where the file now is.

    Raises:
        OSError: the move failed (the file stays where it was).
    """
    target = _free_name(root / FAILED_DIR / path.relative_to(root))
    target.parent.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().astimezone().isoformat(timespec="seconds")
    _write_note(
        _note_for(target),
        f"file: {relative_name(root, path)}\ntime: {stamp}\nreason: {reason}\n",
    )
    os.replace(path, target)
    _move_sidecar(path, target)
    return target


def board_context(name_pattern: re.Pattern[str] | None, source: Path) -> InspectionContext | None:
    """The board context of a hot-folder file: from its name (WATCH_NAME_PATTERN), then its
    sidecar `<name>.json` / `<stem>.json` (one context, as a batch manifest), whose fields
    override the name's. Blocks (reads the sidecar): call it from a worker thread. The
    one parser of both hot folders: the agent's own (`local.AgentSubmitter`) and
    `aoi-agent watch` (`remote.HttpSubmitter`).

    Raises:
        ContextError: the name or the sidecar gives a value out of bounds, or the sidecar is
            a link, larger than MAX_MANIFEST_BYTES, unreadable or not JSON (the message
            names which, for the file's note).
    """
    try:
        named = context_from_name(name_pattern, source.name) if name_pattern else None
    except ContextError as exc:
        raise ContextError(
            [{"loc": ("WATCH_NAME_PATTERN",), "msg": f"out of bounds: {exc}", "type": "value"}]
        ) from None
    sidecar = sidecar_of(source)
    if sidecar is None:
        return named

    def problem(message: str) -> ContextError:
        return ContextError(
            [{"loc": (f"sidecar {sidecar.name}",), "msg": message, "type": "value"}]
        )

    if is_link(sidecar):
        raise problem("is a link; the hot folder never follows links")
    try:
        if sidecar.stat().st_size > MAX_MANIFEST_BYTES:
            raise problem(f"is larger than {MAX_MANIFEST_BYTES // 1024} KiB")
        data = sidecar.read_bytes()
    except OSError as exc:
        raise problem(f"cannot be read: {exc.strerror or exc}") from None
    try:
        own = contexts_from_manifest(data, [source.name])[0]
    except ContextError as exc:
        raise problem(str(exc)) from None
    merged = {
        **(named.model_dump(exclude_none=True) if named else {}),
        **(own.model_dump(exclude_none=True) if own else {}),
    }
    return InspectionContext.model_validate(merged) if merged else None
