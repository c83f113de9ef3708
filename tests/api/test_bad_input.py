"""The bad-input corpus: hostile and malformed requests to every route.

Each case asserts what a client and an operator would notice: the status, a JSON
error body `{"error", "detail", "request_id"}` whose id is the `X-Request-ID` header,
and that no file and no row was added (the data folder and the tables are the same
before and after).
"""

from __future__ import annotations

import base64
import io
import json
import logging
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest
from PIL import Image as PILImage

from app.services.history.queries import QueryService
from app.services.model_service.reference import ReferenceService
from app.utils.logging import configure_logging
from tests.conftest import agent_settings
from tests.support import (
    AgentServer,
    db_rows,
    make_image,
    raw_exchange,
    serve_agent,
    trickle,
)

TABLES = (
    "images",
    "classes",
    "regions",
    "inspections",
    "batches",
    "region_verdicts",
    "image_dispositions",
    "review_events",
    "golden_boards",
    "golden_registrations",
    "model_answers",
    "answer_regions",
)
WHO = {"X-Reviewer": "qc-anna"}
BIG = str(10**30)
NUL = "%00"
ID = "20260225_103045_ABC123"


def forged_cursor(*values: Any) -> str:
    """A cursor of the agent's form (base64url of a JSON array) holding any values."""
    raw = json.dumps(list(values)).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


