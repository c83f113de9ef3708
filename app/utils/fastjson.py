"""JSON through orjson (about 3x faster than the standard library on the agent's large
answers and analysis files), with the standard library's behaviour kept where they differ.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def loads(data: bytes | bytearray | str) -> Any:
    """Parse JSON text.

    orjson first; on what it refuses, the standard library, which also reads `NaN` and
    `Infinity` (a careless model service writes them; they are then refused by
    validation with a message naming the field, not as "not JSON").

    Text nested deeper than orjson's limit (1024 arrays or objects) is refused without
    the fallback, whose recursion would end in a RecursionError; an integer of more than
    4300 digits (Python's conversion limit) is refused too.

    Raises:
        json.JSONDecodeError (a ValueError): not JSON for either parser, nested too deeply,
            or an integer too long to convert.
        UnicodeDecodeError: bytes that are not UTF-8.
    """
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if "depth limit" in str(exc):
            raise
    try:
        return json.loads(data)
    except json.JSONDecodeError:
        raise
    except (RecursionError, ValueError) as exc:
        raise json.JSONDecodeError(f"not usable JSON ({exc})"[:200], "", 0) from exc


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON of JSON-ready `value` (dicts, lists, str, int, float, bool, None),
    as FastAPI's `JSONResponse` renders it (no spaces, non-ASCII kept).

    Raises:
        TypeError: a value JSON cannot hold (orjson.JSONEncodeError), e.g. an integer
            beyond 64 bits.
    """
    return orjson.dumps(value)


def dumps_indented(value: Any) -> bytes:
    """UTF-8 JSON of JSON-ready `value` indented by 2 spaces, non-ASCII kept: the bytes of
    `json.dumps(value, ensure_ascii=False, indent=2)` for ordinary values, about 30x
    faster (the standard library's indenting encoder is pure Python).

    Where the two differ: a float is written in its shortest form by both, but orjson
    writes exponents without a sign or leading zero (`1e-5`, not `1e-05`), and writes
    `NaN`/`Infinity` as `null` (the standard library writes them as bare words, which are
    not JSON). An integer beyond 64 bits, which orjson refuses, goes through the standard
    library.

    Raises:
        TypeError, ValueError: a value the standard library cannot write either.
    """
    try:
        return orjson.dumps(value, option=orjson.OPT_INDENT_2)
    except orjson.JSONEncodeError:
        return json.dumps(value, ensure_ascii=False, indent=2).encode("utf-8")
