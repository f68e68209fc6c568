"""Checks on request bodies: wrong shapes become 400s that name the field."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from actors.errors import InvalidRequest

ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
#: Context and memory keys: printable, no path separators or dot-segments.
KEY_RE = re.compile(r"^[A-Za-z0-9_\-.:@]{1,256}$")
CLIENT_TYPE_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")

_MISSING = object()


def body_object(body: Any, name: str = "body") -> dict[str, Any]:
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise InvalidRequest(f"{name} must be a JSON object", field=name)
    return body


def opt_str(body: Mapping[str, Any], key: str, max_len: int = 100_000) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"{key} must be a string", field=key)
    if len(value) > max_len:
        raise InvalidRequest(f"{key} is longer than {max_len} characters", field=key)
    return value


def req_str(body: Mapping[str, Any], key: str, max_len: int = 100_000) -> str:
    value = opt_str(body, key, max_len)
    if value is None:
        raise InvalidRequest(f"{key} is required", field=key)
    return value


def opt_obj(body: Mapping[str, Any], key: str) -> dict[str, Any] | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidRequest(f"{key} must be an object", field=key)
    return value


def opt_str_list(body: Mapping[str, Any], key: str) -> list[str] | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidRequest(f"{key} must be a list of strings", field=key)
    return list(dict.fromkeys(value))


def opt_int(
    body: Mapping[str, Any], key: str, minimum: int | None = None, maximum: int | None = None
) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (isinstance(value, float) and not math.isfinite(value))
        or value != int(value)
    ):
        raise InvalidRequest(f"{key} must be an integer", field=key)
    value = int(value)
    if minimum is not None and value < minimum:
        raise InvalidRequest(f"{key} must be at least {minimum}", field=key)
    if maximum is not None and value > maximum:
        raise InvalidRequest(f"{key} must be at most {maximum}", field=key)
    return value


def opt_number(body: Mapping[str, Any], key: str, minimum: float = 0) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (isinstance(value, float) and not math.isfinite(value))
    ):
        raise InvalidRequest(f"{key} must be a finite number", field=key)
    if value < minimum:
        raise InvalidRequest(f"{key} must be at least {minimum}", field=key)
    return float(value)


def enum(body: Mapping[str, Any], key: str, allowed: tuple[str, ...], default: Any = None) -> Any:
    value = body.get(key, default)
    if value is None:
        return default
    if value not in allowed:
        raise InvalidRequest(f"{key} must be one of {', '.join(allowed)}", field=key)
    return value


def query_int(
    query: Mapping[str, str],
    key: str,
    default: int | None = None,
    minimum: int = 0,
    maximum: int | None = None,
) -> int | None:
    raw = query.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise InvalidRequest(f"{key} must be an integer", field=key) from None
    if value < minimum:
        raise InvalidRequest(f"{key} must be at least {minimum}", field=key)
    if maximum is not None and value > maximum:
        raise InvalidRequest(f"{key} must be at most {maximum}", field=key)
    return value


def session_id(value: Any, field: str = "session_id") -> str:
    if not isinstance(value, str) or not ID_RE.match(value):
        raise InvalidRequest(
            f"{field} must be 1-128 characters of letters, digits and ._:-", field=field
        )
    return value


def key(value: Any, field: str = "key") -> str:
    if (
        not isinstance(value, str)
        or not KEY_RE.match(value)
        or value in (".", "..")
        or value.startswith(".")
    ):
        raise InvalidRequest(
            f"{field} must be 1-256 characters of letters, digits and _-.:@, "
            "not starting with a dot",
            field=field,
        )
    return value
