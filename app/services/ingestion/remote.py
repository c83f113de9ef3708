"""`aoi-agent watch`: a hot folder on another machine, handed to an agent over its HTTP API.

Each batch goes to `POST /api/upload/batch?skip_duplicates=true` with an
`Idempotency-Key` made from the files' names and SHA-256 (and their board context), so a
batch sent again after a lost answer is not inspected twice, and bytes the agent already
has are not inspected again. Outcomes are read from `GET /api/batches/{batch_id}`.

Board context is read as the agent's own hot folders read it (`folder.board_context`:
WATCH_NAME_PATTERN on the file name, then a `<name>.json` sidecar) and sent as the batch's
`manifest` (file name → context).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import httpx2

from app.models.context import ContextError, InspectionContext
from app.services.ingestion.folder import board_context, relative_name
from app.services.ingestion.watcher import Handed, Settled, SubmitLater

READ_CHUNK_BYTES = 1024 * 1024


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes (blocking).

    Raises:
        OSError: the file cannot be read.
    """
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(READ_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def batch_key(named_hashes: Sequence[tuple[str, str]], manifest: str | None = None) -> str:
    """The Idempotency-Key of a batch: its files' names and SHA-256, in order, and its
    manifest (so a batch sent again with another board context is a new batch)."""
    text = "\n".join(f"{name}\t{digest}" for name, digest in named_hashes)
    if manifest is not None:
        text += "\n" + manifest
    return "aoi-watch-" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def manifest_of(contexts: dict[str, InspectionContext]) -> str | None:
    """The batch `manifest` (JSON, file name → context fields) of the files that have a
    board context, or None when none has."""
    if not contexts:
        return None
    return json.dumps(
        {name: c.model_dump(exclude_none=True) for name, c in contexts.items()},
        sort_keys=True,
        separators=(",", ":"),
    )


def _detail(response: httpx2.Response) -> str:
    try:
        body: Any = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    if isinstance(body, dict):
        return str(body.get("detail", body))
    return str(body)


class HttpSubmitter:
    """Hands files to an agent over HTTP; see `Submitter`. `name_pattern` is
    WATCH_NAME_PATTERN (board context from file names; None: names give none)."""

    def __init__(
        self, client: httpx2.AsyncClient, name_pattern: re.Pattern[str] | None = None
    ) -> None:
        self.client = client
        self.name_pattern = name_pattern
        self.batch_of: dict[str, str | None] = {}  # img_unique_id -> its batch, to poll

    async def submit(self, root: Path, files: Sequence[Path]) -> list[Handed]:
        """Send the files as one batch, with their board context as its manifest; a file
        whose name or sidecar gives a bad context is not sent (its rejection says why);
        see `Submitter.submit`."""
        refused: list[Handed] = []
        contexts: dict[str, InspectionContext] = {}

        def hash_all() -> list[tuple[Path, str, str]]:
            hashed = []
            for path in files:
                name = relative_name(root, path)
                try:
                    context = board_context(self.name_pattern, path)
                except ContextError as exc:
                    refused.append(Handed(path, rejection=str(exc)))
                    continue
                with contextlib.suppress(OSError):  # gone or locked: found again later
                    hashed.append((path, name, file_sha256(path)))
                    if context is not None:
                        contexts[name] = context
            return hashed

        hashed = await anyio.to_thread.run_sync(hash_all)
        if not hashed:
            return refused
        sources = {name: path for path, name, _ in hashed}
        manifest = manifest_of(contexts)
        key = batch_key([(name, digest) for _, name, digest in hashed], manifest)
        try:
            with contextlib.ExitStack() as stack:
                parts = [
                    ("images", (name, stack.enter_context(path.open("rb"))))
                    for path, name, _ in hashed
                ]
                response = await self.client.post(
                    "/api/upload/batch",
                    params={"skip_duplicates": "true"},
                    files=parts,
                    data={"manifest": manifest} if manifest is not None else None,
                    headers={"Idempotency-Key": key},
                )
        except (httpx2.HTTPError, OSError) as exc:
            raise SubmitLater(f"cannot send to the agent: {exc}") from exc
        body: Any = response.json() if response.content else {}
        if response.status_code == 400 and isinstance(body, dict) and "rejected" in body:
            return refused + [
                Handed(sources[r["filename"]], rejection=r["detail"])
                for r in body["rejected"]
                if r["filename"] in sources
            ]
        if response.status_code not in (200, 202):
            raise SubmitLater(f"the agent answered {response.status_code}: {_detail(response)}")
        handed = refused + [
            Handed(sources[r["filename"]], rejection=r["detail"])
            for r in body["rejected"]
            if r["filename"] in sources
        ]
        for item in body["accepted"]:
            if item["filename"] in sources:
                img_unique_id = item["img_unique_id"]
                self.batch_of[img_unique_id] = body["batch_id"]
                handed.append(
                    Handed(
                        sources[item["filename"]],
                        img_unique_id=img_unique_id,
                        batch_id=body["batch_id"],
                    )
                )
        for item in body.get("skipped_duplicates", []):
            if item["filename"] not in sources:
                continue
            self.batch_of[item["img_unique_id"]] = item["batch_id"]
            note = None
            if item["earlier_filename"] != item["filename"]:
                note = (
                    f"file: {item['filename']}\nnot inspected again: the same bytes were"
                    f" inspected as {item['img_unique_id']} (file '{item['earlier_filename']}')"
                    f"\nresult: {item['viewer_url']}\n"
                )
            handed.append(
                Handed(
                    sources[item["filename"]],
                    img_unique_id=item["img_unique_id"],
                    note=note,
                    settled=Settled(True) if item["status"] == "succeeded" else None,
                )
            )
        return handed

    async def settled(self, img_unique_ids: Sequence[str]) -> dict[str, Settled]:
        """Outcomes from the batches' progress; see `Submitter.settled`."""
        wanted = set(img_unique_ids)
        ended: dict[str, Settled] = {}
        try:
            for batch_id in {self.batch_of.get(i) for i in wanted}:
                if batch_id is None:
                    ended.update(await self._single_uploads(wanted))
                    continue
                response = await self.client.get(f"/api/batches/{batch_id}")
                if response.status_code == 404:
                    for i in wanted:
                        if self.batch_of.get(i) == batch_id:
                            ended[i] = Settled(False, f"batch {batch_id} was deleted")
                    continue
                response.raise_for_status()
                for item in response.json()["items"]:
                    if item["img_unique_id"] not in wanted:
                        continue
                    if item["status"] == "succeeded":
                        ended[item["img_unique_id"]] = Settled(True)
                    elif item["status"] == "failed":
                        ended[item["img_unique_id"]] = Settled(False, item.get("error"))
        except httpx2.HTTPError as exc:
            raise SubmitLater(f"cannot ask the agent: {exc}") from exc
        for img_unique_id in ended:
            self.batch_of.pop(img_unique_id, None)
        return ended

    async def _single_uploads(self, wanted: set[str]) -> dict[str, Settled]:
        # Earlier single uploads still running when skipped: done once their result exists.
        ended: dict[str, Settled] = {}
        for img_unique_id in wanted:
            if self.batch_of.get(img_unique_id, "") is None:
                response = await self.client.get(f"/api/images/{img_unique_id}")
                if response.status_code == 200:
                    ended[img_unique_id] = Settled(True)
        return ended
