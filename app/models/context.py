"""Board context of an inspection: which board, panel, product, line and side it shows.

Every field is optional. Text fields are 1 to CONTEXT_TEXT_LENGTH printable characters
(no NUL, tab, newline or other control character); surrounding spaces are stripped and
an empty value counts as absent. `panel_position` is an integer 0..MAX_PANEL_POSITION,
`lane` an integer 1..MAX_LANE, `side` is `top` or `bottom`. Unknown keys are refused, so
a misspelt field is a 422, not silently lost. See docs/boards.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

from app.utils import fastjson
from app.utils.text import printable

CONTEXT_TEXT_LENGTH = 64
MAX_PANEL_POSITION = 9999
# Conveyor lanes are numbered from 1 (as CFX's `Lane` and IPC-HERMES-9852 count them).
MAX_LANE = 99
# The most bytes a batch `manifest` (JSON) may have; more is refused before parsing.
MAX_MANIFEST_BYTES = 256 * 1024
BoardSide = Literal["top", "bottom"]
# The context fields that filter listings, queries, exports and dashboards.
FILTER_FIELDS = ("board_serial", "product", "line", "side", "lot")


def _blank_is_none(value: object) -> object:
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return value


def _printable(value: str | None) -> str | None:
    if value is not None and not value.isprintable():
        raise ValueError("must hold printable characters only (no NUL, tab, newline, ...)")
    return value


ContextText = Annotated[
    Annotated[str, StringConstraints(max_length=CONTEXT_TEXT_LENGTH)] | None,
    BeforeValidator(_blank_is_none),
    AfterValidator(_printable),
]


class InspectionContext(BaseModel):
    """Where an inspected image comes from on the line. All fields optional.

    Attributes:
        board_serial: the unit identifier (barcode / serial number) of the board.
        panel_id: the panel (array) the board was part of.
        panel_position: the board's position on its panel, 0..MAX_PANEL_POSITION.
        product: the product, recipe or AOI program name.
        recipe_revision: the revision of that recipe.
        line: the production line.
        station: the inspection station on that line.
        lane: the station's conveyor lane the board went through, 1..MAX_LANE (a
            dual-lane machine has lanes 1 and 2).
        side: `top` or `bottom`.
        lot: the lot or work order.
    """

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "board_serial": "SN123456",
                    "panel_id": "P-7781",
                    "panel_position": 3,
                    "product": "CTRL-BOARD-A",
                    "recipe_revision": "r12",
                    "line": "L3",
                    "station": "AOI-2",
                    "lane": 1,
                    "side": "top",
                    "lot": "WO-2026-1207",
                }
            ]
        },
    )

    board_serial: ContextText = None
    panel_id: ContextText = None
    panel_position: Annotated[
        Annotated[int, Field(ge=0, le=MAX_PANEL_POSITION)] | None,
        BeforeValidator(_blank_is_none),
    ] = None
    product: ContextText = None
    recipe_revision: ContextText = None
    line: ContextText = None
    station: ContextText = None
    lane: Annotated[
        Annotated[int, Field(ge=1, le=MAX_LANE)] | None,
        BeforeValidator(_blank_is_none),
    ] = None
    side: Annotated[BoardSide | None, BeforeValidator(_blank_is_none)] = None
    lot: ContextText = None

    def is_empty(self) -> bool:
        """Whether no field is set (nothing worth storing)."""
        return not self.model_dump(exclude_none=True)


CONTEXT_FIELDS = tuple(InspectionContext.model_fields)


class ContextError(ValueError):
    """Board context that is refused: `errors` lists each problem as
    `{"loc": (where, ...), "msg": ..., "type": ...}` (pydantic's shape, without the input)."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors))
        self.errors = errors


def _validate(data: object, where: tuple[str, ...]) -> InspectionContext:
    try:
        return InspectionContext.model_validate(data)
    except ValidationError as exc:
        raise ContextError(
            [
                {"loc": (*where, *map(str, e["loc"])), "msg": e["msg"], "type": e["type"]}
                for e in exc.errors()
            ]
        ) from None


def _manifest_problem(message: str) -> ContextError:
    return ContextError([{"loc": ("manifest",), "msg": message, "type": "value_error"}])


def context_from_fields(fields: Mapping[str, str]) -> InspectionContext | None:
    """The context named by form fields (other fields are ignored).

    Returns:
        The context, or None when no context field is set.

    Raises:
        ContextError: a field is out of its bounds.
    """
    given = {k: v for k, v in fields.items() if k in CONTEXT_FIELDS}
    context = _validate(given, ())
    return None if context.is_empty() else context


def contexts_from_manifest(
    manifest: str | bytes, filenames: Sequence[str]
) -> list[InspectionContext | None]:
    """The context of each file of a batch, from its manifest (JSON).

    The manifest is either one context for every file (an object of context fields) or an
    object mapping file names to contexts (`{"a.jpg": {"board_serial": "SN1"}, ...}`); an
    object whose values are all objects is the second form. Files the manifest does not
    name get no context.

    Returns:
        One context (or None) per name of `filenames`, in their order.

    Raises:
        ContextError: not JSON, larger than MAX_MANIFEST_BYTES, not an object, a name that
            matches no file, or a context out of bounds (`loc` starts with `manifest` and,
            for a per-file context, the file name).
    """
    size = len(manifest.encode() if isinstance(manifest, str) else manifest)
    if size > MAX_MANIFEST_BYTES:
        raise _manifest_problem(f"is larger than {MAX_MANIFEST_BYTES // 1024} KiB")
    try:
        data: Any = fastjson.loads(manifest)
    except ValueError as exc:  # UnicodeDecodeError too
        raise _manifest_problem(f"is not JSON: {printable(str(exc), 120)}") from None
    if not isinstance(data, dict):
        raise _manifest_problem("must be a JSON object (one context, or file name → context)")
    if data and all(isinstance(v, dict) for v in data.values()):
        unknown = sorted(set(data) - set(filenames))
        if unknown:
            shown = ", ".join(repr(printable(n, 80)) for n in unknown[:5])
            raise _manifest_problem(f"names files that are not in the batch: {shown}")
        per_file = {
            name: _validate(value, ("manifest", printable(name, 80)))
            for name, value in data.items()
        }
        return [_or_none(per_file.get(name)) for name in filenames]
    shared = _or_none(_validate(data, ("manifest",)))
    return [shared for _ in filenames]


def _or_none(context: InspectionContext | None) -> InspectionContext | None:
    return None if context is None or context.is_empty() else context


def check_name_pattern(pattern: re.Pattern[str]) -> re.Pattern[str]:
    """`pattern` if it has named groups and every one is a context field.

    Raises:
        ValueError: no named group, or a group that is not a context field.
    """
    names = set(pattern.groupindex)
    if not names:
        raise ValueError("has no named group, e.g. (?P<board_serial>[^_]+)")
    unknown = sorted(names - set(CONTEXT_FIELDS))
    if unknown:
        raise ValueError(
            f"names groups that are not context fields: {', '.join(unknown)}"
            f" (known: {', '.join(CONTEXT_FIELDS)})"
        )
    return pattern


def context_from_name(pattern: re.Pattern[str], filename: str) -> InspectionContext | None:
    """The context the named groups of `pattern` find in `filename` (searched, not anchored;
    a group that did not take part in the match is not set).

    Returns:
        The context, or None when the pattern does not match or sets nothing.

    Raises:
        ContextError: a group captured a value out of bounds (`loc` starts with `filename`).
    """
    match = pattern.search(filename)
    if match is None:
        return None
    found = {k: v for k, v in match.groupdict().items() if v is not None}
    return _or_none(_validate(found, ("filename",)))
