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


def test_dumps_indented_gives_the_standard_librarys_bytes_for_an_analysis() -> None:
    analysis = {
        "image_shape": {"height": 640, "width": 640},
        "classes": [{"class_name": "短路", "regions": [{"area": 12, "circularity": 0.61}]}],
        "empty": [],
        "none": {},
        "flag": None,
    }
    assert fastjson.dumps_indented(analysis) == json.dumps(
        analysis, ensure_ascii=False, indent=2
    ).encode("utf-8")


def test_dumps_indented_falls_back_for_integers_beyond_64_bits() -> None:
    assert fastjson.dumps_indented({"n": 2**70}) == b'{\n  "n": 1180591620717411303424\n}'


def test_dumps_indented_writes_nan_as_null_which_is_json() -> None:
    assert json.loads(fastjson.dumps_indented({"x": float("nan")})) == {"x": None}


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(b"[" * 5000 + b"]" * 5000, id="deeper-than-orjson-allows"),
        pytest.param(b"[NaN, " + b"[" * 1000 + b"]" * 1000 + b"]", id="deep-with-nan"),
        pytest.param(b'{"n": ' + b"9" * 5000 + b"}", id="integer-of-5000-digits"),
    ],
)
def test_loads_refuses_what_would_exhaust_the_standard_library(text: bytes) -> None:
    # A RecursionError or the integer-conversion ValueError would escape as a 500.
    with pytest.raises(json.JSONDecodeError):
        fastjson.loads(text)