STAMP = "2026-02-25T10:30:45+00:00"
IMAGES_CURSOR = forged_cursor(1, "succeeded", STAMP, ID)
DEFECTS_CURSOR = forged_cursor(1, "defects", STAMP, ID, 1, 1, 1)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_with_bad_idat_crc() -> bytes:
    """A whole PNG whose IDAT chunk checksum is wrong (every other byte is right)."""
    data = bytearray(make_image("PNG", (64, 48)))
    at = data.index(b"IDAT")
    length = struct.unpack(">I", data[at - 4 : at])[0]
    data[at + 4 + length] ^= 0xFF
    return bytes(data)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims `width` x `height` pixels (a decompression bomb's header)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def big_png(width: int, height: int) -> bytes:
    """A real, whole PNG of `width` x `height` grey pixels (compresses to little)."""
    buffer = io.BytesIO()
    PILImage.new("L", (width, height), 0).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def two_page_tiff() -> bytes:
    buffer = io.BytesIO()
    first, second = PILImage.new("L", (32, 32), 10), PILImage.new("L", (32, 32), 200)
    first.save(buffer, "TIFF", save_all=True, append_images=[second])
    return buffer.getvalue()


def gif() -> bytes:
    buffer = io.BytesIO()
    PILImage.new("L", (8, 8)).save(buffer, "GIF")
    return buffer.getvalue()


@dataclass
class Case:
    """One bad request and the answer it must get."""

    id: str
    method: str
    path: str
    status: int
    error: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    detail_has: str = ""


def upload(content: bytes, name: str = "board.png", field_name: str = "image") -> dict[str, Any]:
    return {"files": {field_name: (name, content, "application/octet-stream")}}


def batch(*files: tuple[str, bytes]) -> dict[str, Any]:
    return {"files": [("images", (n, c, "application/octet-stream")) for n, c in files]}


def named_part(field_name: str, raw_name: bytes, content: bytes) -> bytes:
    """One multipart part whose file name is sent byte for byte (clients percent-encode
    control characters; a hostile client does not)."""
    return (
        b'--XyZ\r\nContent-Disposition: form-data; name="'
        + field_name.encode()
        + b'"; filename="'
        + raw_name
        + b'"\r\nContent-Type: image/png\r\n\r\n'
        + content
        + b"\r\n"
    )


def raw_multipart(body: bytes, boundary: str = "XyZ") -> dict[str, Any]:
    return {
        "content": body,
        "headers": {"content-type": f"multipart/form-data; boundary={boundary}"},
    }


def framed(boundary: bytes, *parts: bytes, close: bool = True) -> dict[str, Any]:
    """A multipart body with `boundary` (sent as is, quoted) around `parts` (each a part's
    header lines and content), closed with `--boundary--` unless `close` is False."""
    body = b"".join(b"--" + boundary + b"\r\n" + part + b"\r\n" for part in parts)
    if close:
        body += b"--" + boundary + b"--\r\n"
    header = b'multipart/form-data; boundary="' + boundary + b'"'
    return {"content": body, "headers": {"content-type": header.decode("latin-1")}}


def image_part(field_name: str = "image", *extra_headers: bytes) -> bytes:
    """One well-formed image part (with `extra_headers` lines before its blank line)."""
    head = b'Content-Disposition: form-data; name="%s"; filename="a.png"\r\n' % (
        field_name.encode()
    )
    return head + b"".join(h + b"\r\n" for h in extra_headers) + b"\r\n" + make_image()


def text_part(name: str) -> bytes:
    return b'Content-Disposition: form-data; name="%s"\r\n\r\nvalue' % name.encode()


CASES = [
    # -- ids in the path: NUL bytes, injection, traversal, wrong shape -------------------
    Case("image-id-nul", "GET", f"/api/images/{NUL}", 422, "invalid_request"),
    Case("image-id-trailing-nul", "GET", f"/api/images/{ID[:-1]}{NUL}", 422, "invalid_request"),
    Case("image-id-sql", "GET", "/api/images/1'%20OR%20'1'='1", 422, "invalid_request"),
    Case("image-id-traversal", "GET", "/api/images/..%2F..%2Fetc%2Fpasswd", 404, "http_error"),
    Case("image-id-lowercase", "GET", f"/api/images/{ID.lower()}", 422, "invalid_request"),
    Case("classes-id-nul", "GET", f"/api/images/{NUL}/classes", 422, "invalid_request"),
    Case("regions-id-nul", "GET", f"/api/images/{NUL}x/regions", 422, "invalid_request"),
    Case("delete-id-nul", "DELETE", f"/api/images/{NUL}", 422, "invalid_request"),
    Case("retry-id-nul", "POST", f"/api/images/{NUL}/retry", 422, "invalid_request"),
    Case(
        "retry-unknown", "POST", "/api/images/20990101_000000_NOPE00/retry", 404, "image_not_found"
    ),
    Case("download-id-nul", "GET", f"/api/download/image/{NUL}/input", 422, "invalid_request"),
    Case(
        "download-format-gif",
        "GET",
        f"/api/download/image/{ID}/input?format=gif",
        422,
        "invalid_request",
    ),
    Case("download-kind-nul", "GET", f"/api/download/image/{ID}/{NUL}", 422, "invalid_request"),
    Case("download-kind-unknown", "GET", f"/api/download/image/{ID}/raw", 422, "invalid_request"),
    Case("json-id-nul", "GET", f"/api/download/json/{NUL}", 422, "invalid_request"),
    Case("zip-id-nul", "GET", f"/api/download/batch/B_{NUL}", 422, "invalid_request"),
    Case("zip-id-image-id", "GET", f"/api/download/batch/{ID}", 422, "invalid_request"),
    Case("batch-id-nul", "GET", f"/api/batches/{NUL}", 422, "invalid_request"),
    Case(
        "thumbnail-size-huge",
        "GET",
        f"/api/images/{ID}/thumbnail?size={BIG}",
        422,
        "invalid_request",
    ),
    Case(
        "thumbnail-kind-nul",
        "GET",
        f"/api/images/{ID}/thumbnail?kind={NUL}",
        422,
        "invalid_request",
    ),
    # -- query parameters: NUL, huge and negative numbers, impossible dates ---------------
    Case("page-huge", "GET", f"/api/images?page={BIG}", 422, "invalid_request", detail_has="page"),
    Case("page-beyond-bound", "GET", "/api/images?page=1000001", 422, "invalid_request"),
    Case("page-zero", "GET", "/api/images?page=0", 422, "invalid_request"),
    Case("page-fraction", "GET", "/api/images?page=1.5", 422, "invalid_request"),
    Case("limit-over", "GET", "/api/images?limit=101", 422, "invalid_request"),
    Case("limit-text", "GET", "/api/images?limit=ten", 422, "invalid_request"),
    Case("min-defects-huge", "GET", f"/api/images?min_defects={BIG}", 422, "invalid_request"),
    Case("min-defects-int4", "GET", f"/api/images?min_defects={2**31}", 422, "invalid_request"),
    Case("min-defects-negative", "GET", "/api/images?min_defects=-1", 422, "invalid_request"),
    Case("search-too-long", "GET", f"/api/images?q={'a' * 101}", 422, "invalid_request"),
    Case("search-nul", "GET", f"/api/images?q=a{NUL}", 422, "invalid_request"),
    Case("class-name-nul", "GET", f"/api/images?class_name=a{NUL}b", 422, "invalid_request"),
    Case("class-name-tab", "GET", "/api/images?class_name=%09open", 422, "invalid_request"),
    Case("class-name-long", "GET", f"/api/images?class_name={'x' * 200}", 422, "invalid_request"),
    Case("batch-filter-nul", "GET", f"/api/images?batch_id={NUL}", 422, "invalid_request"),
    Case("start-date-number", "GET", "/api/images?start_date=0", 422, "invalid_request"),
    Case("start-date-month-13", "GET", "/api/images?start_date=2026-13-01", 422, "invalid_request"),
    Case("end-date-year-99999", "GET", "/api/images?end_date=99999-01-01", 422, "invalid_request"),
    Case(
        "end-date-datetime", "GET", "/api/images?end_date=2026-01-01T10:00", 422, "invalid_request"
    ),
    Case("min-area-huge", "GET", f"/api/query/defects?min_area={BIG}", 422, "invalid_request"),
    Case("max-area-huge", "GET", f"/api/query/defects?max_area={BIG}", 422, "invalid_request"),
    Case("max-area-negative", "GET", "/api/query/defects?max_area=-5", 422, "invalid_request"),
    Case("cursor-symbols", "GET", "/api/images?cursor=%21%21%21", 422, "invalid_request"),
    Case("cursor-nul", "GET", f"/api/images?cursor=a{NUL}b", 422, "invalid_request"),
    Case("cursor-too-long", "GET", f"/api/images?cursor={'A' * 600}", 422, "invalid_request"),
    Case(
        "cursor-not-ours",
        "GET",
        "/api/images?cursor=abc",
        422,
        "invalid_request",
        detail_has="next_cursor",
    ),
    Case(
        "cursor-and-page",
        "GET",
        f"/api/images?page=2&cursor={IMAGES_CURSOR}",
        422,
        "invalid_request",
        detail_has="page or cursor",
    ),
    Case(
        "cursor-of-defects-on-images",
        "GET",
        f"/api/images?cursor={DEFECTS_CURSOR}",
        422,
        "invalid_request",
        detail_has="another listing",
    ),
    Case(
        "cursor-of-another-status",
        "GET",
        f"/api/images?status=failed&cursor={IMAGES_CURSOR}",
        422,
        "invalid_request",
        detail_has="another listing",
    ),
    Case(
        "cursor-forged-id",
        "GET",
        "/api/images?cursor=" + forged_cursor(1, "succeeded", STAMP, "x' OR '1'='1"),
        422,
        "invalid_request",
        detail_has="img_unique_id",
    ),
    Case(
        "cursor-forged-naive-time",
        "GET",
        f"/api/images?cursor={forged_cursor(1, 'succeeded', '2026-02-25T10:30:45', ID)}",
        422,
        "invalid_request",
        detail_has="timestamp",
    ),
    Case(
        "cursor-version-2",
        "GET",
        f"/api/images?cursor={forged_cursor(2, 'succeeded', STAMP, ID)}",
        422,
        "invalid_request",
    ),
    Case("defects-cursor-garbage", "GET", "/api/query/defects?cursor=zzzz", 422, "invalid_request"),
    Case(
        "defects-cursor-of-images",
        "GET",
        f"/api/query/defects?cursor={IMAGES_CURSOR}",
        422,
        "invalid_request",
        detail_has="another listing",
    ),
    Case(
        "defects-cursor-int8-overflow",
        "GET",
        f"/api/query/defects?cursor={forged_cursor(1, 'defects', STAMP, ID, 1, 1, 2**70)}",
        422,
        "invalid_request",
        detail_has="out of range",
    ),
    Case(
        "defects-cursor-bool",
        "GET",
        f"/api/query/defects?cursor={forged_cursor(1, 'defects', STAMP, ID, True, 1, 1)}",
        422,
        "invalid_request",
    ),
    Case(
        "defects-id-nul", "GET", f"/api/query/defects?img_unique_id={NUL}", 422, "invalid_request"
    ),
    Case(
        "defects-class-nul", "GET", f"/api/query/defects?class_name={NUL}", 422, "invalid_request"
    ),
    Case(
        "export-csv-batch-traversal",
        "GET",
        "/api/export/regions.csv?batch_id=../../etc",
        422,
        "invalid_request",
    ),
    Case(
        "export-csv-area-huge",
        "GET",
        f"/api/export/regions.csv?min_area={BIG}",
        422,
        "invalid_request",
    ),
    Case(
        "export-coco-class-nul",
        "GET",
        f"/api/export/coco.json?class_name={NUL}",
        422,
        "invalid_request",
    ),
    Case(
        "export-coco-range-reversed",
        "GET",
        "/api/export/coco.json?date_range=2026-02-02..2026-02-01",
        422,
        "invalid_request",
    ),
    Case(
        "export-dataset-ratios-nul",
        "GET",
        f"/api/export/dataset.zip?ratios=1,1,{NUL}",
        422,
        "invalid_request",
    ),
    Case(
        "export-dataset-ratios-huge",
        "GET",
        f"/api/export/dataset.zip?ratios={BIG},1,{'9' * 70}",
        422,
        "invalid_request",
    ),
    Case(
        "export-dataset-split-unknown",
        "GET",
        "/api/export/dataset.zip?split_by=week",
        422,
        "invalid_request",
    ),
    Case(
        "export-dataset-model-version-nul",
        "GET",
        f"/api/export/dataset.zip?model_version=v{NUL}",
        422,
        "invalid_request",
    ),
    # -- replays (docs/replay.md) ---------------------------------------------------------
    Case("replay-unknown", "GET", "/api/replays/999999", 404, "replay_not_found"),
    Case("replay-id-huge", "GET", f"/api/replays/{BIG}", 422, "invalid_request"),
    Case("replay-resume-zero", "POST", "/api/replays/0/resume", 422, "invalid_request"),
    Case(
        "replay-no-selection",
        "POST",
        "/api/replays",
        422,
        "invalid_request",
        {"json": {"model_url": "http://127.0.0.1:9/"}},
    ),
    Case(
        "replay-url-nul",
        "POST",
        "/api/replays",
        422,
        "invalid_request",
        {"json": {"model_url": "http://a\x00b/", "product": "A"}},
    ),
    Case(
        "replay-url-huge",
        "POST",
        "/api/replays",
        422,
        "invalid_request",
        {"json": {"model_url": "http://" + "a" * 10_000, "product": "A"}},
    ),
    Case(
        "replay-url-unsplittable",  # found by schemathesis: a "]" in the host was a 500
        "POST",
        "/api/replays",
        422,
        "invalid_request",
        {"json": {"model_url": "http://\U000a5688\u0112f4]P", "product": "A"}},
        detail_has="not a usable model service URL",
    ),
    Case(
        "replay-url-port-10e30",
        "POST",
        "/api/replays",
        422,
        "invalid_request",
        {"json": {"model_url": "http://127.0.0.1:" + "1" + "0" * 30 + "/", "product": "A"}},
        detail_has="not a usable model service URL",
    ),
    Case(
        "replay-product-nul",
        "POST",
        "/api/replays",
        422,
        "invalid_request",
        {"json": {"model_url": "http://127.0.0.1:9/", "product": "a\x00b"}},
    ),
    Case(
        "replay-url-unknown-credentials",
        "POST",
        "/api/replays",
        422,
        "invalid_request",
        {"json": {"model_url": "http://user:secret@127.0.0.1:9/", "product": "A"}},
        detail_has="never stores credentials",
    ),
    Case(
        "replay-unknown-field",
        "POST",
        "/api/replays",
        422,
        "invalid_request",
        {"json": {"model_url": "http://127.0.0.1:9/", "product": "A", "x": 1}},
    ),
    # -- SPC and reports ---------------------------------------------------------------
    Case(
        "spc-p-chart-day-13",
        "GET",
        "/api/spc/p-chart?start_date=2026-13-01",
        422,
        "invalid_request",
    ),
    Case(
        "spc-u-chart-nul-class",
        "GET",
        f"/api/spc/u-chart?class={NUL}",
        422,
        "invalid_request",
    ),
    Case("spc-alarms-limit-huge", "GET", f"/api/spc/alarms?limit={BIG}", 422, "invalid_request"),
    Case("report-day-13", "GET", "/api/reports/2026-13-01", 422, "invalid_request"),
    Case(
        "report-format-unknown",
        "GET",
        "/api/reports/2026-02-25?format=docx",
        422,
        "invalid_request",
    ),
    # -- review ------------------------------------------------------------------------
    Case(
        "review-figures-range-reversed",
        "GET",
        "/api/review/figures?start_date=2026-02-02&end_date=2026-01-01",
        422,
        "invalid_request",
    ),
    Case("audit-next-no-reviewer", "GET", "/api/review/audit/next", 422, "invalid_request"),
    Case(
        "audit-image-id-nul",
        "GET",
        f"/api/review/audit/images/{NUL}",
        422,
        "invalid_request",
        {"headers": WHO},
    ),
    Case(
        "audit-verdict-region-huge",
        "PUT",
        f"/api/review/audit/regions/{BIG}/verdict",
        422,
        "invalid_request",
        {"json": {"verdict": "real"}, "headers": WHO},
    ),
    Case(
        "verdict-reason-nul",
        "PUT",
        "/api/regions/1/verdict",
        422,
        "invalid_request",
        {"json": {"verdict": "false_call", "reason": "du\x00st"}, "headers": WHO},
    ),
    Case(
        "verdict-reason-huge",
        "PUT",
        "/api/regions/1/verdict",
        422,
        "invalid_request",
        {"json": {"verdict": "real", "reason": "d" * 100_000}, "headers": WHO},
    ),
    Case(
        "verdict-reason-number",
        "PUT",
        "/api/regions/1/verdict",
        422,
        "invalid_request",
        {"json": {"verdict": "real", "reason": 10**30}, "headers": WHO},
    ),
    Case(
        "audit-verdict-reason-with-unsure",
        "PUT",
        "/api/review/audit/regions/1/verdict",
        422,
        "invalid_request",
        {"json": {"verdict": "unsure", "reason": "dust"}, "headers": WHO},
    ),
    Case(
        "reasons-nul",
        "PUT",
        "/api/review/reasons",
        422,
        "invalid_request",
        {"json": {"reasons": ["du\x00st"]}},
    ),
    Case(
        "reasons-huge",
        "PUT",
        "/api/review/reasons",
        422,
        "invalid_request",
        {"json": {"reasons": ["r" * 100_000]}},
    ),
    Case(
        "reasons-too-many",
        "PUT",
        "/api/review/reasons",
        422,
        "invalid_request",
        {"json": {"reasons": [f"r{i}" for i in range(10_000)]}},
    ),
    Case(
        "reasons-number",
        "PUT",
        "/api/review/reasons",
        422,
        "invalid_request",
        {"json": {"reasons": [10**30]}},
    ),
    Case(
        "reasons-not-a-list",
        "PUT",
        "/api/review/reasons",
        422,
        "invalid_request",
        {"json": {"reasons": "dust,oxidation"}},
    ),
    Case(
        "false-call-reasons-reversed",
        "GET",
        "/api/dashboard/false-calls/reasons?start_date=2026-02-02&end_date=2026-01-01",
        422,
        "invalid_request",
    ),
    Case(
        "false-call-reasons-class-nul",
        "GET",
        f"/api/dashboard/false-calls/reasons?class_name={NUL}",
        422,
        "invalid_request",
    ),
    Case(
        "false-call-reasons-model-huge",
        "GET",
        "/api/dashboard/false-calls/reasons?model_version=" + "m" * 300,
        422,
        "invalid_request",
    ),
    Case(
        "verdict-region-zero",
        "PUT",
        "/api/regions/0/verdict",
        422,
        "invalid_request",
        {"json": {"verdict": "real"}, "headers": WHO},
    ),
    Case(
        "verdict-region-huge",
        "PUT",
        f"/api/regions/{BIG}/verdict",
        422,
        "invalid_request",
        {"json": {"verdict": "real"}, "headers": WHO},
    ),
    Case(
        "verdict-region-unknown",
        "PUT",
        "/api/regions/999999999/verdict",
        404,
        "region_not_found",
        {"json": {"verdict": "real"}, "headers": WHO},
    ),
    Case(
        "verdict-body-over-max-request-body",
        "PUT",
        "/api/regions/1/verdict",
        413,
        "request_too_large",
        {
            "content": b'{"verdict": "real", "note": "' + b"a" * (2 * 1024 * 1024) + b'"}',
            "headers": {**WHO, "content-type": "application/json"},
        },
        detail_has="MAX_REQUEST_BODY_KB",
    ),
    Case(
        "verdict-body-chunked-over-max-request-body",
        "PUT",
        "/api/regions/1/verdict",
        413,
        "request_too_large",
        {
            "content": iter([b'{"verdict": "real", "note": "'] + [b"a" * 65536] * 32 + [b'"}']),
            "headers": {**WHO, "content-type": "application/json"},
        },
    ),
    Case(
        "verdict-body-nested-100000-deep",
        "PUT",
        "/api/regions/1/verdict",
        400,
        "http_error",
        {
            "content": b"[" * 100_000 + b"]" * 100_000,
            "headers": {**WHO, "content-type": "application/json"},
        },
    ),
    Case(
        "verdict-value-unknown",
        "PUT",
        "/api/regions/1/verdict",
        422,
        "invalid_request",
        {"json": {"verdict": "maybe"}, "headers": WHO},
    ),
    Case(
        "verdict-no-reviewer",
        "PUT",
        "/api/regions/1/verdict",
        422,
        "invalid_request",
        {"json": {"verdict": "real"}},
        detail_has="X-Reviewer",
    ),
    Case(
        "verdict-reviewer-nul",
        "PUT",
        "/api/regions/1/verdict",
        422,
        "invalid_request",
        {"json": {"verdict": "real"}, "headers": {"X-Reviewer": "ann%00"}},
    ),
    Case(
        "images-reviewer-10kb",
        "GET",
        "/api/images",
        422,
        "invalid_request",
        {"headers": {"X-Reviewer": "a" * 10_000}},
        detail_has="x-reviewer",
    ),
    Case(
        "image-reviewer-10kb",
        "GET",
        "/api/images/20260225_103045_ABC123",
        422,
        "invalid_request",
        {"headers": {"X-Reviewer": "%00" * 3000}},
        detail_has="x-reviewer",
    ),
    Case(
        "verdict-comment-nul",
        "PUT",
        "/api/regions/1/verdict",
        422,
        "invalid_request",
        {"json": {"verdict": "real", "comment": "a\x00b"}, "headers": WHO},
    ),
    Case(
        "verdict-body-not-json",
        "PUT",
        "/api/regions/1/verdict",
        422,
        "invalid_request",
        {"content": b"{", "headers": {**WHO, "content-type": "application/json"}},
    ),
    Case(
        "disposition-id-nul",
        "PUT",
        f"/api/images/{NUL}/disposition",
        422,
        "invalid_request",
        {"json": {"disposition": "pass"}, "headers": WHO},
    ),
    Case(
        "disposition-unknown-image",
        "PUT",
        "/api/images/20990101_000000_NOPE00/disposition",
        404,
        "image_not_found",
        {"json": {"disposition": "pass"}, "headers": WHO},
    ),
    Case(
        "disposition-value-unknown",
        "PUT",
        f"/api/images/{ID}/disposition",
        422,
        "invalid_request",
        {"json": {"disposition": "ship-it"}, "headers": WHO},
    ),
    # -- golden boards (docs/golden.md) ---------------------------------------------------
    Case(
        "golden-id-nul", "PUT", f"/api/golden/g{NUL}", 422, "invalid_request", upload(make_image())
    ),
    Case("golden-id-dash", "PUT", "/api/golden/-g", 422, "invalid_request", upload(make_image())),
    Case("golden-id-long", "PUT", f"/api/golden/{'g' * 129}", 422, "invalid_request"),
    Case("golden-not-image", "PUT", "/api/golden/g", 415, "unsupported_media_type", upload(b"hi")),
    Case("golden-gif", "PUT", "/api/golden/g", 415, "unsupported_media_type", upload(gif())),
    Case(
        "golden-truncated",
        "PUT",
        "/api/golden/g",
        422,
        "invalid_image",
        upload(make_image()[:-20]),
    ),
    Case("golden-empty", "PUT", "/api/golden/g", 422, "invalid_image", upload(b"")),
    Case("golden-two-pages", "PUT", "/api/golden/g", 422, "invalid_image", upload(two_page_tiff())),
    Case(
        "golden-bomb",
        "PUT",
        "/api/golden/g",
        413,
        "file_too_large",
        upload(png_header_only(100_000, 100_000)),
    ),
    Case("golden-no-file", "PUT", "/api/golden/g", 400, "bad_request", upload(b"x", "a.png", "f")),
    Case(
        "golden-nul-file-name",
        "PUT",
        "/api/golden/g",
        400,
        "bad_request",
        raw_multipart(named_part("image", b"a\x00.png", make_image()) + b"--XyZ--\r\n"),
    ),
    Case(
        "golden-product-nul",
        "PUT",
        f"/api/golden/g?product=a{NUL}b",
        422,
        "invalid_request",
        upload(make_image()),
    ),
    Case("golden-delete-unknown", "DELETE", "/api/golden/nope", 404, "golden_not_found"),
    Case("golden-image-unknown", "GET", "/api/golden/nope/image", 404, "golden_not_found"),
    Case("golden-of-unknown-image", "GET", f"/api/images/{ID}/golden", 404, "image_not_found"),
    Case(
        "golden-crop-huge",
        "GET",
        f"/api/images/{ID}/golden/crop?x=0&y=0&width={BIG}&height=1",
        422,
        "invalid_request",
    ),
    Case(
        "golden-crop-empty",
        "GET",
        f"/api/images/{ID}/golden/crop?x=0&y=0&width=0&height=1",
        422,
        "invalid_request",
    ),
    Case(
        "golden-crop-unknown-image",
        "GET",
        f"/api/images/{ID}/golden/crop?x=0&y=0&width=8&height=8",
        404,
        "image_not_found",
    ),
    Case("review-history-unknown", "GET", f"/api/images/{ID}/review", 404, "image_not_found"),
    Case("review-next-batch-bad", "GET", "/api/review/next?batch_id=x", 422, "invalid_request"),
    Case("review-batches-limit", "GET", "/api/review/batches?limit=abc", 422, "invalid_request"),
    Case(
        "review-next-after-sql",
        "GET",
        "/api/review/next?after=1'%20OR%20'1'='1",
        422,
        "invalid_request",
    ),
    Case(
        "review-next-range-reversed",
        "GET",
        "/api/review/next?date_range=2026-02-02..2026-02-01",
        422,
        "invalid_request",
    ),
    Case(
        "dashboard-review-reversed",
        "GET",
        "/api/dashboard/review?start_date=2026-02-02&end_date=2026-01-01",
        422,
        "invalid_request",
    ),
    Case(
        "dashboard-review-too-long",
        "GET",
        "/api/dashboard/review?start_date=2000-01-01&end_date=2026-01-01",
        422,
        "invalid_request",
    ),
    Case("heatmap-bins-huge", "GET", f"/api/dashboard/heatmap?bins={BIG}", 422, "invalid_request"),
    Case(
        "per-day-class-nul",
        "GET",
        f"/api/dashboard/defects-per-day?class_name={NUL}",
        422,
        "invalid_request",
    ),
    Case(
        "summary-range-reversed",
        "GET",
        "/api/dashboard/summary?start_date=2026-02-02&end_date=2026-01-01",
        422,
        "invalid_request",
    ),
    Case(
        "per-day-range-too-long",
        "GET",
        "/api/dashboard/defects-per-day?start_date=2000-01-01&end_date=2026-01-01",
        422,
        "invalid_request",
    ),
    # -- routing -------------------------------------------------------------------------
    Case("unknown-route", "GET", "/api/nothing-here", 404, "http_error", detail_has="/docs"),
    Case("wrong-method", "PUT", "/api/images", 405, "http_error"),
    Case("stats-post", "POST", "/api/stats", 405, "http_error"),
    Case("health-delete", "DELETE", "/api/health", 405, "http_error"),
    Case("health-live-post", "POST", "/api/health/live", 405, "http_error"),
    Case("health-ready-delete", "DELETE", "/api/health/ready", 405, "http_error"),
    # -- key management ------------------------------------------------------------------
    Case(
        "key-create-bad-scope",
        "POST",
        "/api/keys",
        422,
        "invalid_request",
        {"json": {"name": "line-3", "scope": "root"}},
    ),
    Case(
        "key-create-nul-name",
        "POST",
        "/api/keys",
        422,
        "invalid_request",
        {"json": {"name": "line\u00003", "scope": "read"}},
    ),
    Case("key-create-no-body", "POST", "/api/keys", 422, "invalid_request"),
    Case("key-revoke-nul", "DELETE", f"/api/keys/a{NUL}b", 422, "invalid_request"),
    Case("key-revoke-unknown", "DELETE", "/api/keys/no-such-key", 404, "key_not_found"),
    # -- webhooks ------------------------------------------------------------------------
    Case(
        "webhook-create-nul-url",
        "POST",
        "/api/webhooks",
        422,
        "invalid_request",
        {"json": {"url": "http://10.0.0.1/a\u0000b", "events": ["spc.alarm"]}},
    ),
    Case(
        "webhook-create-huge-url",
        "POST",
        "/api/webhooks",
        422,
        "invalid_request",
        {"json": {"url": "http://10.0.0.1/" + "x" * 100_000, "events": ["spc.alarm"]}},
    ),
    Case(
        "webhook-create-unknown-event",
        "POST",
        "/api/webhooks",
        422,
        "invalid_request",
        {"json": {"url": "http://10.0.0.1/hook", "events": ["spc.alarm", "x" * 10_000]}},
    ),
    Case(
        "webhook-create-number-url",
        "POST",
        "/api/webhooks",
        422,
        "invalid_request",
        {"json": {"url": 10**30, "events": ["spc.alarm"]}},
    ),
    Case("webhook-create-no-body", "POST", "/api/webhooks", 422, "invalid_request"),
    Case("webhook-delete-huge", "DELETE", f"/api/webhooks/{BIG}", 422, "invalid_request"),
    Case("webhook-delete-nul", "DELETE", f"/api/webhooks/1{NUL}", 422, "invalid_request"),
    Case(
        "webhook-delete-unknown",
        "DELETE",
        "/api/webhooks/424242",
        404,
        "webhook_endpoint_not_found",
    ),
    Case(
        "webhook-rotate-huge",
        "POST",
        f"/api/webhooks/{BIG}/rotate-secret",
        422,
        "invalid_request",
    ),
    Case(
        "webhook-rotate-nul",
        "POST",
        f"/api/webhooks/1{NUL}/rotate-secret",
        422,
        "invalid_request",
    ),
    Case(
        "webhook-rotate-unknown",
        "POST",
        "/api/webhooks/424242/rotate-secret",
        404,
        "webhook_endpoint_not_found",
    ),
    Case(
        "webhook-deliveries-huge-limit",
        "GET",
        f"/api/webhooks/1/deliveries?limit={BIG}",
        422,
        "invalid_request",
    ),
    Case(
        "webhook-redeliver-huge",
        "POST",
        f"/api/webhooks/deliveries/{BIG}/redeliver",
        422,
        "invalid_request",
    ),
    Case(
        "webhook-redeliver-unknown",
        "POST",
        "/api/webhooks/deliveries/424242/redeliver",
        404,
        "webhook_delivery_not_found",
    ),
    # -- uploads: not multipart, wrong field, bad files, hostile names ---------------------
    Case("upload-json-body", "POST", "/api/upload", 400, "bad_request", {"json": {"image": "x"}}),
    Case(
        "upload-wrong-field",
        "POST",
        "/api/upload",
        400,
        "bad_request",
        upload(make_image(), field_name="file"),
    ),
    Case("upload-empty", "POST", "/api/upload", 400, "invalid_image", upload(b"")),
    Case(
        "upload-text",
        "POST",
        "/api/upload",
        415,
        "unsupported_media_type",
        upload(b"hello world", "a.png"),
    ),
    Case(
        "upload-gif", "POST", "/api/upload", 415, "unsupported_media_type", upload(gif(), "a.png")
    ),
    Case(
        "upload-truncated-png",
        "POST",
        "/api/upload",
        400,
        "invalid_image",
        upload(make_image("PNG", (200, 200))[:80]),
    ),
    Case(
        "upload-png-bad-crc",
        "POST",
        "/api/upload",
        400,
        "invalid_image",
        upload(png_with_bad_idat_crc()),
        detail_has="checksum",
    ),
    Case(
        "upload-jpeg-garbage",
        "POST",
        "/api/upload",
        400,
        "invalid_image",
        upload(b"\xff\xd8\xff" + b"\x00" * 500, "a.jpg"),
    ),
    Case(
        "upload-two-page-tiff",
        "POST",
        "/api/upload",
        400,
        "invalid_image",
        upload(two_page_tiff(), "scan.tif"),
        detail_has="one page per image",
    ),
    Case(
        "upload-bomb-header",
        "POST",
        "/api/upload",
        413,
        "file_too_large",
        upload(png_header_only(100_000, 100_000)),
    ),
    Case(
        "upload-over-model-service-pixels",
        "POST",
        "/api/upload",
        413,
        "file_too_large",
        upload(big_png(8000, 8000)),
        detail_has="MAX_IMAGE_PIXELS",
    ),
    Case(
        "upload-name-nul",
        "POST",
        "/api/upload",
        400,
        "bad_request",
        raw_multipart(named_part("image", b"a\x00.png", make_image()) + b"--XyZ--\r\n"),
    ),
    Case(
        "upload-name-control-characters",
        "POST",
        "/api/upload",
        400,
        "bad_request",
        raw_multipart(named_part("image", b"a\x1bb\x7f.png", make_image()) + b"--XyZ--\r\n"),
    ),
    Case(
        "upload-bad-include",
        "POST",
        "/api/upload?include_images=zip",
        422,
        "invalid_request",
        upload(make_image()),
    ),
    Case(
        "upload-body-ends-in-file",
        "POST",
        "/api/upload",
        400,
        "bad_request",
        raw_multipart(
            b'--XyZ\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n'
            + make_image()
        ),
    ),
    Case(
        "upload-no-boundary",
        "POST",
        "/api/upload",
        400,
        "bad_request",
        {"content": b"x", "headers": {"content-type": "multipart/form-data"}},
    ),
    # -- multipart framing: every malformed shape is a 400, never a 500 --------------------
    Case(
        "upload-boundary-71-chars",
        "POST",
        "/api/upload",
        400,
        "bad_request",
        framed(b"b" * 71, image_part()),
        detail_has="RFC 2046",
    ),
    Case(
        "upload-boundary-300-chars",
        "POST",
        "/api/upload",
        400,
        "bad_request",
        framed(b"x" * 300, image_part()),
    ),
    Case(
        "batch-boundary-4000-chars",
        "POST",
        "/api/upload/batch",
        400,
        "bad_request",
        framed(b"-" * 4000, image_part("images")),
    ),
    Case(
        "upload-boundary-illegal-characters",
        "POST",
        "/api/upload",
        400,
        "bad_request",
        framed(b"a<b>{c}[d]", image_part()),
    ),
    Case(
        "upload-boundary-ends-in-space",
        "POST",
        "/api/upload",
        400,
        "bad_request",
        framed(b"abc ", image_part()),
    ),
    Case(
        "upload-boundary-empty",
        "POST",
        "/api/upload",
        400,
        "bad_request",
        framed(b"", image_part()),
    ),
    Case(
        "upload-no-closing-boundary",
        "POST",
        "/api/upload",
        400,
        "bad_request",
        {
            "content": framed(b"XyZ", image_part(), close=False)["content"] + b"--XyZ\r\n",
            "headers": {"content-type": "multipart/form-data; boundary=XyZ"},
        },
        detail_has="closing boundary",
    ),
    Case(
        "batch-no-closing-boundary",
        "POST",
        "/api/upload/batch",
        400,
        "bad_request",
        framed(b"XyZ", image_part("images"), image_part("images"), close=False),
    ),
    Case(
        "upload-part-header-line-too-long",
        "POST",
        "/api/upload",
        400,
        "bad_request",
        framed(b"XyZ", image_part("image", b"X-Pad: " + b"a" * 5000)),
    ),
    Case(
        "upload-part-with-many-headers",
        "POST",
        "/api/upload",
        400,
        "bad_request",
        framed(b"XyZ", image_part("image", *(b"X-H%d: v" % i for i in range(20)))),
    ),
    Case(
        "batch-too-many-parts",
        "POST",
        "/api/upload/batch",
        400,
        "bad_request",
        framed(b"XyZ", *(text_part(f"f{i}") for i in range(150)), image_part("images")),
        detail_has="parts",
    ),
    Case(
        "batch-all-bad",
        "POST",
        "/api/upload/batch",
        400,
        "invalid_image",
        raw_multipart(
            named_part("images", b"a.png", b"not an image")
            + named_part("images", b"b\x00.png", make_image())
            + named_part("images", b"c.png", png_with_bad_idat_crc())
            + b"--XyZ--\r\n"
        ),
    ),
    Case(
        "batch-wait-text",
        "POST",
        "/api/upload/batch?wait=perhaps",
        422,
        "invalid_request",
        batch(("a.png", make_image())),
    ),
    # -- board context (docs/boards.md) --------------------------------------------------
    Case("board-serial-nul", "GET", f"/api/boards/SN{NUL}1", 422, "invalid_request"),
    Case("board-serial-long", "GET", "/api/boards/" + "S" * 65, 422, "invalid_request"),
    Case("board-unknown", "GET", "/api/boards/SN-NOBODY", 404, "board_not_found"),
    Case(
        "board-yield-long-range",
        "GET",
        "/api/dashboard/board-yield?start_date=2026-01-01&end_date=2026-12-31",
        422,
        "invalid_request",
    ),
    Case(
        "board-contexts-huge-year",
        "GET",
        "/api/dashboard/board-contexts?start_date=1000000000000000000000000000000-01-01",
        422,
        "invalid_request",
    ),
    Case(
        "board-contexts-nul-range",
        "GET",
        f"/api/dashboard/board-contexts?date_range=2026-01-01{NUL}..",
        422,
        "invalid_request",
    ),
    Case(
        "dashboard-summary-long-product",
        "GET",
        "/api/dashboard/summary?product=" + "P" * 4000,
        422,
        "invalid_request",
    ),
    Case(
        "context-serial-nul",
        "POST",
        "/api/upload",
        422,
        "invalid_request",
        {**upload(make_image()), "data": {"board_serial": "SN\x001"}},
        detail_has="board_serial",
    ),
    Case(
        "context-panel-position-huge",
        "POST",
        "/api/upload",
        422,
        "invalid_request",
        {**upload(make_image()), "data": {"panel_position": BIG}},
        detail_has="panel_position",
    ),
    Case(
        "context-side-wrong",
        "POST",
        "/api/upload",
        422,
        "invalid_request",
        {**upload(make_image()), "data": {"side": "left"}},
        detail_has="side",
    ),
    # -- model versions and their comparison (docs/models.md) ----------------------------
    Case("models-compare-no-a", "GET", "/api/models/compare?b=x", 422, "invalid_request"),
    Case(
        "models-compare-nul",
        "GET",
        f"/api/models/compare?a=v{NUL}1&b=x",
        422,
        "invalid_request",
        detail_has="a",
    ),
    Case(
        "models-compare-long",
        "GET",
        "/api/models/compare?a=" + "v" * 129 + "&b=x",
        422,
        "invalid_request",
    ),
    Case(
        "models-compare-limit-huge",
        "GET",
        f"/api/models/compare?a=x&b=y&limit={BIG}",
        422,
        "invalid_request",
    ),
    Case(
        "models-compare-bad-range",
        "GET",
        "/api/models/compare?a=x&b=y&date_range=2026-02-02..2026-02-01",
        422,
        "invalid_request",
    ),
    Case("models-answer-huge", "GET", f"/api/models/answers/{BIG}", 422, "invalid_request"),
    Case("models-answer-unknown", "GET", "/api/models/answers/424242", 404, "answer_not_found"),
    Case(
        "models-answer-verdict-unknown",
        "PUT",
        "/api/models/answer-regions/424242/verdict",
        404,
        "answer_region_not_found",
        {"json": {"verdict": "real"}, "headers": WHO},
    ),
    Case(
        "models-answer-verdict-unknown-reason",
        "PUT",
        "/api/models/answer-regions/424242/verdict",
        422,
        "unknown_reason",
        {"json": {"verdict": "false_call", "reason": "no-such"}, "headers": WHO},
    ),
    Case(
        "models-answer-verdict-wrong",
        "PUT",
        "/api/models/answer-regions/1/verdict",
        422,
        "invalid_request",
        {"json": {"verdict": "maybe"}, "headers": WHO},
    ),
    Case(
        "models-answer-verdict-not-json",
        "PUT",
        "/api/models/answer-regions/1/verdict",
        422,
        "invalid_request",
        {"content": b"{not json", "headers": {**WHO, "Content-Type": "application/json"}},
    ),
    Case(
        "manifest-bomb",
        "POST",
        "/api/upload/batch",
        422,
        "invalid_request",
        {**batch(("a.png", make_image())), "data": {"manifest": "[" * 100_000}},
        detail_has="manifest",
    ),
]


def _snapshot(agent: AgentServer) -> tuple[set[str], dict[str, int]]:
    data_dir = agent.settings.resolved_data_dir
    logs = agent.settings.resolved_log_dir
    files = {
        p.relative_to(data_dir).as_posix()
        for p in data_dir.rglob("*")
        if p.is_file() and not p.is_relative_to(logs)
    }
    db = agent.settings.database_url or ""
    counts = {t: db_rows(db, f"SELECT count(*) FROM {t}")[0][0] for t in TABLES}
    return files, counts


@pytest.fixture(scope="module")
def stored(agent: AgentServer) -> str:
    """One stored inspection, so the corpus also meets real rows and files."""
    with httpx2.Client(base_url=agent.url, timeout=60) as client:
        response = client.post("/api/upload", **upload(make_image("PNG", (64, 48))))
    assert response.status_code == 200, response.text
    return str(response.json()["img_unique_id"])


def test_the_corpus_is_large_and_covers_every_route(agent: AgentServer) -> None:
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)
    with httpx2.Client(base_url=agent.url) as client:
        spec = client.get("/openapi.json").json()
    templates = {path for path in spec["paths"]}

    def covers(template: str, path: str) -> bool:
        head = template.split("{", 1)[0]
        return path.split("?", 1)[0].startswith(head)

    for template in templates:
        assert any(covers(template, c.path) for c in CASES), f"no bad input for {template}"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gets_a_json_4xx_and_changes_nothing(
    agent: AgentServer, stored: str, case: Case
) -> None:
    before = _snapshot(agent)
    with httpx2.Client(base_url=agent.url, timeout=60) as client:
        response = client.request(case.method, case.path, **case.kwargs)
    assert response.status_code == case.status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["error"] == case.error
    assert isinstance(body["detail"], str)
    assert body["detail"]
    assert "\x00" not in body["detail"]
    assert body["request_id"] == response.headers["x-request-id"]
    assert case.detail_has in body["detail"]
    assert _snapshot(agent) == before


