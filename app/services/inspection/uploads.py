"""The upload endpoints' workflow: receive the multipart body, read the board context,
accept (inspect now, or ledger and queue a batch) under an `Idempotency-Key`.

The routes in `app/api/upload.py` only parse query parameters and headers and hand the
request here; this module owns what happens to the received files (they are always
discarded from the incoming folder at the end: accepted ones have been moved to the
store by then).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from fastapi import Request, status
from fastapi.exceptions import RequestValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.models.context import (
    ContextError,
    InspectionContext,
    context_from_fields,
    contexts_from_manifest,
)
from app.models.schemas import BatchUploadResult
from app.services.history.queries import Links, QueryService, batch_accepted, upload_response
from app.services.inspection.idempotency import Answer, IdempotencyKeys, request_digest
from app.services.inspection.receiver import (
    ReceivedFile,
    discard,
    receive_files,
    receive_image,
)
from app.services.inspection.workflow import InspectionService
from app.services.storage import Storage

# Seconds an idempotency key of a batch upload is held beyond its wait (ledgering and
# queueing the batch).
BATCH_KEY_LEASE_S = 120
# Seconds a single upload's key is held beyond SEGFORMER_DEADLINE_S (storing the answer).
SINGLE_KEY_EXTRA_S = 60


def context_problem(exc: ContextError) -> RequestValidationError:
    """A refused board context as the agent's usual 422 (`loc` starts with `body`); the
    refused value is not echoed."""
    return RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors])


@dataclass
class UploadService:
    """Single and batch uploads, from the request body to the answer sent (or replayed).

    One per request: `links` are the request's signed links. Only a batch upload with
    `wait` reads the database afterwards, on a session of its own.
    """

    settings: Settings
    storage: Storage
    sessions: async_sessionmaker[AsyncSession]
    inspections: InspectionService
    links: Links

    async def single(
        self,
        request: Request,
        *,
        include_base64: bool,
        skip_duplicates: bool,
        idempotency_key: str | None,
    ) -> Answer:
        """Receive one image (field `image`, at most MAX_FILE_SIZE_MB bytes) and its board
        context fields, and inspect it now; the answer is the 200 `UploadResponse`.

        Raises: `InsufficientStorage` (507) before reading a byte when the disk is short;
        the receiver's errors (400/408/413/415, docs/ingestion.md); a `RequestValidationError`
        (422) for a board context out of bounds (nothing kept); the inspection's own errors
        (502/503 name the kept `img_unique_id`); `IdempotencyKeyInUse` (409) and
        `IdempotencyKeyReused` (422).
        """
        await self.inspections.ensure_disk_space()
        fields: dict[str, str] = {}
        files = await receive_image(request, self.settings, self.storage, fields)
        try:
            context = _read(lambda: context_from_fields(fields))

            async def inspect() -> Answer:
                outcome = await self.inspections.inspect_upload(
                    files[0], skip_duplicates=skip_duplicates, context=context
                )
                answer = upload_response(outcome, self.links, include_base64=include_base64)
                return Answer.json(status.HTTP_200_OK, answer.model_dump(mode="json"))

            options: dict[str, object] = {
                "include_images": "base64" if include_base64 else None,
                "skip_duplicates": skip_duplicates,
            }
            if context is not None:  # absent otherwise: digests without one unchanged
                options["context"] = context.model_dump(exclude_none=True)
            # The key is held while the inference may run: SEGFORMER_DEADLINE_S bounds it.
            lease_s = self.settings.segformer_deadline_s + SINGLE_KEY_EXTRA_S
            return await IdempotencyKeys(self.sessions).answer(
                idempotency_key, request_digest("upload", options, files), lease_s, inspect
            )
        finally:
            await discard(files)

    async def batch(
        self,
        request: Request,
        *,
        wait: bool,
        skip_duplicates: bool,
        idempotency_key: str | None,
    ) -> Answer:
        """Receive up to MAX_BATCH_SIZE images (field `images`) and an optional `manifest`
        (board contexts), ledger and queue the usable ones as one batch.

        The answer is 202 `BatchAccepted`; with `wait` a 200 `BatchUploadResult` once every
        image is done (or after SEGFORMER_TIMEOUT_S per image); 200 with `batch_id` null
        when nothing was queued (every file a skipped duplicate or rejected).

        Raises: as `single`, except that an unusable file is reported in `rejected`
        instead of failing the request.
        """
        await self.inspections.ensure_disk_space()
        fields: dict[str, str] = {}
        files = await receive_files(
            request,
            "images",
            self.storage.new_incoming_path,
            self.settings.max_file_size_bytes,
            max_files=self.settings.max_batch_size,
            fail_fast=False,
            idle_timeout_s=self.settings.upload_idle_timeout_s,
            fields=fields,
        )
        try:
            manifest = fields.get("manifest")
            contexts = _read(
                lambda: (
                    contexts_from_manifest(manifest, [f.filename for f in files])
                    if manifest is not None
                    else []
                )
            )
            # How long `wait` waits for the batch; the idempotency key is held as long.
            wait_s = self.settings.segformer_timeout_s * max(1, len(files))

            async def accept() -> Answer:
                return await self._accept_batch(files, contexts, wait, wait_s, skip_duplicates)

            options: dict[str, object] = {"wait": wait, "skip_duplicates": skip_duplicates}
            if any(contexts):
                options["contexts"] = [
                    c.model_dump(exclude_none=True) if c else None for c in contexts
                ]
            lease_s = BATCH_KEY_LEASE_S + (wait_s if wait else 0)
            return await IdempotencyKeys(self.sessions).answer(
                idempotency_key, request_digest("upload_batch", options, files), lease_s, accept
            )
        finally:
            await discard(files)

    async def _accept_batch(
        self,
        files: list[ReceivedFile],
        contexts: list[InspectionContext | None],
        wait: bool,
        wait_s: float,
        skip_duplicates: bool,
    ) -> Answer:
        """Ledger and queue the batch; with `wait`, wait up to `wait_s` seconds for it."""
        acceptance = await self.inspections.accept_batch(
            files, skip_duplicates=skip_duplicates, contexts=contexts
        )
        accepted = batch_accepted(acceptance, self.links)
        batch_id = accepted.batch_id
        if batch_id is None:
            nothing_queued = BatchUploadResult(**accepted.model_dump()) if wait else accepted
            return Answer.json(status.HTTP_200_OK, nothing_queued.model_dump(mode="json"))
        if not wait:
            return Answer.json(status.HTTP_202_ACCEPTED, accepted.model_dump(mode="json"))
        async with self.sessions() as session:
            queries = QueryService(session, self.links)
            final = await queries.wait_for_batch(batch_id, wait_s)
            results = await queries.batch_results(batch_id, self.inspections.read_analysis)
        body = BatchUploadResult(**accepted.model_dump(), status=final, results=results)
        return Answer.json(status.HTTP_200_OK, body.model_dump(mode="json"))


T = TypeVar("T")


def _read(parse: Callable[[], T]) -> T:
    """`parse()`, with a refused board context as the 422 the routes answer."""
    try:
        return parse()
    except ContextError as exc:
        raise context_problem(exc) from None
