"""The transport-neutral command layer: one function per command of the API.

Every transport turns a request into a *payload* and calls :func:`execute` with a command
name of :data:`COMMANDS`. The payload is the HTTP body plus the path's ids (``session_id``,
``chat_id``, ``key``) plus the query-ish fields of the command (``at``, ``purge``,
``if_match``, ``idempotency_key``, the filters of a listing). For ``context.set`` the
value is ``payload["value"]``, as on NATS. A command answers ``(http_status, body)``; the
body is the API's response body or, for a refused command, its error body, so HTTP and
NATS reply with the same bytes.

Query-ish fields may come as strings (HTTP query strings and headers) or as JSON values
(a NATS payload); both are accepted and checked here or by the hub, never trusted.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import structlog

from actors.errors import HubError, InvalidRequest
from transports.metrics import COMMAND_LATENCY, COMMANDS_TOTAL

if TYPE_CHECKING:
    from actors.hub import Caller, Hub

__all__ = ["COMMANDS", "Command", "Payload", "error_body", "execute", "observe"]

Payload = dict[str, Any]
Command = Callable[["Hub", "Caller", Payload], Awaitable[tuple[int, dict[str, Any]]]]

log = structlog.get_logger("sessionhub.transports")

_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no", "")


# --- payload helpers ---------------------------------------------------------------------


def _rest(payload: Payload, *reserved: str) -> dict[str, Any]:
    """The body part of a payload: every field but the command's reserved ones."""
    return {k: v for k, v in payload.items() if k not in reserved}


def _sid(payload: Payload, name: str = "session_id") -> str:
    value = payload.get(name)
    if not isinstance(value, str):
        raise InvalidRequest(f"{name} is required and must be a string", field=name)
    return value