def test_a_sane_request_id_is_kept_and_an_insane_one_replaced(agent: AgentServer) -> None:
    with httpx2.Client(base_url=agent.url) as client:
        kept = client.get("/api/images/%00", headers={"X-Request-ID": "line-7-scan-000123"})
        replaced = client.get("/api/health", headers={"X-Request-ID": "bad id\twith tab"})
    assert kept.headers["x-request-id"] == "line-7-scan-000123"
    assert kept.json()["request_id"] == "line-7-scan-000123"
    assert replaced.headers["x-request-id"] != "bad id\twith tab"
    assert len(replaced.headers["x-request-id"]) == 32


def test_far_dates_are_answered_not_overflowed(agent: AgentServer, stored: str) -> None:
    """9999-12-31 and 0001-01-01 are real days: the queries must not step past them."""
    with httpx2.Client(base_url=agent.url) as client:
        for path in (
            "/api/images?start_date=0001-01-01&end_date=9999-12-31",
            "/api/query/defects?end_date=9999-12-31",
            "/api/dashboard/summary?end_date=9999-12-31",
            "/api/dashboard/defects-per-day?end_date=0001-01-05",
            "/api/dashboard/heatmap?start_date=0001-01-01&end_date=9999-12-31",
        ):
            response = client.get(path)
            assert response.status_code == 200, (path, response.text)
        listed = client.get("/api/images?start_date=0001-01-01&end_date=9999-12-31").json()
    assert stored in {i["img_unique_id"] for i in listed["images"]}


