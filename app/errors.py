"""Domain errors that carry their HTTP meaning.

Services raise these; one exception handler (`app.main`) turns them into
`{"error": <code>, "detail": <message for the user>, "request_id": <id>}` with the
status code.
"""

from __future__ import annotations

from typing import Any, ClassVar

from app.models.schemas import ErrorBody, ValidationErrorBody


class AgentError(Exception):
    """Base of every error the agent reports to a client."""

    status_code: ClassVar[int] = 500
    error: ClassVar[str] = "internal_error"
    headers: ClassVar[dict[str, str]] = {}  # sent with the answer (e.g. WWW-Authenticate)

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra

    def response_headers(self) -> dict[str, str]:
        """The headers sent with the answer: the class's `headers` unless overridden
        (e.g. a `Retry-After` that depends on the instance)."""
        return self.headers

    def to_body(self) -> dict[str, Any]:
        """The JSON body sent to the client."""
        return {"error": self.error, "detail": self.detail, **self.extra}


class BadImage(AgentError):
    """The upload is not a usable image (empty, truncated, undecodable)."""

    status_code = 400
    error = "invalid_image"


class UnsupportedImage(AgentError):
    """The upload is a file type the agent does not accept."""

    status_code = 415
    error = "unsupported_media_type"


class ImageTooLarge(AgentError):
    """The upload is over MAX_FILE_SIZE_MB, or decodes to too many pixels."""

    status_code = 413
    error = "file_too_large"


class BadUploadRequest(AgentError):
    """The request itself is malformed (no file field, too many files, not multipart)."""

    status_code = 400
    error = "bad_request"


class UploadTimeout(AgentError):
    """The request body stopped arriving for UPLOAD_IDLE_TIMEOUT_S seconds."""

    status_code = 408
    error = "request_timeout"


class InsufficientStorage(AgentError):
    """The disk holding DATA_DIR is full, or below MIN_FREE_DISK_MB free."""

    status_code = 507
    error = "insufficient_storage"


# Seconds a client is asked to wait before sending again what the store could not take.
STORAGE_RETRY_AFTER_S = 15


class StorageUnavailable(AgentError):
    """The object store (STORAGE_URL=s3://...) is down or overloaded (refused, timed out,
    5xx, throttled); nothing of the request was kept, send it again later (Retry-After).
    Batch images wait for it and resume by themselves (BATCH_RETRY_WINDOW_S)."""

    status_code = 503
    error = "storage_unavailable"
    headers: ClassVar[dict[str, str]] = {"Retry-After": str(STORAGE_RETRY_AFTER_S)}


class StorageMisconfigured(StorageUnavailable):
    """The object store answers but refuses the agent: its bucket does not exist, or the
    credentials are wrong or may not use it; an operator must fix STORAGE_URL, the bucket
    or the AWS credentials (the detail says which). Treated as an outage otherwise."""

    error = "storage_misconfigured"


class ImageNotFound(AgentError):
    """No inspection has this img_unique_id."""

    status_code = 404
    error = "image_not_found"


class BatchNotFound(AgentError):
    """No batch has this batch_id."""

    status_code = 404
    error = "batch_not_found"


class BoardNotFound(AgentError):
    """No inspection names this board serial."""

    status_code = 404
    error = "board_not_found"


class ResultNotReady(AgentError):
    """The inspection exists but has no results (pending or failed)."""

    status_code = 409
    error = "result_not_ready"


class NotRetryable(AgentError):
    """Only failed inspections can be retried."""

    status_code = 409
    error = "not_retryable"


class DuplicateInProgress(AgentError):
    """`skip_duplicates`: the same bytes are still being inspected; ask again shortly."""

    status_code = 409
    error = "duplicate_in_progress"


class IdempotencyKeyInUse(AgentError):
    """A request with this Idempotency-Key is still being handled; send it again shortly."""

    status_code = 409
    error = "idempotency_key_in_use"


class IdempotencyKeyReused(AgentError):
    """This Idempotency-Key was used for a different request (other files or options)."""

    status_code = 422
    error = "idempotency_key_reused"


class StoredFileMissing(AgentError):
    """A file the database points at is gone from disk."""

    status_code = 410
    error = "file_missing"


class ModelServiceUnavailable(AgentError):
    """The model service could not be reached (after retries) or kept failing."""

    status_code = 503
    error = "model_service_unavailable"


class ModelServiceBadAnswer(AgentError):
    """The model service answered with something the agent cannot use."""

    status_code = 502
    error = "model_service_bad_answer"


class DatabaseUnavailable(AgentError):
    """PostgreSQL is not answering."""

    status_code = 503
    error = "database_unavailable"


VALIDATION_ERROR_RESPONSE: dict[int | str, dict[str, Any]] = {
    422: {
        "model": ValidationErrorBody,
        "description": "A parameter or the body is missing, malformed or out of range, or"
        " parameters contradict each other; `detail` and `errors` say which and why.",
    }
}
"""The 422 answer as it really is, for `include_router(responses=...)`."""


def responses(*errors: type[AgentError]) -> dict[int | str, dict[str, Any]]:
    """An OpenAPI `responses=` mapping for the errors a route can return."""
    out: dict[int | str, dict[str, Any]] = {}
    for err in errors:
        model = ValidationErrorBody if err.status_code == 422 else ErrorBody
        entry = out.setdefault(err.status_code, {"description": "", "model": model})
        entry["description"] = "; ".join(
            filter(None, [entry["description"], (err.__doc__ or err.error).strip()])
        )
    return out