def _query_value(name: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    raise InvalidRequest(f"{name} must be a string or a number", field=name)


def _query(payload: Payload, *reserved: str) -> dict[str, str]:
    """Query-ish fields as the raw strings the hub parses (``None`` means absent)."""
    return {
        k: _query_value(k, v) for k, v in payload.items() if k not in reserved and v is not None
    }


def _opt_int(payload: Payload, name: str) -> int | None:
    value = payload.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    raise InvalidRequest(f"{name} must be an integer", field=name)


def _if_match(payload: Payload) -> int | None:
    """``If-Match`` as a version: ``3``, ``"3"`` or the ETag forms ``"\\"3\\""``, ``W/"3"``."""
    value = payload.get("if_match")
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("W/"):
            text = text[2:]
        text = text.strip('"')
        if text.isdigit():
            return int(text)
    raise InvalidRequest("If-Match must be a session version (an integer)", field="if_match")


def _opt_bool(payload: Payload, name: str, *, strings: bool = True) -> bool:
    """A boolean; ``strings`` also accepts a query string's ``true``/``false``/``1``/``0``."""
    value = payload.get(name)
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if strings and isinstance(value, str) and value.lower() in _TRUE + _FALSE:
        return value.lower() in _TRUE
    raise InvalidRequest(f"{name} must be true or false", field=name)


def _opt_key(payload: Payload, name: str = "key") -> str:
    value = payload.get(name)
    if not isinstance(value, str):
        raise InvalidRequest(f"{name} is required and must be a string", field=name)
    return value


# --- sessions ----------------------------------------------------------------------------


async def session_create(hub: Hub, caller: Caller, payload: Payload) -> tuple[int, dict]:
    key = payload.get("idempotency_key")
    if key is not None and (not isinstance(key, str) or not 0 < len(key) <= 256):
        raise InvalidRequest(
            "Idempotency-Key must be a string of 1-256 characters", field="idempotency_key"
        )
    body = _rest(payload, "idempotency_key")
    return 201, await hub.create_session(caller, body, idempotency_key=key)


async def session_get(hub: Hub, caller: Caller, payload: Payload) -> tuple[int, dict]:
    return 200, await hub.get_session(caller, _sid(payload), at=_opt_int(payload, "at"))


async def session_list(hub: Hub, caller: Caller, payload: Payload) -> tuple[int, dict]:
    return 200, await hub.list_sessions(caller, _query(payload))


async def session_update(hub: Hub, caller: Caller, payload: Payload) -> tuple[int, dict]:
    body = _rest(payload, "session_id", "if_match")
    return 200, await hub.update_session(caller, _sid(payload), body, if_match=_if_match(payload))


async def session_close(hub: Hub, caller: Caller, payload: Payload) -> tuple[int, dict]:
    return 200, await hub.close_session(caller, _sid(payload))


async def session_delete(hub: Hub, caller: Caller, payload: Payload) -> tuple[int, dict]:
    purge = _opt_bool(payload, "purge")
    return 200, await hub.delete_session(caller, _sid(payload), purge=purge)


async def session_pause(hub: Hub, caller: Caller, payload: Payload) -> tuple[int, dict]:
    return 200, await hub.pause_session(caller, _sid(payload))


async def session_resume(hub: Hub, caller: Caller, payload: Payload) -> tuple[int, dict]:
    return 200, await hub.resume_session(caller, _sid(payload))


async def session_heartbeat(hub: Hub, caller: Caller, payload: Payload) -> tuple[int, dict]:
    return 200, await hub.heartbeat(caller, _sid(payload))


async def session_stats(hub: Hub, caller: Caller, payload: Payload) -> tuple[int, dict]:
    return 200, await hub.session_stats(caller, _sid(payload))


# --- context store -----------------------------------------------------------------------


async def context_set(hub: Hub, caller: Caller, payload: Payload) -> tuple[int, dict]:
    if "value" not in payload:
        raise InvalidRequest("value is required", field="value")
    return 200, await hub.context_set(caller, _sid(payload), _opt_key(payload), payload["value"])


async def context_get(hub: Hub, caller: Caller, payload: Payload) -> tuple[int, dict]:
    return 200, await hub.context_get(caller, _sid(payload), _opt_key(payload))


async def context_list(hub: Hub, caller: Caller, payload: Payload) -> tuple[int, dict]:
    return 200, await hub.context_list(caller, _sid(payload))


async def context_delete(hub: Hub, caller: Caller, payload: Payload) -> tuple[int, dict]:
    return 200, await hub.context_delete(caller, _sid(payload), _opt_key(payload))


_CONTEXT_OPS = ("save", "load", "list", "delete")


async def context_op(hub: Hub, caller: Caller, payload: Payload) -> tuple[int, dict]:
    """``POST /context``: one of the four context operations, answering what its route does."""
    operation = payload.get("operation")
    if operation not in _CONTEXT_OPS:
        raise InvalidRequest(
            f"operation must be one of {', '.join(_CONTEXT_OPS)}", field="operation"
        )
    session_id = _sid(payload)
    if operation == "list":
        return 200, await hub.context_list(caller, session_id)
    key = _opt_key(payload)
    if operation == "save":
        if "data" not in payload:
            raise InvalidRequest("data is required to save", field="data")
        return 200, await hub.context_set(caller, session_id, key, payload["data"])
    if operation == "load":
        return 200, await hub.context_get(caller, session_id, key)
    return 200, await hub.context_delete(caller, session_id, key)


# --- chats and messages ------------------------------------------------------------------


async def chat_create(hub: Hub, caller: Caller, payload: Payload) -> tuple[int, dict]:
    return 201, await hub.chat_create(caller, _sid(payload), _rest(payload, "session_id"))


async def chat_list(hub: Hub, caller: Caller, payload: Payload) -> tuple[int, dict]:
    return 200, await hub.chat_list(caller, _sid(payload))


async def chat_switch(hub: Hub, caller: Caller, payload: Payload) -> tuple[int, dict]:
    return 200, await hub.chat_switch(caller, _sid(payload), _sid(payload, "chat_id"))


async def chat_delete(hub: Hub, caller: Caller, payload: Payload) -> tuple[int, dict]:
    return 200, await hub.chat_delete(caller, _sid(payload), _sid(payload, "chat_id"))


async def messages_list(hub: Hub, caller: Caller, payload: Payload) -> tuple[int, dict]:
    return 200, await hub.messages(caller, _sid(payload), _query(payload, "session_id"))


# --- runs --------------------------------------------------------------------------------


async def run(hub: Hub, caller: Caller, payload: Payload) -> tuple[int, dict]:
    """One agent turn; with ``"stream": true`` answer at once with the turn id.

    A streamed turn's chunks reach clients through the session's event stream (SSE
    ``events/stream``, NATS ``sessionhub.events.<session_id>.*``); the turn runs to its
    end whether or not anybody reads them.
    """
    stream = _opt_bool(payload, "stream", strings=False)
    body = _rest(payload, "session_id", "stream")
    session_id = _sid(payload)
    if not stream:
        return 200, await hub.run(caller, session_id, body)
    turn_stream = await hub.start_turn(caller, session_id, body)
    aclose = getattr(turn_stream, "aclose", None)
    if aclose is not None:
        await aclose()
    return 202, {"turn_id": turn_stream.turn_id}


async def cancel(hub: Hub, caller: Caller, payload: Payload) -> tuple[int, dict]:
    return 200, await hub.cancel(caller, _sid(payload), _rest(payload, "session_id"))


# --- event log ---------------------------------------------------------------------------


async def events_read(hub: Hub, caller: Caller, payload: Payload) -> tuple[int, dict]:
    return 200, await hub.read_events(caller, _sid(payload), _query(payload, "session_id"))


async def events_append(hub: Hub, caller: Caller, payload: Payload) -> tuple[int, dict]:
    body = _rest(payload, "session_id", "if_match")
    return 200, await hub.append_events(caller, _sid(payload), body, if_match=_if_match(payload))


# --- collaboration between sessions ------------------------------------------------------


async def hub_send(hub: Hub, caller: Caller, payload: Payload) -> tuple[int, dict]:
    """A direct message, a reply (``reply_to``) or, without ``to_session``, a broadcast."""
    return 201, await hub.send_message(caller, payload)


async def hub_inbox(hub: Hub, caller: Caller, payload: Payload) -> tuple[int, dict]:
    return 200, await hub.inbox(caller, _sid(payload), _query(payload, "session_id"))


async def hub_thread(hub: Hub, caller: Caller, payload: Payload) -> tuple[int, dict]:
    return 200, await hub.thread(caller, _sid(payload, "thread_id"))


async def hub_stats(hub: Hub, caller: Caller, payload: Payload) -> tuple[int, dict]:
    return 200, await hub.hub_stats(caller, _query(payload))


# --- shared memory -----------------------------------------------------------------------


def _memory_query(payload: Payload, *reserved: str) -> dict[str, str]:
    """Query-ish fields of a memory read; ``tags`` may also be a list (a NATS payload)."""
    tags = payload.get("tags")
    if isinstance(tags, list):
        if not all(isinstance(t, str) for t in tags):
            raise InvalidRequest("tags must be a list of strings", field="tags")
        payload = {**payload, "tags": ",".join(tags)}
    return _query(payload, *reserved)


async def memory_set(hub: Hub, caller: Caller, payload: Payload) -> tuple[int, dict]:
    return 200, await hub.memory_set(caller, _opt_key(payload), _rest(payload, "key"))


async def memory_get(hub: Hub, caller: Caller, payload: Payload) -> tuple[int, dict]:
    return 200, await hub.memory_get(caller, _opt_key(payload), _memory_query(payload, "key"))


async def memory_history(hub: Hub, caller: Caller, payload: Payload) -> tuple[int, dict]:
    key = _opt_key(payload)
    return 200, await hub.memory_history(caller, key, _memory_query(payload, "key"))


async def memory_search(hub: Hub, caller: Caller, payload: Payload) -> tuple[int, dict]:
    return 200, await hub.memory_search(caller, _memory_query(payload))


async def memory_delete(hub: Hub, caller: Caller, payload: Payload) -> tuple[int, dict]:
    key = _opt_key(payload)
    return 200, await hub.memory_delete(caller, key, _memory_query(payload, "key"))


# --- collaborations ----------------------------------------------------------------------


async def collaboration_start(hub: Hub, caller: Caller, payload: Payload) -> tuple[int, dict]:
    """Start a team on a task in the background: 202 with its id."""
    return 202, await hub.collaboration_start(caller, payload)


async def collaboration_get(hub: Hub, caller: Caller, payload: Payload) -> tuple[int, dict]:
    collaboration_id = _sid(payload, "collaboration_id")
    query = _query(payload, "collaboration_id")
    return 200, await hub.collaboration_get(caller, collaboration_id, query)


#: Command name -> implementation. The names of API.md "NATS transport" plus the
#: commands of the HTTP-only routes (``session.stats``, ``chat.delete``,
#: ``messages.list``, ``events.append``, ``context.op``, ``hub.inbox``, ``hub.thread``,
#: ``hub.stats``, ``memory.history``).
COMMANDS: dict[str, Command] = {
    "session.create": session_create,
    "session.get": session_get,
    "session.list": session_list,
    "session.update": session_update,
    "session.close": session_close,
    "session.delete": session_delete,
    "session.pause": session_pause,
    "session.resume": session_resume,
    "session.heartbeat": session_heartbeat,
    "session.stats": session_stats,
    "context.set": context_set,
    "context.get": context_get,
    "context.list": context_list,
    "context.delete": context_delete,
    "context.op": context_op,
    "chat.create": chat_create,
    "chat.list": chat_list,
    "chat.switch": chat_switch,
    "chat.delete": chat_delete,
    "messages.list": messages_list,
    "run": run,
    "cancel": cancel,
    "events.read": events_read,
    "events.append": events_append,
    "hub.send": hub_send,
    "hub.inbox": hub_inbox,
    "hub.thread": hub_thread,
    "hub.stats": hub_stats,
    "memory.set": memory_set,
    "memory.get": memory_get,
    "memory.history": memory_history,
    "memory.search": memory_search,
    "memory.delete": memory_delete,
    "collaboration.start": collaboration_start,
    "collaboration.get": collaboration_get,
}


# --- execution ---------------------------------------------------------------------------


def error_body(code: str, message: str, details: Mapping[str, Any] | None = None) -> dict:
    """The API's error body."""
    return {"error": {"code": code, "message": message, "details": dict(details or {})}}


def observe(command: str, transport: str, outcome: str, seconds: float) -> None:
    """Record one handled command in the transport metrics."""
    _counter(command, transport, outcome).inc()
    _latency(command, transport).observe(seconds)


@functools.lru_cache(maxsize=4096)
def _counter(command: str, transport: str, outcome: str) -> Any:
    return COMMANDS_TOTAL.labels(command, transport, outcome)


@functools.lru_cache(maxsize=1024)
def _latency(command: str, transport: str) -> Any:
    return COMMAND_LATENCY.labels(command, transport)


async def execute(
    name: str, hub: Hub, caller: Caller, payload: Any, *, transport: str
) -> tuple[int, dict[str, Any]]:
    """Run command ``name`` and answer ``(status, body)``; never raises for a client's error.

    A :class:`HubError` becomes its status and error body; an unexpected exception is
    logged and answered as 500 ``internal_error`` (a bug, never a client's fault).
    """
    started = time.perf_counter()
    command = COMMANDS.get(name)
    try:
        if command is None:
            raise HubError(
                f"unknown command {name!r}",
                code="not_found",
                status=404,
                details={"command": name},
            )
        if not isinstance(payload, dict):
            raise InvalidRequest("the payload must be a JSON object", field="body")
        status, body = await command(hub, caller, payload)
        outcome = "ok"
    except HubError as exc:
        status, body, outcome = exc.status, exc.to_body(), exc.code
    except Exception:
        log.exception("command_failed", command=name, transport=transport)
        status = 500
        body = error_body("internal_error", "the server failed to handle the command")
        outcome = "internal_error"
    observe(
        name if command is not None else "unknown",
        transport,
        outcome,
        time.perf_counter() - started,
    )
    return status, body
