"""Streams multipart uploads to disk, enforcing the per-file size limit as bytes arrive.

Starlette's own form parser has no per-file limit and reads the whole body
before the route runs; this one counts each file's bytes while they stream, so
a 60 MB part is refused (single upload) or dropped (batch item) without ever
being held in memory or kept on disk. Each kept file's SHA-256 is computed from
the same chunks as they are written, so no file is read twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import anyio
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header
from starlette.requests import ClientDisconnect, Request

from app.errors import (
    AgentError,
    BadUploadRequest,
    ImageTooLarge,
    InsufficientStorage,
    UploadTimeout,
)
from app.services.storage import is_disk_full
from app.utils.text import has_control_characters, printable

if TYPE_CHECKING:
    from app.config import Settings
    from app.services.storage.base import Storage

FLUSH_BYTES = 1024 * 1024
MAX_FILENAME_LENGTH = 255
# Bytes of a request besides its files' contents (boundaries, part headers, other fields).
MULTIPART_OVERHEAD_BYTES = 64 * 1024
# The multipart framing a client may send (400 beyond): RFC 2046 section 5.1.1 boundary
# (1 to 70 `bchars`, the last not a space); per part, at most MAX_PART_HEADERS header
# lines of at most MAX_PART_HEADER_BYTES each (python-multipart enforces both); besides
# the file parts, at most MAX_OTHER_PARTS other parts (form fields, ignored).
BOUNDARY_PATTERN = re.compile(rb"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")
MAX_PART_HEADERS = 8
MAX_PART_HEADER_BYTES = 4096
MAX_OTHER_PARTS = 16
# The longest form field (not a file) kept when the caller asks for fields: a batch
# manifest's bound (app.models.context.MAX_MANIFEST_BYTES) plus room for its framing.
MAX_FIELD_BYTES = 256 * 1024 + 1024


@dataclass
class ReceivedFile:
    """One file part of the request, as kept on disk (or dropped for being too large).

    Attributes:
        filename: the client's name for the file (unsanitised; never used as a path).
        path: the temporary file holding its bytes, or None when dropped.
        size_bytes: bytes received.
        too_large: the part went over the limit and its bytes were discarded.
        problem: why the part is refused before its content is looked at (e.g. its file
            name holds control characters); its bytes are discarded.
        sha256: hex SHA-256 of the bytes, once the part is complete (None until then, or
            when dropped).
    """

    filename: str
    path: Path | None
    size_bytes: int = 0
    too_large: bool = False
    problem: AgentError | None = None
    sha256: str | None = None
    _hasher: hashlib._Hash = field(default_factory=hashlib.sha256, repr=False)
    _buffer: bytearray = field(default_factory=bytearray, repr=False)
    _handle: BinaryIO | None = field(default=None, repr=False)


async def receive_image(
    request: Request,
    settings: Settings,
    storage: Storage,
    fields: dict[str, str] | None = None,
) -> list[ReceivedFile]:
    """`receive_files` for a one-image upload (the file in the field `image`, at most
    MAX_FILE_SIZE_MB, refused at once when over it, UPLOAD_IDLE_TIMEOUT_S between pieces),
    kept under the store's incoming folder: `POST /upload` and `PUT /api/golden/{id}`.

    Raises:
        as `receive_files`.
    """
    return await receive_files(
        request,
        "image",
        storage.new_incoming_path,
        settings.max_file_size_bytes,
        max_files=1,
        fail_fast=True,
        idle_timeout_s=settings.upload_idle_timeout_s,
        fields=fields,
    )


async def receive_files(
    request: Request,
    field_name: str,
    incoming_path: Callable[[], Path],
    max_file_bytes: int,
    max_files: int,
    fail_fast: bool,
    idle_timeout_s: float | None = None,
    fields: dict[str, str] | None = None,
) -> list[ReceivedFile]:
    """Read the multipart body of `request`, keeping each file part of `field_name` on disk.

    Args:
        request: a `multipart/form-data` request.
        field_name: the form field that carries files (`image` or `images`).
        incoming_path: returns a fresh temporary path for each kept file.
        max_file_bytes: the per-file limit, bytes.
        max_files: the most file parts accepted.
        fail_fast: raise 413 at the first part over the limit (single upload) instead of
            dropping it and going on (batch).
        idle_timeout_s: the longest wait for the next piece of the body, seconds.
        fields: when given, filled with the form's other (non-file) fields, name → text
            (UTF-8, at most MAX_FIELD_BYTES each); when None they are ignored.

    Returns:
        The file parts in request order.

    Raises:
        BadUploadRequest: not multipart; a boundary that is missing or not RFC 2046's;
            broken framing (a part header line too long, too many header lines or parts, no
            closing boundary, ...); too many files; or no file in `field_name`; with
            `fields`, a field sent twice, longer than MAX_FIELD_BYTES or not UTF-8.
        ImageTooLarge: with `fail_fast`, a part went over `max_file_bytes`; or the body
            is longer than `max_files` files of `max_file_bytes` (plus framing) can be.
        UploadTimeout: nothing arrived for `idle_timeout_s` seconds (408).
        InsufficientStorage: the disk filled up while the file was written (507).
    Every temporary file is removed when an error is raised.
    """
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data" or b"boundary" not in params:
        raise BadUploadRequest(
            f"send the image as multipart/form-data with the file in the field '{field_name}'"
            f" (e.g. curl -F {field_name}=@board.jpg ...)"
        )
    boundary = params[b"boundary"]
    if not BOUNDARY_PATTERN.fullmatch(boundary):
        raise BadUploadRequest(
            "the multipart boundary must be 1 to 70 letters, digits or '()+_,-./:=? (RFC 2046"
            " section 5.1.1); send the form with a standard client (e.g. curl -F)"
        )
    max_body_bytes = max_files * (max_file_bytes + MULTIPART_OVERHEAD_BYTES)
    declared = request.headers.get("content-length")
    declared_bytes = (
        int(declared) if declared is not None and declared.isascii() and declared.isdigit() else 0
    )
    if fail_fast and declared_bytes > max_file_bytes + MULTIPART_OVERHEAD_BYTES:
        raise ImageTooLarge(_too_large_text(None, max_file_bytes))
    if declared_bytes > max_body_bytes:
        raise ImageTooLarge(_too_long_body_text(max_files, max_file_bytes))

    files: list[ReceivedFile] = []
    events: list[tuple[str, bytes]] = []
    header_field = bytearray()
    header_value = bytearray()
    headers: dict[bytes, bytes] = {}

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header_field.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header_value.extend(data[start:end])

    def on_header_end() -> None:
        headers[bytes(header_field).lower()] = bytes(header_value)
        header_field.clear()
        header_value.clear()

    def on_part_begin() -> None:
        headers.clear()

    def on_headers_finished() -> None:
        events.append(("part", headers.get(b"content-disposition", b"")))

    def on_part_data(data: bytes, start: int, end: int) -> None:
        events.append(("data", data[start:end]))

    def on_part_end() -> None:
        events.append(("end", b""))

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
        },
        max_header_count=MAX_PART_HEADERS,
        max_header_size=MAX_PART_HEADER_BYTES,
    )
    current: ReceivedFile | None = None
    field_part: tuple[str, bytearray] | None = None
    parts = 0
    received_bytes = 0
    try:
        async for chunk in _chunks(request, idle_timeout_s):
            received_bytes += len(chunk)
            if received_bytes > max_body_bytes:
                raise ImageTooLarge(_too_long_body_text(max_files, max_file_bytes))
            try:
                parser.write(chunk)
            except ValueError as exc:  # python-multipart's FormParserError and its kin
                raise BadUploadRequest(f"the multipart body is malformed: {exc}") from exc
            for kind, payload in events:
                if kind == "part":
                    parts += 1
                    if parts > max_files + MAX_OTHER_PARTS:
                        raise BadUploadRequest(
                            f"the multipart body has more than {max_files + MAX_OTHER_PARTS}"
                            f" parts: send at most {max_files} files and no other fields"
                        )
                    current = _start_part(
                        payload, field_name, files, max_files, incoming_path, fail_fast
                    )
                    field_part = (
                        _start_field(payload, fields)
                        if current is None and fields is not None
                        else None
                    )
                elif kind == "data" and current is not None:
                    await _append(current, payload, max_file_bytes, fail_fast)
                elif kind == "data" and field_part is not None:
                    _append_field(field_part, payload)
                elif kind == "end" and current is not None:
                    await _flush(current, final=True)
                    current = None
                elif kind == "end" and field_part is not None and fields is not None:
                    fields[field_part[0]] = _field_text(field_part)
                    field_part = None
            events.clear()
        parser.finalize()
    except ClientDisconnect as exc:
        await discard(files)
        raise BadUploadRequest("the client disconnected before the upload finished") from exc
    except BaseException:
        await discard(files)
        raise
    if current is not None:  # body ended inside a part
        await discard(files)
        raise BadUploadRequest("the multipart body ended in the middle of a file; send it again")
    if parser.state != MultipartState.END:
        await discard(files)
        raise BadUploadRequest(
            "the multipart body has no closing boundary (--BOUNDARY--); it may have been cut"
            " short: send it again"
        )
    if not files:
        raise BadUploadRequest(
            f"no file in the form field '{field_name}'; send the image as"
            f" multipart/form-data field '{field_name}'"
        )
    return files


async def _chunks(request: Request, idle_timeout_s: float | None) -> AsyncIterator[bytes]:
    """The body of `request` piece by piece, each awaited at most `idle_timeout_s` seconds."""
    stream = request.stream().__aiter__()
    while True:
        try:
            with anyio.fail_after(idle_timeout_s):
                chunk = await stream.__anext__()
        except StopAsyncIteration:
            return
        except TimeoutError as exc:
            raise UploadTimeout(
                f"the upload stalled: nothing arrived for {idle_timeout_s:g} s"
                " (UPLOAD_IDLE_TIMEOUT_S); nothing was kept, send it again"
            ) from exc
        yield chunk


def _start_field(disposition: bytes, fields: dict[str, str]) -> tuple[str, bytearray] | None:
    _, options = parse_options_header(disposition)
    if b"filename" in options:
        return None  # a file in another field: ignored
    name = printable(options.get(b"name", b"").decode("utf-8", "replace"), 64)
    if name in fields:
        raise BadUploadRequest(f"the form field {name!r} is sent twice; send it once")
    return name, bytearray()


def _append_field(part: tuple[str, bytearray], data: bytes) -> None:
    part[1].extend(data)
    if len(part[1]) > MAX_FIELD_BYTES:
        raise BadUploadRequest(
            f"the form field {part[0]!r} is longer than {MAX_FIELD_BYTES // 1024} KiB"
        )


def _field_text(part: tuple[str, bytearray]) -> str:
    try:
        return part[1].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadUploadRequest(f"the form field {part[0]!r} is not UTF-8 text") from exc


def _start_part(
    disposition: bytes,
    field_name: str,
    files: list[ReceivedFile],
    max_files: int,
    incoming_path: Callable[[], Path],
    fail_fast: bool,
) -> ReceivedFile | None:
    _, options = parse_options_header(disposition)
    name = options.get(b"name", b"").decode("utf-8", "replace")
    if name != field_name or b"filename" not in options:
        return None
    if len(files) >= max_files:
        raise BadUploadRequest(
            f"too many files: at most {max_files} per request (MAX_BATCH_SIZE); split the batch"
        )
    filename = options[b"filename"].decode("utf-8", "replace") or "unnamed"
    if has_control_characters(filename) or len(filename) > MAX_FILENAME_LENGTH:
        problem = BadUploadRequest(
            f"the file name {printable(filename, 80)!r} holds control characters (such as NUL)"
            f" or is longer than {MAX_FILENAME_LENGTH} characters; rename the file"
        )
        if fail_fast:
            raise problem
        received = ReceivedFile(filename=printable(filename, 255), path=None, problem=problem)
        files.append(received)
        return received
    received = ReceivedFile(filename=filename, path=incoming_path())
    files.append(received)
    return received


async def _append(part: ReceivedFile, data: bytes, limit: int, fail_fast: bool) -> None:
    if part.too_large or part.problem is not None:
        return
    part.size_bytes += len(data)
    if part.size_bytes > limit:
        if fail_fast:
            raise ImageTooLarge(_too_large_text(part.filename, limit))
        part.too_large = True
        part._buffer.clear()
        await _close_and_remove(part)
        return
    part._buffer.extend(data)
    if len(part._buffer) >= FLUSH_BYTES:
        await _flush(part, final=False)


async def _flush(part: ReceivedFile, final: bool) -> None:
    if part.too_large or part.path is None:
        return
    data = bytes(part._buffer)
    part._buffer.clear()
    path = part.path

    def write() -> None:
        if part._handle is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            part._handle = path.open("wb")
        part._handle.write(data)
        part._hasher.update(data)  # in this worker thread: hashlib releases the GIL
        if final:
            part._handle.close()
            part._handle = None
            part.sha256 = part._hasher.hexdigest()

    try:
        await anyio.to_thread.run_sync(write)
    except OSError as exc:
        if not is_disk_full(exc):
            raise
        raise InsufficientStorage(disk_full_text("the upload")) from exc


async def _close_and_remove(part: ReceivedFile) -> None:
    path, handle = part.path, part._handle
    part.path, part._handle = None, None

    def remove() -> None:
        if handle is not None:
            with contextlib.suppress(OSError):  # e.g. a full disk fails the last flush
                handle.close()
        if path is not None:
            path.unlink(missing_ok=True)

    await anyio.to_thread.run_sync(remove)


async def discard(files: list[ReceivedFile]) -> None:
    """Delete the temporary files of `files` (after an error, or once they are moved)."""
    for part in files:
        await _close_and_remove(part)


def _too_large_text(filename: str | None, limit: int) -> str:
    what = f"'{filename}'" if filename else "the upload"
    return (
        f"{what} is larger than the limit of {limit / (1024 * 1024):.0f} MiB (MAX_FILE_SIZE_MB);"
        " upload a smaller image"
    )


def _too_long_body_text(max_files: int, limit: int) -> str:
    return (
        f"the request body is longer than {max_files} file(s) of at most"
        f" {limit / (1024 * 1024):.0f} MiB can be (MAX_BATCH_SIZE, MAX_FILE_SIZE_MB); send"
        " fewer or smaller images"
    )


def disk_full_text(what: str) -> str:
    """The message of a 507: which write failed and what to do."""
    return (
        f"the disk holding the agent's data is full: {what} could not be written and nothing"
        " of it was kept; free disk space (GET /api/health shows it) and send it again"
    )
