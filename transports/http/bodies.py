"""Request bodies: strict JSON, size-limited; every refusal is a 400 or a 413 in API shape."""

from __future__ import annotations

import json
from typing import Any

import msgspec
from aiohttp import web

from actors.errors import InvalidRequest, PayloadTooLarge
from transports.http.keys import SETTINGS

__all__ = ["NO_BODY", "parse_json", "read_json"]

#: What :func:`read_json` answers for an empty body.
NO_BODY: Any = object()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _check_text(value: Any) -> None:
    """Refuse strings that cannot be stored as UTF-8 (lone surrogates like ``"\\ud800"``)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidRequest(
                    "the body holds a string that is not valid Unicode (a lone surrogate)",
                    field="body",
                ) from None
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


_fast_decode = msgspec.json.Decoder().decode
_strict_decoder = json.JSONDecoder(parse_constant=_reject_constant)
#: Up to this many ``[`` and ``{`` (so at most this deep), msgspec decides. Deeper bodies
#: go to the standard library, whose recursion limit is the documented one.
_FAST_MAX_BRACKETS = 256


def parse_json(raw: bytes) -> Any:
    """Strict JSON: UTF-8, no NaN/Infinity, no lone surrogates; else 400 ``invalid_request``.

    msgspec decodes first, several times faster. It accepts a subset of what the standard
    library does, to the same values: what it refuses (NaN, invalid UTF-8 or JSON, lone
    surrogates, numbers out of its range such as ``1e400``) or nests deeply goes to the
    standard library, which decides as it always has, error messages included.
    """
    if raw.count(b"[") + raw.count(b"{") <= _FAST_MAX_BRACKETS:
        try:
            return _fast_decode(raw)
        except Exception:  # the standard library decides, below
            pass
    return _parse_strict(raw)


def _parse_strict(raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8")
        value = _strict_decoder.decode(text)
    except (ValueError, RecursionError) as exc:
        message = str(exc) if not isinstance(exc, RecursionError) else "nested too deeply"
        raise InvalidRequest(f"the body is not valid JSON: {message}", field="body") from None
    if "\\u" in text:
        _check_text(value)
    return value


async def read_json(request: web.Request) -> Any:
    """The request's JSON body, or ``NO_BODY`` when it is empty.

    Raises:
        PayloadTooLarge: over ``max_body_bytes`` (checked before reading when the length
            is announced; aiohttp's ``client_max_size`` catches the rest).
        InvalidRequest: not JSON.
    """
    limit = request.app[SETTINGS].max_body_bytes
    length = request.content_length
    if length is not None and length > limit:
        raise PayloadTooLarge(
            f"the body is larger than {limit} bytes",
            details={"limit": "max_body_bytes", "max": limit},
        )
    raw = await request.read()
    if not raw.strip():
        return NO_BODY
    return parse_json(raw)
