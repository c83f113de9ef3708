"""JSON through orjson (about 3x faster than the standard library on the agent's large
answers and analysis files), with the standard library's behaviour kept where they differ.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def loads(data: bytes | str) -> Any:
    """Parse JSON text.

    orjson first; on what it refuses, the standard library, which also reads `NaN` and
    `Infinity` (a careless model service writes them; they are then refused by
    validation with a message naming the field, not as "not JSON").

    Raises:
        json.JSONDecodeError (a ValueError): not JSON for either parser.
        UnicodeDecodeError: bytes that are not UTF-8.
    """
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON of JSON-ready `value` (dicts, lists, str, int, float, bool, None),
    as FastAPI's `JSONResponse` renders it (no spaces, non-ASCII kept).

    Raises:
        TypeError: a value JSON cannot hold (orjson.JSONEncodeError), e.g. an integer
            beyond 64 bits.
    """
    return orjson.dumps(value)
