"""The client of the model service (`POST {SEGFORMER_SERVICE_URL}/upload`).

One long-lived `httpx2.AsyncClient` per agent; retries with tenacity; the
contract is in docs/model-service-contract.md.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import json
import logging
import struct
import time
import warnings
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import anyio
import httpx2
from PIL import Image as PILImage
from pydantic import ValidationError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential,
)

from app.config import Settings
from app.errors import BadImage, ModelServiceBadAnswer, ModelServiceUnavailable
from app.models.model_service import (
    RESULT_IMAGE_KINDS,
    Analysis,
    ImageShape,
    ModelServiceAnswer,
    answer_problems,
    normalise_answer,
)
from app.utils import fastjson
from app.utils.ids import utc_now
from app.utils.text import printable

logger = logging.getLogger(__name__)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# A refusal's or a health answer's body: only its first words are shown, so no more is read.
ERROR_BODY_MAX_BYTES = 64 * 1024
# The contract's answer nests 7 levels deep (body, result_json, classes, a class, regions,
# a region, its centroid); anything deeper than this is not a model answer.
MAX_ANSWER_DEPTH = 32
# JSON arrays, objects and separators in one answer (its base64 images hold none): a
# region takes about 15, so this allows ~65,000 regions, while 10^6 tiny containers cost
# at most about 120 MB of Python objects (measured for `{"a":{}},` repeated); an answer
# of 128 MB of `[],` would cost 2.4 GB.
MAX_ANSWER_VALUES = 1_000_000
# Base64 images shorter than this are decoded on the event loop (well under 1 ms).
_INLINE_DECODE_BYTES = 1 << 20
RETRYABLE_STATUS = frozenset({502, 503, 504})
# The contract's refusals of an input file (bad image, too large, wrong type, no file): the
# service works, the file is the problem. Any other status means the service fails.
REFUSED_INPUT_STATUS = frozenset({400, 413, 415, 422})


@dataclass(frozen=True)
class Reply:
    """An HTTP answer of the model service, its body read within a bound.

    Attributes:
        status_code: the HTTP status.
        headers: the answer's headers.
        content: the decoded body (Content-Encoding undone); for a status other than 200
            at most ERROR_BODY_MAX_BYTES of it.
    """

    status_code: int
    headers: httpx2.Headers
    content: bytes | bytearray


class ReadBudget:
    """The bytes the agent still reads from the model service for one inference
    (MODEL_SERVICE_MAX_ANSWER_MB): each accepted body (the answer, a fetched result image)
    takes its share."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self.remaining = limit_bytes

    def too_large(self, what: str) -> ModelServiceBadAnswer:
        """The error for a body that would pass the limit."""
        return ModelServiceBadAnswer(
            f"model service answer: {what} is larger than the agent reads for one inference"
            f" ({self.limit_bytes / 2**20:g} MB, MODEL_SERVICE_MAX_ANSWER_MB, counted raw and"
            " decompressed); refused without reading the rest"
        )


async def read_bounded(
    response: httpx2.Response, limit_bytes: int, *, refuse: ReadBudget | None
) -> bytes | bytearray:
    """The body of a streamed `response`, decoded (gzip/deflate undone piece by piece, at
    most 1 MiB at a time by httpx2's decoders), reading at most `limit_bytes` bytes raw and
    `limit_bytes` decoded: a compressed bomb costs at most the limit in memory.

    Returns:
        The decoded body; without `refuse`, cut at `limit_bytes` when longer.

    Raises:
        ModelServiceBadAnswer: with `refuse`, the body is longer than `limit_bytes` (raw,
            decoded or as its Content-Length declares), or its Content-Encoding does not
            decode.
        httpx2.TransportError: the connection failed while reading (a timeout included).
    """
    declared = response.headers.get("content-length", "")
    if refuse is not None and declared.isdigit() and int(declared) > limit_bytes:
        raise refuse.too_large(f"its declared length of {int(declared):,} bytes")
    body = bytearray()
    try:
        async for chunk in response.aiter_bytes():
            if len(body) + len(chunk) > limit_bytes or response.num_bytes_downloaded > limit_bytes:
                if refuse is not None:
                    raise refuse.too_large("its body")
                body += chunk[: max(0, limit_bytes - len(body))]
                break
            body += chunk
    except httpx2.DecodingError as exc:
        raise ModelServiceBadAnswer(
            "model service answer does not decode as its Content-Encoding"
            f" ({printable(response.headers.get('content-encoding', 'none'), 40)}) says"
        ) from exc
    return body