def test_an_unexpected_error_is_json_500_with_its_traceback_in_error_log(
    agent: AgentServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A bug is simulated by making a query raise: no input can cause one on purpose.
    The agent's own logging (as `run.py` sets it up) writes error.log under `tmp_path`."""

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(QueryService, "stats", broken)
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    configure_logging("INFO", tmp_path)
    try:
        with httpx2.Client(base_url=agent.url) as client:
            response = client.get("/api/stats")
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
            handler.close()
        for handler in saved_handlers:
            root.addHandler(handler)
        root.setLevel(saved_level)
        logging.getLogger("uvicorn.access").disabled = False
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["error"] == "internal_error"
    assert body["request_id"] == response.headers["x-request-id"]
    assert body["request_id"] in body["detail"]
    assert "simulated bug" not in body["detail"]
    error_log = (tmp_path / "error.log").read_text(encoding="utf-8")
    line = next(line for line in error_log.splitlines() if body["request_id"] in line)
    assert "simulated bug" in line
    assert "Traceback" in line


def _raw_exchange(agent: AgentServer, request: bytes) -> tuple[bytes, bytes]:
    """Send `request` as raw bytes on a new connection; (head, body) of the answer."""
    return raw_exchange(agent.settings.port, request)


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /api/health HTTP/1.1\r\nHost: agent\r\nX-Line: scan\x01007\r\n\r\n",
        b"THIS IS NOT HTTP\r\n\r\n",
        b"POST /api/upload HTTP/1.1\r\nHost: agent\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GET /api/health HTTP/1.1\r\nConnection: close\r\n\r\n",
        b"POST /api/upload HTTP/1.1\r\nHost: a\r\nHost: b\r\nContent-Length: 0\r\n\r\n",
    ],
    ids=[
        "control-character-in-header",
        "garbage-request-line",
        "broken-chunked-body",
        "http-1-1-without-host",
        "two-hosts",
    ],
)
def test_a_request_the_server_cannot_parse_gets_a_json_400(
    agent: AgentServer, request_bytes: bytes
) -> None:
    """uvicorn answers these itself, before the application sees them: the agent's
    protocol (app/api/http_protocol.py) makes that answer JSON like every other error."""
    head, body = _raw_exchange(agent, request_bytes)
    assert head.startswith(b"HTTP/1.1 400"), head
    assert b"content-type: application/json" in head.lower()
    error = json.loads(body)
    assert error["error"] == "bad_request"
    assert "send it again" in error["detail"]


