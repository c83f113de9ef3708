"""Errors of the golden-board domain, with their HTTP meaning."""

from __future__ import annotations

from typing import Any

from app.errors import AgentError


class GoldenNotFound(AgentError):
    """No golden image: the board has none in the library, or no such golden id."""

    status_code = 404
    error = "golden_not_found"


def _problem(location: tuple[str, ...], message: str, value: Any) -> list[dict[str, Any]]:
    return [{"type": "value_error", "loc": list(location), "msg": message, "input": value}]


class CropOutsideImage(AgentError):
    """The crop box does not lie within the inspected image."""

    status_code = 422
    error = "invalid_request"

    def __init__(self, detail: str, box: dict[str, int]) -> None:
        super().__init__(detail, errors=_problem(("query",), detail, box))


class InvalidGoldenImage(AgentError):
    """The golden image is empty, truncated, corrupt, of several pages, or too large."""

    status_code = 422
    error = "invalid_image"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, errors=_problem(("body", "image"), detail, None))