def json_value_bound(body: bytes | bytearray) -> int:
    """How many JSON containers and separators `body` may hold: the count of `{`, `[`
    and `,` bytes, an upper bound counted at C speed before parsing (base64 holds none).
    """
    return body.count(b"{") + body.count(b"[") + body.count(b",")


def json_depth(value: Any) -> int:
    """How deeply `value` (parsed JSON) nests arrays and objects (a scalar: 0), counted
    without recursion, so no depth raises RecursionError."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = item.values()
        elif not isinstance(item, list):
            continue
        depth += 1
        if depth > deepest:
            deepest = depth
            if depth > MAX_ANSWER_DEPTH:
                return depth
        stack.extend((child, depth) for child in item if isinstance(child, dict | list))
    return deepest


# EXIF orientations that turn the image by 90 degrees (5 to 8): a service that applies
# them (Pillow's `ImageOps.exif_transpose`) analyses an image of height x width.
_TRANSPOSING_ORIENTATIONS = frozenset({5, 6, 7, 8})


def input_sizes(image: bytes) -> list[tuple[int, int]]:
    """The (width, height) pixel sizes a model service may analyse an encoded input image
    as: its header's size, then the transposed size when its EXIF orientation turns it by
    90 degrees (no pixel is decoded).

    Raises:
        BadImage: the header cannot be read (the input was validated when accepted, so
            only a store that changed the file gets here).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            with PILImage.open(io.BytesIO(image)) as img:
                width, height = (int(n) for n in img.size)
                try:
                    orientation = img.getexif().get(0x0112)  # EXIF Orientation
                except (OSError, SyntaxError, ValueError, struct.error):
                    orientation = None
    except (OSError, SyntaxError, ValueError, PILImage.DecompressionBombError) as exc:
        raise BadImage("the stored input image cannot be read any more; upload it again") from exc
    if orientation in _TRANSPOSING_ORIENTATIONS and width != height:
        return [(width, height), (height, width)]
    return [(width, height)]


class _RetryableStatus(Exception):
    def __init__(self, response: Reply) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


@dataclass(frozen=True)
class InferenceResult:
    """What the model service returned for one image.

    Attributes:
        analysis: the validated analysis (sizes in pixels).
        raw_analysis: the analysis JSON exactly as sent, kept on disk.
        images: PNG bytes by kind (`combined`, `mask`, `overlay`).
        processing_time_seconds: inference time the service reported, or the round trip.
        round_trip_seconds: wall time of the whole call, retries and image fetches included.
        model_name, model_version: as the service reported them (None when it did not).
        service_url: the model service that answered, without credentials (set by the
            pool, `app.services.model_service.pool`).
    """

    analysis: Analysis
    raw_analysis: dict[str, Any]
    images: dict[str, bytes]
    processing_time_seconds: float
    round_trip_seconds: float
    model_name: str | None = None
    model_version: str | None = None
    service_url: str | None = None


@dataclass(frozen=True)
class InferenceRecord:
    """How the last inference through this client ended (kept for `/api/health`).

    Attributes:
        ok: the model service did its job (an answer, or a refusal of a bad input file).
        at: when it ended, UTC.
        detail: what went wrong, for people; None when ok.
        seconds: how long the call took.
    """

    ok: bool
    at: datetime
    detail: str | None
    seconds: float