def test_a_request_head_over_the_bound_gets_a_json_431(agent: AgentServer) -> None:
    """REQUEST_HEAD_MAX_KB (64 KB by default) bounds the request line and headers."""
    cookie = b"Cookie: " + b"a" * 70_000 + b"\r\n"
    head, body = _raw_exchange(agent, b"GET /api/health HTTP/1.1\r\nHost: a\r\n" + cookie + b"\r\n")
    assert head.startswith(b"HTTP/1.1 431"), head
    assert json.loads(body)["error"] == "request_header_too_large"
    within, _ = _raw_exchange(
        agent,
        b"GET /api/health/live HTTP/1.1\r\nHost: a\r\nConnection: close\r\n"
        + b"Cookie: "
        + b"a" * 60_000
        + b"\r\n\r\n",
    )
    assert within.startswith(b"HTTP/1.1 200"), within


def test_an_upload_trickled_at_1_byte_per_second_gets_a_json_408(
    tmp_path: Path, database_url: str, reference_service: ReferenceService
) -> None:
    """The agent itself, with REQUEST_GRACE_S=1 and REQUEST_MIN_RATE_KB_S=1: an upload
    whose body comes at 1 byte/s (never idle for UPLOAD_IDLE_TIMEOUT_S) is answered 408
    within seconds, and nothing of it is kept."""
    settings = agent_settings(
        tmp_path / "data",
        database_url,
        reference_service.url,
        request_grace_s=1,
        request_min_rate_kb_s=1,
    )
    with serve_agent(settings) as slow_agent:
        before = _snapshot(slow_agent)
        took_s, answer = trickle(
            slow_agent.settings.port,
            b"POST /api/upload HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n"
            b"Content-Type: multipart/form-data; boundary=XyZ\r\n\r\n--XyZ\r\n",
            pace_s=1.0,
            limit_s=10,
        )
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408"), head
        assert json.loads(body)["error"] == "request_timeout"
        assert took_s < 5
        assert _snapshot(slow_agent) == before


