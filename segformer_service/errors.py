"""Errors of the reference model service; each carries its HTTP status code."""

from __future__ import annotations


class ServiceError(Exception):
    """Base error: ``status_code``, a short ``error`` and a human ``detail``."""

    status_code = 500
    error = "internal error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidImage(ServiceError):
    """The upload is empty, not a decodable image, or too many pixels (400)."""

    status_code = 400
    error = "invalid image"


class UploadTooLarge(ServiceError):
    """The upload exceeds ``max_upload_size_mb`` (413)."""

    status_code = 413
    error = "upload too large"
