"""Errors of the session layer, shaped like the API's error body.

Every error a client can cause is a ``HubError`` with an HTTP status, a stable
code and structured details; transports render it, they never invent one.
"""

from __future__ import annotations

from typing import Any


class HubError(Exception):
    """A command was refused: ``status`` and ``code`` are those of API.md "Errors"."""

    status = 400
    code = "invalid_request"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.details = details or {}

    def to_body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class InvalidRequest(HubError):
    status, code = 400, "invalid_request"

    def __init__(self, message: str, field: str | None = None, **details: Any) -> None:
        if field is not None:
            details["field"] = field
        super().__init__(message, details=details)


class Unauthorized(HubError):
    status, code = 401, "unauthorized"


class NotFound(HubError):
    status, code = 404, "not_found"


class SessionNotFound(NotFound):
    code = "session_not_found"

    def __init__(self, session_id: str) -> None:
        super().__init__(f"session {session_id!r} not found", details={"session_id": session_id})


class ChatNotFound(NotFound):
    code = "chat_not_found"

    def __init__(self, session_id: str, chat_id: str) -> None:
        super().__init__(
            f"chat {chat_id!r} not found in session {session_id!r}",
            details={"session_id": session_id, "chat_id": chat_id},
        )


class Conflict(HubError):
    """409: the state forbids the command (code says which rule)."""

    status, code = 409, "conflict"

    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(message, code=code, details=details)


class LimitExceeded(HubError):
    status, code = 429, "limit_exceeded"

    def __init__(self, limit: str, value: int, message: str) -> None:
        super().__init__(message, details={"limit": limit, "max": value})


class PayloadTooLarge(HubError):
    status, code = 413, "payload_too_large"


class Unavailable(HubError):
    status, code = 503, "unavailable"