def test_a_partial_id_in_any_route_is_told_what_a_full_id_looks_like(agent: AgentServer) -> None:
    """Every path parameter with a pattern (inspection and batch ids, key names), in every
    route of the OpenAPI, answered with a wrong value: a 422 that says what the value
    should look like, never the regular expression."""
    with httpx2.Client(base_url=agent.url, timeout=60) as client:
        spec = client.get("/openapi.json").json()
        checked = 0
        for template, operations in spec["paths"].items():
            for method, operation in operations.items():
                params = [
                    p
                    for p in operation.get("parameters", [])
                    if p["in"] == "path" and "pattern" in p["schema"]
                ]
                if not params:
                    continue
                path = template
                for p in params:
                    wrong = {"batch_id": "B_20260225", "img_unique_id": "20260225_1030"}
                    path = path.replace("{" + p["name"] + "}", wrong.get(p["name"], "a%09b"))
                path = path.replace("{kind}", "input").replace("{region_unique_id}", "1")
                response = client.request(method.upper(), path, json={}, headers=WHO)
                assert response.status_code == 422, (method, path, response.text)
                detail = response.json()["detail"]
                assert "pattern" not in detail, (path, detail)
                assert "^" not in detail, (path, detail)
                assert any(w in detail for w in ("e.g.", "letters, digits", "printable")), (
                    path,
                    detail,
                )
                checked += 1
    assert checked >= 12


def test_the_golden_id_pattern_has_its_plain_words() -> None:
    """app/api/params.py spells the golden id's pattern out to avoid an import cycle: it
    must stay the one the golden routes use, or a wrong id would be told the regex."""
    from app.api.params import _PATTERN_PROBLEMS
    from app.services.golden.service import GOLDEN_ID_PATTERN

    assert GOLDEN_ID_PATTERN in _PATTERN_PROBLEMS
