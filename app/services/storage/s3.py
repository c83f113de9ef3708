"""The object-store backend: any S3-compatible store (AWS S3, MinIO, Ceph RGW, ...).

STORAGE_URL=s3://bucket/prefix; S3_ENDPOINT_URL names a store other than AWS; the
credentials and region come from the standard AWS variables (AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION or AWS_DEFAULT_REGION) or the
instance's role.

Built on obstore (Rust `object_store` bindings, async, releases the GIL): it was the
fastest client measured for many small objects, needs no boto session per task, and
signs URLs itself. One S3 PUT is atomic: an object is there whole or not at all.
Uploads larger than 10 MB go up in parts (multipart), so memory stays bounded.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import anyio
import obstore
import obstore.exceptions
from obstore.store import S3Store

from app.config import Settings
from app.errors import StorageMisconfigured, StorageUnavailable
from app.services.storage.base import CHUNK_BYTES, ObjectStream, Storage, StoredObject
from app.utils.text import content_disposition

if TYPE_CHECKING:
    from obstore import Attributes

# Objects larger than this are uploaded in parts, bytes.
MULTIPART_THRESHOLD_BYTES = 10 * 1024 * 1024
# Keys per DeleteObjects request (S3 allows at most 1000).
DELETE_BATCH = 1000
# S3 error codes that mean the credentials are wrong or may not use the bucket, not that
# the store is down (https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html).
REFUSED_CODES = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "ExpiredToken",
        "InvalidAccessKeyId",
        "InvalidToken",
        "SignatureDoesNotMatch",
    }
)
_ERROR_CODE = re.compile(r"<Code>(\w+)</Code>")
# Where obstore asks for an instance role's credentials when none are configured.
INSTANCE_METADATA_HOST = "169.254.169.254"
# After its last answer, obstore's Rust (tokio) runtime still works in its own threads
# for a moment; a process that exits meanwhile may abort (SIGABRT, status 134) instead of
# exiting with its own status (obstore 0.12, about 1 exit in 4 right after a failed
# request; none in 30 with this wait), seconds.
CLOSE_GRACE_S = 0.1
# The object `verify(write=True)` writes and deletes at start-up.
WRITE_PROBE_KEY = "health/write-probe"


def parse_s3_url(url: str) -> tuple[str, str]:
    """(bucket, prefix) of `s3://bucket/prefix` (prefix without slashes at either end).

    Raises:
        ValueError: not an `s3://` URL with a bucket.
    """
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"{url!r} is not s3://bucket/prefix")
    return parts.netloc, parts.path.strip("/")


class S3Storage(Storage):
    """Objects in an S3 bucket under a prefix (see the module's docstring)."""

    backend = "s3"

    def __init__(self, settings: Settings, url: str) -> None:
        super().__init__(settings)
        self.bucket, self.prefix = parse_s3_url(url)
        config: dict[str, Any] = {}
        client_options: dict[str, Any] = {"timeout": f"{settings.s3_timeout_s:g}s"}
        if settings.s3_endpoint_url:
            config["endpoint"] = settings.s3_endpoint_url
            if settings.s3_endpoint_url.startswith("http://"):
                client_options["allow_http"] = True
        region = settings.s3_region or settings.aws_region
        if region:
            config["region"] = region
        if settings.aws_access_key_id and settings.aws_secret_access_key:
            config["access_key_id"] = settings.aws_access_key_id
            config["secret_access_key"] = settings.aws_secret_access_key.get_secret_value()
            if settings.aws_session_token:
                config["session_token"] = settings.aws_session_token.get_secret_value()
        # A store that is down fails the request within about S3_TIMEOUT_S, not minutes.
        retry = {"max_retries": 3, "retry_timeout": timedelta(seconds=settings.s3_timeout_s)}
        self.store = S3Store(
            self.bucket,
            prefix=self.prefix or None,
            client_options=client_options,  # type: ignore[arg-type]
            retry_config=retry,  # type: ignore[arg-type]
            **config,
        )
        self.endpoint = settings.s3_endpoint_url or "AWS S3"
        self.presign = settings.s3_presigned_downloads
        self.presign_ttl = timedelta(seconds=settings.s3_presigned_ttl_s)

    @staticmethod
    def default_scratch_dir(settings: Settings) -> Path:
        """SCRATCH_DIR, else DATA_DIR/scratch."""
        if settings.scratch_dir is not None:
            return settings.scratch_dir.expanduser().resolve()
        return settings.resolved_data_dir / "scratch"

    @property
    def location(self) -> str:
        """`s3://bucket/prefix`."""
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    # -- primitives ----------------------------------------------------------------------

    async def keep_input(
        self, incoming: Path, key: str, media_type: str, download_name: str | None = None
    ) -> None:
        """Upload the scratch file (in parts when large), then remove it."""
        size = (await anyio.Path(incoming).stat()).st_size
        with _store_errors(self.location, self.endpoint):
            await obstore.put_async(
                self.store,
                self.key_of(key),
                incoming,
                attributes=_attributes(media_type, download_name),
                use_multipart=size > MULTIPART_THRESHOLD_BYTES,
                chunk_size=MULTIPART_THRESHOLD_BYTES,
            )
        await self.remove_scratch(incoming)

    async def put(
        self,
        key: str,
        data: bytes,
        media_type: str | None = None,
        download_name: str | None = None,
    ) -> None:
        """One PUT (atomic)."""
        with _store_errors(self.location, self.endpoint):
            await obstore.put_async(
                self.store,
                self.key_of(key),
                data,
                attributes=_attributes(media_type, download_name),
                use_multipart=False,
            )

    async def get(self, key: str) -> bytes:
        """One GET (FileNotFoundError when missing)."""
        with _store_errors(self.location, self.endpoint):
            result = await obstore.get_async(self.store, self.key_of(key))
            return bytes(await result.bytes_async())

    async def open_stream(self, key: str) -> ObjectStream:
        """One GET, its body read as it is consumed."""
        with _store_errors(self.location, self.endpoint):
            result = await obstore.get_async(self.store, self.key_of(key))
        stream = result.stream(min_chunk_size=CHUNK_BYTES)

        async def chunks() -> AsyncIterator[bytes]:
            with _store_errors(self.location, self.endpoint):
                async for chunk in stream:
                    yield bytes(chunk)

        return ObjectStream(int(result.meta["size"]), chunks())

    async def exists(self, key: str) -> bool:
        """One HEAD."""
        try:
            with _store_errors(self.location, self.endpoint):
                await obstore.head_async(self.store, self.key_of(key))
        except (FileNotFoundError, ValueError):
            return False
        return True

    async def verify(self, *, write: bool = False) -> None:
        """One ListObjectsV2 of at most one key under the prefix (a HEAD cannot tell a
        missing bucket from a missing key); with `write`, one PUT and one DELETE of a probe
        object too."""
        with _store_errors(self.location, self.endpoint):
            async for _ in obstore.list(self.store, prefix=WRITE_PROBE_KEY, chunk_size=1):
                break
            if write:
                await obstore.put_async(self.store, WRITE_PROBE_KEY, b"probe")
                await obstore.delete_async(self.store, WRITE_PROBE_KEY)

    async def aclose(self) -> None:
        """Give obstore's runtime CLOSE_GRACE_S to finish before the process may exit."""
        await anyio.sleep(CLOSE_GRACE_S)

    def local_file(self, key: str) -> Path | None:
        """None: objects are not local files."""
        return None

    async def presigned_url(self, key: str) -> str | None:
        """A GET URL valid for S3_PRESIGNED_TTL_S seconds, when S3_PRESIGNED_DOWNLOADS."""
        if not self.presign:
            return None
        with _store_errors(self.location, self.endpoint):
            return await obstore.sign_async(self.store, "GET", self.key_of(key), self.presign_ttl)

    async def delete(self, keys: Sequence[str]) -> None:
        """DeleteObjects, up to 1000 keys a request."""
        paths = [self.key_of(k) for k in keys]
        with _store_errors(self.location, self.endpoint):
            for start in range(0, len(paths), DELETE_BATCH):
                await obstore.delete_async(self.store, paths[start : start + DELETE_BATCH])

    async def list_objects(self, prefix: str) -> AsyncIterator[StoredObject]:
        """ListObjectsV2 pages of up to 1000 keys."""
        with _store_errors(self.location, self.endpoint):
            pages = obstore.list(self.store, prefix=prefix.rstrip("/"), chunk_size=1000)
            async for page in pages:
                for meta in page:
                    key = str(meta["path"])
                    if key.startswith(prefix):
                        modified = meta["last_modified"].timestamp()
                        yield StoredObject(key, int(meta["size"]), modified)


@contextlib.contextmanager
def _store_errors(location: str, endpoint: str) -> Iterator[None]:
    """Errors of the store by what fixes them: a missing object stays FileNotFoundError;
    a missing bucket or refused credentials become StorageMisconfigured (an operator must
    act); anything else (refused or reset connection, timeout, 5xx, throttling, after
    obstore's own retries) becomes StorageUnavailable (waited out)."""
    try:
        yield
    except (FileNotFoundError, obstore.exceptions.NotFoundError) as exc:
        # obstore reports a 404 as not found, whether the key or the whole bucket is.
        if _s3_error_code(exc) == "NoSuchBucket":
            raise _bucket_missing(location, endpoint) from exc
        if isinstance(exc, FileNotFoundError):
            raise
        raise FileNotFoundError(str(exc).splitlines()[0]) from exc
    except obstore.exceptions.BaseError as exc:
        code = _s3_error_code(exc)
        if code == "NoSuchBucket":
            raise _bucket_missing(location, endpoint) from exc
        if INSTANCE_METADATA_HOST in str(exc):
            # No credentials were given, so obstore asked the machine's instance role.
            raise StorageMisconfigured(
                f"no AWS credentials for the object store {location}: set AWS_ACCESS_KEY_ID"
                " and AWS_SECRET_ACCESS_KEY (environment or .env), or run where an instance"
                " role provides them"
            ) from exc
        if code in REFUSED_CODES or isinstance(
            exc,
            obstore.exceptions.PermissionDeniedError | obstore.exceptions.UnauthenticatedError,
        ):
            raise StorageMisconfigured(
                f"the object store {location} ({endpoint}) refuses the agent"
                f" ({code or type(exc).__name__}): check AWS_ACCESS_KEY_ID and"
                " AWS_SECRET_ACCESS_KEY, and that they may list, read, write and delete in"
                " the bucket"
            ) from exc
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise StorageUnavailable(
            f"the object store {location} failed: {first[:300]}; check that it is up, and"
            " STORAGE_URL, S3_ENDPOINT_URL and the AWS credentials"
        ) from exc


def _s3_error_code(exc: BaseException) -> str | None:
    """The S3 error code (`<Code>` of the XML error body obstore quotes), if any."""
    found = _ERROR_CODE.search(str(exc))
    return found.group(1) if found else None


def _bucket_missing(location: str, endpoint: str) -> StorageMisconfigured:
    bucket = urlsplit(location).netloc
    return StorageMisconfigured(
        f"the bucket {bucket!r} of {location} does not exist at {endpoint}: create it, or"
        " correct the bucket's name or S3_ENDPOINT_URL"
    )


def _attributes(media_type: str | None, download_name: str | None) -> Attributes | None:
    """The object's stored headers: its media type, and with a download name a
    `Content-Disposition: attachment` the store answers a (presigned) GET with, since a
    presigned URL of obstore cannot carry `response-content-disposition`."""
    attributes: Attributes = {}
    if media_type:
        attributes["Content-Type"] = media_type
    if download_name:
        attributes["Content-Disposition"] = content_disposition(download_name)
    return attributes or None
