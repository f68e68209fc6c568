"""API keys: ``Authorization: Bearer <key>`` -> the :class:`~actors.hub.Caller`.

The key's user is the caller; ``*`` is an operator (``Caller(None)``) who sees every
session. Without keys the server is open and every request is an operator's.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from actors.errors import Unauthorized
from actors.hub import Caller

__all__ = ["OPERATOR_USER", "Authenticator"]

OPERATOR_USER = "*"


class Authenticator:
    """Maps API keys to callers, comparing keys in constant time."""

    def __init__(self, keys: Mapping[str, str], transport: str = "http") -> None:
        self._keys = [(k.encode(), user) for k, user in keys.items()]
        self.transport = transport
        self._open = Caller(None, transport)

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def caller_for_key(self, key: str | None) -> Caller:
        """The caller of ``key``; raises :class:`Unauthorized` for a missing or wrong key."""
        if not self._keys:
            return self._open
        if not key:
            raise Unauthorized("an API key is required: send Authorization: Bearer <key>")
        given = key.encode()
        user = None
        for candidate, owner in self._keys:
            if hmac.compare_digest(candidate, given):
                user = owner
        if user is None:
            raise Unauthorized("the API key is not valid")
        return Caller(None if user == OPERATOR_USER else user, self.transport)

    def caller_for_header(self, header: str | None, token: str | None = None) -> Caller:
        """The caller of an ``Authorization`` header (or, failing it, an access token)."""
        key = None
        if header:
            scheme, _, value = header.strip().partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                if self._keys:
                    raise Unauthorized("Authorization must be 'Bearer <key>'")
            else:
                key = value.strip()
        if key is None:
            key = token
        return self.caller_for_key(key)
