"""JSON in and out of the HTTP transport: msgspec's fast paths decide as the stdlib did."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.errors import InvalidRequest
from transports.http.bodies import _parse_strict, parse_json
from transports.http.middlewares import encode_json


def _same(a: Any, b: Any) -> bool:
    """Equal values of the same types (an int is not a float; -0.0 is not 0.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or repr(a) == repr(b)
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _outcome(parse: Any, raw: bytes) -> tuple[str, Any]:
    try:
        return "ok", parse(raw)
    except InvalidRequest as exc:
        return "refused", (str(exc), exc.details)


EDGES = [
    b'{"a": 1}',
    b'{"a":1,"a":2}',
    b" [1, 2.5, -0, -0.0, 1E5, 1e-400, true, false, null] ",
    b'"\\u00e9\\ud83d\\ude00\\u0000\\/"',
    b'{"a": NaN}',
    b'{"a": Infinity}',
    b'{"a": -Infinity}',
    b"1e400",
    b"-1e400",
    b"1" + b"0" * 400 + b".5",
    b"9" * 4300,
    b"-" + b"9" * 4300,
    b"9" * 4301,
    b'{"a": ' + b"9" * 4400 + b"}",
    b"18446744073709551616",
    b"-9223372036854775809",
    b"123456789012345678901234567890.5",
    b"2.2250738585072011e-308",
    b'{"name": "\\ud800"}',
    b'{"name": "\\udc00\\ud800"}',
    b'{"name": "\xff\xfe"}',
    b'{"a":"\xed\xa0\x80"}',
    b'{"a":"\x01"}',
    b'{"a": 1} trailing',
    b"\xef\xbb\xbf{}",
    b"01",
    b"1.",
    b".5",
    b"[1,]",
    b'{"a":1,}',
    b"\x0c{}",
    b"{bad",
    b"[" * 200 + b"]" * 200,
    b"[" * 256 + b"]" * 256,
    b"[" * 257 + b"]" * 257,
    b"[" * 990 + b"]" * 990,
    b"[" * 3000 + b"]" * 3000,
    b'["[[[[", "{{{{"]' * 100,
]


@pytest.mark.parametrize("raw", EDGES, ids=[repr(r[:30]) for r in EDGES])
def test_parse_json_decides_as_the_standard_library(raw):
    """Every edge case: the same value (and types), or the same refusal and message."""
    want = _outcome(_parse_strict, raw)
    got = _outcome(parse_json, raw)
    assert got[0] == want[0], (got, want)
    if want[0] == "ok":
        assert _same(got[1], want[1])
    else:
        assert got[1] == want[1]


def test_deep_nesting_is_refused_as_documented():
    """Nesting past the stdlib's recursion limit is a 400 'nested too deeply'."""
    with pytest.raises(InvalidRequest, match="nested too deeply"):
        parse_json(b"[" * 3000 + b"]" * 3000)


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(value=_JSON, ascii_only=st.booleans(), indent=st.sampled_from([None, 1]))
def test_parse_json_matches_the_standard_library_on_any_json(value, ascii_only, indent):
    """Any JSON text, however spelled, parses to the very value the stdlib gives."""
    raw = json.dumps(value, ensure_ascii=ascii_only, indent=indent).encode("utf-8")
    assert _same(parse_json(raw), _parse_strict(raw))


def _has_float(value: Any) -> bool:
    if isinstance(value, float):
        return True
    if isinstance(value, dict):
        return any(_has_float(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_float(v) for v in value)
    return False


@settings(max_examples=300, deadline=None)
@given(value=_JSON)
def test_encode_json_gives_the_same_json(value):
    """Responses read back as the same value; without floats they are the same bytes
    (with floats only the spelling of a number may differ, 1e16 for 1e+16)."""
    out = encode_json(value)
    stdlib = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    assert _same(json.loads(out), json.loads(stdlib))
    if not _has_float(value):
        assert out == stdlib


def test_encode_json_falls_back_where_msgspec_refuses():
    """What msgspec cannot encode is encoded (or refused) by the stdlib as before."""
    odd = {True: 1, None: 2, "k": [1, 2]}
    want = json.dumps(odd, separators=(",", ":"), ensure_ascii=False).encode()
    assert encode_json(odd) == want
    circular: list[Any] = []
    circular.append(circular)
    with pytest.raises((ValueError, RecursionError)):
        encode_json(circular)
    with pytest.raises(TypeError):
        encode_json({"a": object()})
    with pytest.raises(UnicodeEncodeError):
        encode_json({"a": "\ud800"})