def _is_retryable(exc: BaseException) -> bool:
    # A read timeout is not retried: the service had the image and may have run the whole
    # inference; sending it again would double the load on a service that is already slow.
    if isinstance(exc, httpx2.ReadTimeout):
        return False
    return isinstance(exc, httpx2.TransportError | _RetryableStatus)


def _error_text(response: Reply) -> str:
    """The service's own reason, shortened and with control characters (NUL, escape
    sequences) replaced: it goes into the agent's JSON answers and its logs."""
    try:
        body = fastjson.loads(response.content)
    except ValueError:
        return printable(bytes(response.content[:2000]).decode("utf-8", "replace"), 300)
    if isinstance(body, dict):
        body = body.get("detail") or body.get("error") or body
    return printable(str(body), 300)


def _attempts(retrying: AsyncRetrying) -> str:
    n = int(retrying.statistics.get("attempt_number", 1))
    return f"{n} attempt{'s' if n != 1 else ''}"


def decode_image_data(kind: str, data: str) -> bytes:
    """PNG bytes from base64 text, with or without a `data:image/png;base64,` prefix.

    Raises:
        ModelServiceBadAnswer: the text is not base64 or not a PNG.
    """
    if data.startswith("data:"):
        _, _, data = data.partition(",")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ModelServiceBadAnswer(
            f"model service answer: the '{kind}' image is not valid base64"
        ) from exc
    return _check_png(kind, raw)


def _check_png(kind: str, raw: bytes) -> bytes:
    if not raw.startswith(PNG_SIGNATURE):
        raise ModelServiceBadAnswer(f"model service answer: the '{kind}' image is not a PNG")
    return raw


def result_image_sizes(kind: str, shape: ImageShape) -> list[tuple[int, int]]:
    """The (width, height) pixel sizes a result image of `kind` may have: `mask` and
    `overlay` are the analysed image's size; `combined` is that size, or the input and
    the overlay side by side (2W x H, the reference service) or stacked (W x 2H)."""
    w, h = shape.width, shape.height
    return [(w, h), (2 * w, h), (w, 2 * h)] if kind == "combined" else [(w, h)]


def check_result_image(kind: str, png: bytes, shape: ImageShape, max_pixels: int) -> None:
    """Check a result PNG's structure and its size against the analysis's `image_shape`
    (see `result_image_sizes`), without decompressing its pixels.

    Every chunk from the signature to `IEND` is read and its CRC-32 checked (Pillow's
    `verify`), so a truncated or damaged PNG is refused. The pixels are not inflated:
    that full decode cost about 12 ms of the agent's CPU per 640 x 640 image, most of its
    own cost per image (issue 8); the only PNG it would catch in addition is one whose
    compressed data is wrong but whose checksums match, which no transport produces.

    Blocking (reads the whole PNG once, no pixel buffer): run it in a worker thread.

    Raises:
        ModelServiceBadAnswer: the PNG is truncated or corrupt (a chunk checksum
            included), larger than twice `max_pixels`, or of a size that does not fit.
    """
    what = f"model service answer: the '{kind}' image"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            with PILImage.open(io.BytesIO(png)) as img:
                width, height = img.size
                if (width, height) not in result_image_sizes(kind, shape):
                    raise ModelServiceBadAnswer(
                        f"{what} is {width} x {height} pixels, which does not fit the analysis's"
                        f" image_shape of {shape.width} x {shape.height}"
                    )
                if width * height > 2 * max_pixels:
                    raise ModelServiceBadAnswer(f"{what} has more than {2 * max_pixels:,} pixels")
                img.verify()
    except ModelServiceBadAnswer:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, PILImage.DecompressionBombError) as exc:
        raise ModelServiceBadAnswer(
            f"{what} is not a whole PNG (it does not decode: {type(exc).__name__})"
        ) from exc


def check_result_images(images: dict[str, bytes], shape: ImageShape, max_pixels: int) -> None:
    """`check_result_image` for each image (blocking: one worker-thread hop for all)."""
    for kind, png in images.items():
        check_result_image(kind, png, shape, max_pixels)


