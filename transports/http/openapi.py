"""``GET /openapi.json``: an OpenAPI 3.1 document generated from the route table.

Paths, methods, parameters, bodies and error responses all come from
:data:`transports.http.routes.ROUTES`, the table the router is built from; only the
schemas of the bodies are written out here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from transports.http.routes import Route

__all__ = ["ERROR_RESPONSES", "SCHEMAS", "build_openapi"]

_REF = "#/components/schemas/"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF + name}


_STR = {"type": "string"}
_NSTR = {"type": ["string", "null"]}
_INT = {"type": "integer"}
_TIME = {"type": "string", "format": "date-time"}
_OBJ = {"type": "object", "additionalProperties": True}
_STRS = {"type": "array", "items": _STR}

ERROR_RESPONSES: dict[int, tuple[str, str]] = {
    400: (
        "invalid_request",
        "Malformed JSON, wrong types, unknown enum or missing field (details.field names it).",
    ),
    401: ("unauthorized", "Auth is on and the API key is missing or wrong."),
    404: (
        "session_not_found",
        "Unknown id, or an id that belongs to another user (also chat_not_found, not_found).",
    ),
    405: ("method_not_allowed", "A known path with a method it does not take."),
    409: (
        "version_conflict",
        "The state forbids the command: version_conflict, "
        "already_exists, session_closed, session_paused, "
        "turn_in_progress, no_agent.",
    ),
    413: ("payload_too_large", "The body is over the configured limit."),
    429: ("limit_exceeded", "A limit is reached (details.limit names it)."),
    503: ("unavailable", "Shutting down, event log unreachable, or overloaded."),
}

_AGENT = {
    "type": "object",
    "properties": {
        "kind": {
            "type": "string",
            "description": "echo (default), calculator, openai, none, "
            "or a kind registered by the server",
        },
        "model": _NSTR,
        "system_prompt": _NSTR,
        "params": _OBJ,
    },
}

_EVENT = {
    "type": "object",
    "required": ["seq", "type", "data", "created_at", "command_id"],
    "properties": {
        "seq": _INT,
        "type": _STR,
        "data": _OBJ,
        "created_at": _TIME,
        "command_id": _NSTR,
    },
}

_STATUS = {"type": "string", "enum": ["active", "working", "idle", "paused", "closed", "expired"]}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message", "details"],
                "properties": {"code": _STR, "message": _STR, "details": _OBJ},
            }
        },
    },
    "AnyValue": {"description": "Any JSON value."},
    "Agent": _AGENT,
    "SessionCreate": {
        "type": "object",
        "properties": {
            "session_id": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"},
            "user_id": _STR,
            "name": _STR,
            "agent": _ref("Agent"),
            "metadata": _OBJ,
            "tags": _STRS,
            "capabilities": _STRS,
            "agent_name": _STR,
            "agent_type": _STR,
            "ttl_seconds": {"type": "number", "minimum": 1},
        },
    },
    "SessionUpdate": {
        "type": "object",
        "properties": {
            "status": {"type": "string", "enum": ["active", "working", "idle"]},
            "current_task": _NSTR,
            "metadata": _OBJ,
            "tags": _STRS,
            "capabilities": _STRS,
            "agent_name": _NSTR,
            "agent_type": _NSTR,
        },
    },
    "Session": {
        "type": "object",
        "properties": {
            "session_id": _STR,
            "user_id": _STR,
            "name": _NSTR,
            "status": _STATUS,
            "created_at": _TIME,
            "last_activity_at": _TIME,
            "expires_at": {"type": ["string", "null"], "format": "date-time"},
            "version": _INT,
            "metadata": _OBJ,
            "tags": _STRS,
            "capabilities": _STRS,
            "agent": _ref("Agent"),
            "agent_name": _NSTR,
            "agent_type": _NSTR,
            "current_task": _NSTR,
            "current_chat_id": _STR,
            "total_requests": _INT,
            "total_collaborations": _INT,
            "context_entries": _INT,
            "chat_count": _INT,
            "message_count": _INT,
        },
    },
    "SessionList": {
        "type": "object",
        "properties": {
            "sessions": {"type": "array", "items": _ref("Session")},
            "next_cursor": _NSTR,
            "total": _INT,
        },
    },
    "Deleted": {"type": "object", "properties": {"success": {"type": "boolean"}, "message": _STR}},
    "Success": {"type": "object", "properties": {"success": {"type": "boolean"}}},
    "Stats": {
        "type": "object",
        "properties": {
            "total_requests": _INT,
            "total_turns": _INT,
            "message_count": _INT,
            "chat_count": _INT,
            "context_entries": _INT,
            "events": _INT,
            "average_response_ms": {"type": ["number", "null"]},
            "created_at": _TIME,
            "last_activity_at": _TIME,
        },
    },
    "ContextEntries": {"type": "object", "properties": {"entries": _OBJ}},
    "ContextEntry": {"type": "object", "properties": {"key": _STR, "value": {}}},
    "ContextSet": {"type": "object", "properties": {"key": _STR, "value": {}, "version": _INT}},
    "ContextOperation": {
        "type": "object",
        "required": ["session_id", "operation"],
        "properties": {
            "session_id": _STR,
            "operation": {"type": "string", "enum": ["save", "load", "list", "delete"]},
            "key": _STR,
            "data": {"description": "The value to save."},
        },
    },
    "ContextOperationResult": {
        "oneOf": [
            _ref("ContextSet"),
            _ref("ContextEntry"),
            _ref("ContextEntries"),
            _ref("Success"),
        ],
    },
    "ChatCreate": {
        "type": "object",
        "properties": {
            "chat_id": _STR,
            "name": _STR,
            "system_prompt": _STR,
            "agent": _ref("Agent"),
            "max_messages": {"type": "integer", "minimum": 2},
        },
    },
    "Chat": {
        "type": "object",
        "properties": {
            "chat_id": _STR,
            "name": _NSTR,
            "created_at": _TIME,
            "message_count": _INT,
            "agent": {"oneOf": [_ref("Agent"), {"type": "null"}]},
            "system_prompt": _NSTR,
        },
    },
    "ChatList": {
        "type": "object",
        "properties": {"chats": {"type": "array", "items": _ref("Chat")}, "current_chat_id": _STR},
    },
    "Message": {
        "type": "object",
        "properties": {
            "id": _STR,
            "role": {"type": "string", "enum": ["user", "assistant", "tool", "system"]},
            "content": _STR,
            "created_at": _TIME,
            "chat_id": _STR,
            "status": {"type": "string", "enum": ["complete", "cancelled", "failed"]},
        },
    },
    "MessageList": {
        "type": "object",
        "properties": {"messages": {"type": "array", "items": _ref("Message")}},
    },
    "RunRequest": {
        "type": "object",
        "required": ["message"],
        "properties": {
            "message": _STR,
            "chat_id": _STR,
            "multitask": {"type": "string", "enum": ["reject", "enqueue", "interrupt"]},
            "stream": {
                "type": "boolean",
                "description": "run only: answer 202 {turn_id} at "
                "once; the chunks follow on the event stream.",
            },
        },
    },
    "RunResult": {
        "type": "object",
        "properties": {
            "message": {
                "type": "object",
                "properties": {"id": _STR, "role": _STR, "content": _STR},
            },
            "turn_id": _STR,
            "status": {"type": "string", "enum": ["complete", "cancelled"]},
        },
    },
    "CancelRequest": {"type": "object", "properties": {"chat_id": _STR, "turn_id": _STR}},
    "CancelResult": {
        "type": "object",
        "properties": {
            "success": {"type": "boolean"},
            "cancelled": {"type": "array", "items": _ref("RunResult")},
        },
    },
    "StreamMessage": {
        "type": "object",
        "description": "The JSON of one SSE data: line.",
        "properties": {
            "type": {
                "type": "string",
                "enum": ["stream_start", "stream_chunk", "stream_end", "error"],
            },
            "id": _STR,
            "created_at": _TIME,
            "data": _OBJ,
        },
    },
    "Event": _EVENT,
    "EventList": {
        "type": "object",
        "properties": {"events": {"type": "array", "items": _ref("Event")}, "last_seq": _INT},
    },
    "AppendEvents": {
        "type": "object",
        "required": ["events"],
        "properties": {
            "events": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["type"],
                    "properties": {
                        "type": {
                            "type": "string",
                            "pattern": "^[a-z][a-z0-9_]*(\\.[a-z][a-z0-9_]*)+$",
                        },
                        "data": _OBJ,
                        "context_delta": _OBJ,
                    },
                },
            }
        },
    },
    "AppendedEvents": {
        "type": "object",
        "properties": {"events": {"type": "array", "items": _ref("Event")}, "version": _INT},
    },
    "Health": {
        "type": "object",
        "properties": {
            "status": _STR,
            "version": _STR,
            "uptime_s": {"type": "number"},
            "sessions": _OBJ,
            "eventlog": _OBJ,
            "nats": _NSTR,
        },
    },
    "OpenAPI": {"type": "object", "description": "This document."},
}


def _parameter(param: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": param.type}
    if param.enum:
        schema["enum"] = list(param.enum)
    out = {
        "name": param.name,
        "in": param.where,
        "required": param.where == "path" or param.required,
        "schema": schema,
    }
    if param.description:
        out["description"] = param.description
    return out


def _operation(route: Route) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": route.name,
        "summary": route.summary,
        "tags": [route.tag],
        "parameters": [_parameter(p) for p in route.all_params],
    }
    if route.description:
        op["description"] = route.description
    if route.body:
        op["requestBody"] = {
            "required": route.body_required,
            "content": {"application/json": {"schema": _ref(route.request_schema or "AnyValue")}},
        }
    success: dict[str, Any] = {"description": route.summary}
    if route.status == 101:
        success["description"] = "Switching protocols to WebSocket."
    elif route.response_type == "text/plain":
        success["content"] = {"text/plain": {"schema": {"type": "string"}}}
    elif route.response_schema:
        success["content"] = {route.response_type: {"schema": _ref(route.response_schema)}}
    responses: dict[str, Any] = {str(route.status): success}
    if route.name == "run" and route.status == 200:
        responses["202"] = {
            "description": 'With "stream": true: the turn started.',
            "content": {
                "application/json": {"schema": {"type": "object", "properties": {"turn_id": _STR}}}
            },
        }
    for status in route.error_statuses:
        responses[str(status)] = {"$ref": f"#/components/responses/E{status}"}
    op["responses"] = responses
    op["security"] = [] if route.public else [{"bearer": []}]
    return op


def build_openapi(routes: Iterable[Route], *, version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``routes``."""
    routes = list(routes)
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    responses = {
        f"E{status}": {
            "description": description,
            "content": {
                "application/json": {
                    "schema": _ref("Error"),
                    "example": {"error": {"code": code, "message": description, "details": {}}},
                }
            },
        }
        for status, (code, description) in ERROR_RESPONSES.items()
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "sessionhub",
            "version": version,
            "description": "A multi-user, event-sourced session server for AI agents. Every "
            'error is {"error": {"code", "message", "details"}}; an unknown path is '
            "404 not_found and a known path with another method 405 method_not_allowed.",
        },
        "servers": [{"url": "/"}],
        "tags": [{"name": t} for t in dict.fromkeys(r.tag for r in routes)],
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "responses": responses,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key (when the server has keys).",
                }
            },
        },
    }
