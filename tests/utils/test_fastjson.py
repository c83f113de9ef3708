"""orjson with the standard library's leniency kept (app/utils/fastjson.py)."""

from __future__ import annotations

import json
import math

import pytest

from app.utils import fastjson


def test_dumps_is_compact_utf8_like_fastapis_json_response() -> None:
    body = {"class": "pin_hole", "name": "Lötstelle", "area": 14, "ratio": 0.75, "ok": None}
    assert fastjson.dumps(body) == json.dumps(
        body, ensure_ascii=False, separators=(",", ":")
    ).encode("utf-8")


def test_loads_reads_nan_as_the_standard_library_does() -> None:
    # orjson refuses NaN; the fallback keeps it, so validation can name the field.
    value = fastjson.loads(b'{"circularity": NaN}')
    assert math.isnan(value["circularity"])


def test_loads_refuses_what_is_not_json() -> None:
    with pytest.raises(json.JSONDecodeError):
        fastjson.loads(b"<html>proxy error</html>")