class ModelServiceClient:
    """Sends images to the model service; one instance per agent process.

    Timeouts: each attempt's phases (connect, read, write, pool) get `segformer_timeout_s`;
    one inference, every attempt and back-off included, ends after `segformer_deadline_s`
    (the back-off never sleeps past it). Connection errors and HTTP 502/503/504 are retried
    (`segformer_max_retries` attempts in all); a read timeout is not (see `_is_retryable`).
    At most `segformer_max_concurrency` calls are in flight; waiting for a slot does not
    count against the deadline.
    """

    def __init__(self, settings: Settings, base_url: str) -> None:
        self.base_url = base_url.rstrip("/") + "/"
        # The setting an operator corrects when this service is wrong or unreachable.
        self._url_setting = settings.model_service_url_setting
        self._timeout_s = settings.segformer_timeout_s
        self._attempts = settings.segformer_max_retries
        self._backoff_s = settings.segformer_backoff_base_s
        self._deadline_s = settings.segformer_deadline_s
        self._semaphore = asyncio.Semaphore(settings.segformer_max_concurrency)
        self._max_image_pixels = settings.max_image_pixels
        self._max_answer_bytes = settings.model_service_max_answer_bytes
        self._max_concurrent_decodes = settings.max_concurrent_decodes
        self._decode_limiter: anyio.CapacityLimiter | None = None
        self._client = httpx2.AsyncClient(
            base_url=self.base_url,
            timeout=httpx2.Timeout(settings.segformer_timeout_s),
            limits=httpx2.Limits(
                max_connections=settings.segformer_max_concurrency * 2,
                max_keepalive_connections=settings.segformer_max_concurrency,
            ),
        )
        self.last_inference: InferenceRecord | None = None

    @property
    def decode_limiter(self) -> anyio.CapacityLimiter:
        """Bounds the full image decodes of this agent process (uploads, thumbnails, COCO
        exports) to MAX_CONCURRENT_DECODES at once, so memory stays bounded under load."""
        if self._decode_limiter is None:
            self._decode_limiter = anyio.CapacityLimiter(self._max_concurrent_decodes)
        return self._decode_limiter

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    async def infer(self, image: bytes, filename: str, media_type: str) -> InferenceResult:
        """Run inference on one image.

        Args:
            image: the encoded image bytes as uploaded.
            filename: passed through to the service; carries no meaning.
            media_type: e.g. `image/jpeg`.

        Returns:
            The validated analysis and the three result PNGs.

        Raises:
            ModelServiceUnavailable: not reachable, no answer within SEGFORMER_TIMEOUT_S
                (not retried), 502/503/504 after all attempts, or SEGFORMER_DEADLINE_S ran
                out; the message says how long the agent waited (`waited_seconds`).
            ModelServiceBadAnswer: any other non-200 answer, or an answer that lacks
                the analysis or an image (message names what is missing), is larger than
                MODEL_SERVICE_MAX_ANSWER_MB, nests too deeply, or does not fit the image
                (`check_against_image`).
            BadImage: `image`'s header cannot be read.
        """
        async with self._semaphore:
            started = time.perf_counter()
            try:
                result = await self._infer(image, filename, media_type, started)
            except ModelServiceUnavailable as exc:
                waited = time.perf_counter() - started
                exc.extra.setdefault("waited_seconds", round(waited, 1))
                self._record(False, exc.detail, waited)
                raise
            except ModelServiceBadAnswer as exc:
                refused = exc.extra.pop("_service_status", None) in REFUSED_INPUT_STATUS
                self._record(
                    refused, None if refused else exc.detail, time.perf_counter() - started
                )
                raise
        self._record(True, None, result.round_trip_seconds)
        return result

    def _record(self, ok: bool, detail: str | None, seconds: float) -> None:
        self.last_inference = InferenceRecord(ok, utc_now(), detail, round(seconds, 3))

    async def _infer(
        self, image: bytes, filename: str, media_type: str, started: float
    ) -> InferenceResult:
        deadline = asyncio.get_running_loop().time() + self._deadline_s
        sizes = input_sizes(image)
        budget = ReadBudget(self._max_answer_bytes)
        try:
            async with asyncio.timeout_at(deadline):
                response = await self._send(
                    "POST",
                    "upload",
                    deadline=deadline,
                    budget=budget,
                    files={"image": (filename, image, media_type)},
                )
                if response.status_code != 200:
                    raise ModelServiceBadAnswer(
                        f"model service at {self.base_url} answered HTTP "
                        f"{response.status_code}: {_error_text(response)}",
                        _service_status=response.status_code,
                    )
                content_type = response.headers.get("content-type", "none")
                answer, raw_analysis = await anyio.to_thread.run_sync(
                    self._parse, response.content, content_type, sizes
                )
                del response  # its body: up to MODEL_SERVICE_MAX_ANSWER_MB
                images: dict[str, bytes] = {
                    kind: await self._image_bytes(kind, answer, deadline, budget)
                    for kind in RESULT_IMAGE_KINDS
                }
        except TimeoutError as exc:
            raise ModelServiceUnavailable(
                f"model service at {self.base_url} did not finish the inference within"
                f" {time.perf_counter() - started:.0f} s (SEGFORMER_DEADLINE_S ="
                f" {self._deadline_s:g}); check that it is running and not overloaded"
            ) from exc
        await self._check_images(images, answer.analysis.image_shape)
        round_trip = time.perf_counter() - started
        reported = answer.processing_time_seconds or answer.analysis.processing_time_seconds
        return InferenceResult(
            analysis=answer.analysis,
            raw_analysis=raw_analysis,
            images=dict(images),
            processing_time_seconds=float(reported) if reported is not None else round_trip,
            round_trip_seconds=round_trip,
            model_name=answer.model_name,
            model_version=answer.model_version,
        )

    async def health(self) -> tuple[bool, str | None]:
        """Probe the model service's contract: `GET /health` must answer 200 with JSON
        `{"status": "ok", ...}` within 3 s (docs/model-service-contract.md).

        Returns:
            (healthy, a sentence saying what the probe found).
        """
        try:
            async with self._client.stream("GET", "health", timeout=3.0) as streamed:
                content = await read_bounded(streamed, ERROR_BODY_MAX_BYTES, refuse=None)
                response = Reply(streamed.status_code, streamed.headers, content)
        except (httpx2.HTTPError, ModelServiceBadAnswer) as exc:
            return False, (
                f"GET {self.base_url}health failed ({type(exc).__name__}: {exc}); check"
                f" {self._url_setting} and that the model service is running"
            )
        if response.status_code != 200:
            return False, (
                f"GET {self.base_url}health answered HTTP {response.status_code}, not the"
                f" model service's health answer; is {self._url_setting} the model service?"
            )
        try:
            body = fastjson.loads(response.content)
        except ValueError:
            body = None
        if not isinstance(body, dict) or body.get("status") != "ok":
            return False, (
                f"GET {self.base_url}health answered 200 but not"
                f' {{"status": "ok", ...}}; is {self._url_setting} the model service?'
            )
        engine = body.get("engine")
        return True, f"health check passed (engine {engine})" if engine else "health check passed"

    async def _send(
        self,
        method: str,
        url: str,
        *,
        deadline: float | None = None,
        budget: ReadBudget,
        **kwargs: Any,
    ) -> Reply:
        loop = asyncio.get_running_loop()
        time_left = self._deadline_s if deadline is None else max(0.0, deadline - loop.time())
        retrying = AsyncRetrying(
            # Never start a back-off sleep that would end past the deadline.
            stop=stop_after_attempt(self._attempts) | stop_before_delay(time_left),
            wait=wait_exponential(multiplier=self._backoff_s, min=self._backoff_s),
            retry=retry_if_exception(_is_retryable),
            before_sleep=self._log_retry,
            reraise=True,
        )
        started = time.perf_counter()
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._call(method, url, budget, **kwargs)
        except _RetryableStatus as exc:
            raise ModelServiceUnavailable(
                f"model service at {self.base_url} kept answering HTTP"
                f" {exc.response.status_code} (attempt {retrying.statistics['attempt_number']}"
                f" of {self._attempts}, {time.perf_counter() - started:.0f} s):"
                f" {_error_text(exc.response)}"
            ) from exc
        except httpx2.ReadTimeout as exc:
            raise ModelServiceUnavailable(
                f"model service at {self.base_url} took the image but sent no answer within"
                f" {self._timeout_s:g} s (SEGFORMER_TIMEOUT_S); not sent again, as it may"
                " still be working on it; check that it is not overloaded"
            ) from exc
        except httpx2.TimeoutException as exc:
            raise ModelServiceUnavailable(
                f"model service at {self.base_url} timed out"
                f" ({type(exc).__name__}, {_attempts(retrying)} in"
                f" {time.perf_counter() - started:.0f} s); check that it is running"
            ) from exc
        except httpx2.TransportError as exc:
            raise ModelServiceUnavailable(
                f"model service at {self.base_url} is unreachable after"
                f" {_attempts(retrying)} in"
                f" {time.perf_counter() - started:.0f} s ({type(exc).__name__}: {exc}); check"
                f" {self._url_setting} and that the service is running"
            ) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def _call(self, method: str, url: str, budget: ReadBudget, **kwargs: Any) -> Reply:
        """One attempt: send, then read the body as a stream within its bound (a 200's
        within `budget`, which it then takes from; any other status's first
        ERROR_BODY_MAX_BYTES)."""
        started = time.perf_counter()
        full_url = urljoin(self.base_url, url)
        try:
            request = self._client.build_request(method, url, **kwargs)
            streamed = await self._client.send(request, stream=True)
            try:
                ok = streamed.status_code == 200
                content = await read_bounded(
                    streamed,
                    budget.remaining if ok else ERROR_BODY_MAX_BYTES,
                    refuse=budget if ok else None,
                )
            finally:
                await streamed.aclose()
            if ok:
                budget.remaining -= len(content)
            response = Reply(streamed.status_code, streamed.headers, content)
        except httpx2.TransportError as exc:
            logger.warning(
                "model service call failed",
                extra={
                    "url": full_url,
                    "method": method,
                    "error": f"{type(exc).__name__}: {exc}",
                    "duration_s": round(time.perf_counter() - started, 4),
                },
            )
            raise
        logger.info(
            "model service call",
            extra={
                "url": full_url,
                "method": method,
                "status": response.status_code,
                "duration_s": round(time.perf_counter() - started, 4),
            },
        )
        if response.status_code in RETRYABLE_STATUS:
            raise _RetryableStatus(response)
        return response

    def _log_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        logger.warning(
            "retrying model service call",
            extra={
                "attempt": state.attempt_number,
                "next_in_s": state.upcoming_sleep,
                "error": str(exc),
            },
        )

    def _parse(
        self, content: bytes | bytearray, content_type: str, sizes: list[tuple[int, int]]
    ) -> tuple[ModelServiceAnswer, dict[str, Any]]:
        """The validated answer and the analysis JSON as sent (parsed once: bodies carry
        three base64 PNGs), checked against the input image, whose (width, height) in
        pixels is one of `sizes` (`input_sizes`).

        Blocking (parses up to MODEL_SERVICE_MAX_ANSWER_MB): run it in a worker thread.
        """
        if json_value_bound(content) > MAX_ANSWER_VALUES:
            raise ModelServiceBadAnswer(
                f"model service answer holds more than {MAX_ANSWER_VALUES:,} JSON values"
                " (arrays, objects and separators); not a model answer"
            )
        try:
            body = fastjson.loads(content)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ModelServiceBadAnswer(
                f"model service at {self.base_url} answered with a body that is not JSON"
                f" (content type {printable(content_type, 80)}"
                f"{'; nested too deeply' if 'depth' in str(exc) else ''})"
            ) from exc
        if json_depth(body) > MAX_ANSWER_DEPTH:
            raise ModelServiceBadAnswer(
                f"model service answer nests arrays and objects more than {MAX_ANSWER_DEPTH}"
                " levels deep; not a model answer"
            )
        normalised = normalise_answer(body)
        missing = [k for k in RESULT_IMAGE_KINDS if k not in normalised["images"]]
        if normalised["analysis"] is None or "image_shape" not in normalised["analysis"]:
            raise ModelServiceBadAnswer(
                "model service answer has no analysis JSON ('image_shape' and 'classes' at the"
                " top level or under 'result_json'/'result')"
            )
        if missing:
            raise ModelServiceBadAnswer(
                f"model service answer has no {', '.join(repr(m) for m in missing)} image"
            )
        try:
            answer = ModelServiceAnswer.model_validate(normalised)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()[:5]
            )
            raise ModelServiceBadAnswer(f"model service answer is malformed: {problems}") from exc
        misfits = answer_problems(answer.analysis, sizes)
        if misfits:
            shown = "; ".join(printable(p, 300) for p in misfits[:5])
            more = f" (and {len(misfits) - 5} more)" if len(misfits) > 5 else ""
            raise ModelServiceBadAnswer(
                f"model service answer does not fit the image: {shown}{more}"
            )
        return answer, normalised["analysis"]

    async def _check_images(self, images: dict[str, bytes], shape: ImageShape) -> None:
        # No pixel buffer is allocated (see `check_result_image`), so the decode limiter,
        # which bounds memory, is not needed.
        await anyio.to_thread.run_sync(check_result_images, images, shape, self._max_image_pixels)

    def _same_origin_url(self, kind: str, url: str) -> str:
        """`url` resolved against the service's base URL, if it stays on the service's own
        scheme, host and port (the agent fetches nothing else: no SSRF through an answer).

        Raises:
            ModelServiceBadAnswer: the URL points elsewhere.
        """
        full = urljoin(self.base_url, url)
        own, target = urlsplit(self.base_url), urlsplit(full)
        if (target.scheme, target.hostname, target.port) != (own.scheme, own.hostname, own.port):
            shown = f"{target.scheme}://{target.hostname or ''}"[:100]
            raise ModelServiceBadAnswer(
                f"model service answer: the '{kind}' image URL points at {shown}, not at the"
                f" model service ({own.scheme}://{own.netloc}); the agent fetches result images"
                " only from the model service itself"
            )
        return full

    async def _image_bytes(
        self, kind: str, answer: ModelServiceAnswer, deadline: float, budget: ReadBudget
    ) -> bytes:
        ref = answer.images[kind]  # type: ignore[index]
        if ref.data is not None:
            if len(ref.data) < _INLINE_DECODE_BYTES:
                return decode_image_data(kind, ref.data)
            # Large (up to MODEL_SERVICE_MAX_ANSWER_MB): decoded off the event loop.
            return await anyio.to_thread.run_sync(decode_image_data, kind, ref.data)
        assert ref.url is not None
        try:
            url = self._same_origin_url(kind, ref.url)
        except ValueError as exc:  # urlsplit: e.g. a port that is not a number
            raise ModelServiceBadAnswer(
                f"model service answer: the '{kind}' image URL is malformed"
            ) from exc
        response = await self._send("GET", url, deadline=deadline, budget=budget)
        if response.status_code != 200:
            raise ModelServiceBadAnswer(
                f"model service answered HTTP {response.status_code} for the '{kind}' image"
                f" at {urljoin(self.base_url, ref.url)}"
            )
        return _check_png(kind, bytes(response.content))
