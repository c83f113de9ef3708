"""`aoi-agent storage migrate`: copy a folder store into an object store, key for key.

The database is not touched: it stores keys relative to the store's root, which name
the same objects in the new store (older absolute rows map to the same keys, see
`Storage.key_of`). Safe to run again, e.g. once more after the agents are stopped:
objects already in the target are skipped (one S3 PUT is atomic, so an object that is
there is whole).
"""

from __future__ import annotations

import mimetypes
from collections.abc import Callable
from dataclasses import dataclass

import anyio
import anyio.abc

from app.services.storage.base import (
    ANSWERS,
    GOLDEN,
    RESULTS,
    THUMBNAILS,
    UPLOADS,
    Storage,
    StoredObject,
)

# The key prefixes copied: inputs, results, cached thumbnails, golden images, the answers
# of other model services.
COPIED_PREFIXES = (
    f"{UPLOADS}/",
    f"{RESULTS}/",
    f"{THUMBNAILS}/",
    f"{GOLDEN}/",
    f"{ANSWERS}/",
)


@dataclass
class MigrationReport:
    """What a migration did: objects copied and skipped (already there), bytes copied."""

    copied: int = 0
    skipped: int = 0
    bytes_copied: int = 0


async def copy_store(
    source: Storage,
    target: Storage,
    *,
    concurrency: int = 16,
    dry_run: bool = False,
    progress: Callable[[MigrationReport], None] | None = None,
) -> MigrationReport:
    """Copy every input, result and thumbnail of `source` to `target` under the same key.

    Args:
        concurrency: objects copied at once (each is read whole: at most MAX_FILE_SIZE_MB, 50 MiB).
        dry_run: count what would be copied; write nothing.
        progress: called after each object with the report so far.

    Returns:
        The counts.

    Raises:
        StorageMisconfigured: the target's bucket is missing or refuses the credentials
            (checked first, with a probe object unless `dry_run`: nothing is read before).
        OSError, StorageUnavailable: a read or write failed (what was copied stays; run
            again to resume).
    """
    await target.verify(write=not dry_run)
    report = MigrationReport()
    send, receive = anyio.create_memory_object_stream[StoredObject](concurrency)

    async def copier(objects: anyio.abc.ObjectReceiveStream[StoredObject]) -> None:
        async with objects:
            async for obj in objects:
                if await target.exists(obj.key):
                    report.skipped += 1
                else:
                    if not dry_run:
                        media_type = mimetypes.guess_type(obj.key)[0]
                        await target.put(obj.key, await source.get(obj.key), media_type)
                    report.copied += 1
                    report.bytes_copied += obj.size
                if progress is not None:
                    progress(report)

    try:
        async with anyio.create_task_group() as group:
            for _ in range(concurrency):
                group.start_soon(copier, receive.clone())
            async with send, receive:
                for prefix in COPIED_PREFIXES:
                    async for obj in source.list_objects(prefix):
                        await send.send(obj)
    except BaseExceptionGroup as exc:
        # The task group wraps errors in a group; callers look at the first one.
        raise exc.exceptions[0] from exc
    return report
