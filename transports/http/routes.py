"""The one route table of the HTTP API: the app's router and ``/openapi.json`` both read it.

A :class:`Route` says its method and path, the command it runs (a name of
:data:`transports.commands.COMMANDS`, or a special handler for streams and operations),
its parameters, request body, success status and error statuses. Nothing else lists
routes, so the served API and its OpenAPI document cannot drift apart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from actors.memory import MEMORY_TYPES
from actors.messaging import MESSAGE_TYPES

__all__ = ["ROUTES", "Param", "Route", "path_params"]


@dataclass(frozen=True)
class Param:
    """A path, query or header parameter.

    ``payload`` is the command payload field it fills (by default its name, lower-case,
    dashes as underscores); ``None`` for parameters the handler reads itself.
    """

    name: str
    where: str  # "path", "query" or "header"
    type: str = "string"
    description: str = ""
    required: bool = False
    enum: tuple[str, ...] = ()
    to_payload: bool = True

    @property
    def payload(self) -> str | None:
        if not self.to_payload:
            return None
        return self.name.lower().replace("-", "_")


@dataclass(frozen=True)
class Route:
    """One operation of the API.

    Attributes:
        kind: ``command`` (a JSON command run by :func:`transports.commands.execute`),
            ``sse``, ``ws`` or ``raw`` (a handler of its own, named ``name``).
        body: ``None`` (no body), ``object`` (a JSON object, optional when
            ``body_required`` is false) or ``value`` (any JSON value, as ``payload["value"]``).
        request_schema / response_schema: names under ``components.schemas``.
        errors: the error statuses it can answer.
        public: served without an API key (``/health``, ``/metrics``).
        etag: answer an ``ETag`` with the session's version.
    """

    method: str
    path: str
    name: str
    summary: str
    tag: str
    kind: str = "command"
    status: int = 200
    body: str | None = None
    body_required: bool = False
    request_schema: str | None = None
    response_schema: str | None = None
    response_type: str = "application/json"
    params: tuple[Param, ...] = ()
    errors: tuple[int, ...] | None = None
    public: bool = False
    etag: bool = False
    description: str = ""

    @property
    def all_params(self) -> tuple[Param, ...]:
        """Path parameters (from the template) followed by the declared ones."""
        declared = {p.name for p in self.params}
        path = tuple(_PATH_PARAMS[n] for n in path_params(self.path) if n not in declared)
        return path + self.params

    @property
    def error_statuses(self) -> tuple[int, ...]:
        if self.errors is not None:
            return self.errors
        statuses = set()
        if self.body or self.params or path_params(self.path):
            statuses.add(400)
        if not self.public:
            statuses.add(401)
        if "{session_id}" in self.path:
            statuses.add(404)
        if self.body:
            statuses.add(413)
        statuses.add(503)
        return tuple(sorted(statuses))


_PARAM_RE = re.compile(r"{(\w+)}")


def path_params(path: str) -> list[str]:
    """The names of a path template's parameters, in order."""
    return _PARAM_RE.findall(path)


_PATH_PARAMS = {
    "session_id": Param("session_id", "path", required=True, description="The session's id."),
    "chat_id": Param("chat_id", "path", required=True, description="A chat of the session."),
    "key": Param(
        "key",
        "path",
        required=True,
        description="A context key: 1-256 characters of letters, digits and _-.:@, "
        "not starting with a dot.",
    ),
    "thread_id": Param(
        "thread_id",
        "path",
        required=True,
        description="A thread: the message_id of its first message.",
    ),
    "collaboration_id": Param(
        "collaboration_id", "path", required=True, description="A collaboration's id."
    ),
}

IF_MATCH = Param(
    "If-Match",
    "header",
    "integer",
    "The session version the client last saw; a stale one answers 409 version_conflict.",
)
IDEMPOTENCY_KEY = Param(
    "Idempotency-Key",
    "header",
    description="A repeat of a create with the same key returns the same session.",
)
LAST_EVENT_ID = Param(
    "Last-Event-ID",
    "header",
    to_payload=False,
    description="Resume after this SSE id: an event seq (`7`) or a chunk id (`7.3`).",
)
ACCESS_TOKEN = Param(
    "access_token",
    "query",
    to_payload=False,
    description="The API key, for browser clients (EventSource, WebSocket) that cannot "
    "send an Authorization header.",
)
STATUSES = ("active", "working", "idle", "paused", "closed", "expired")

MEMORY_KEY = Param(
    "key",
    "path",
    required=True,
    to_payload=False,  # the router's match_info fills it
    description="A memory key: 1-256 characters of letters, digits and _-.:@, "
    "not starting with a dot.",
)
MEMORY_SESSION = Param(
    "session_id",
    "query",
    description="A session of the user whose memory to read (with auth on, the caller's).",
)
MEMORY_USER = Param(
    "user_id",
    "query",
    description="Without auth (or for an operator) and without session_id: whose memory.",
)

_S = "Sessions"
_C = "Context"
_CH = "Chats"
_R = "Runs"
_E = "Event log"
_O = "Operations"
_H = "Collaboration between sessions"
_M = "Shared memory"
_T = "Collaborations"

_SID = "/sessions/{session_id}"

ROUTES: tuple[Route, ...] = (
    # --- sessions ---
    Route(
        "POST",
        "/sessions",
        "session.create",
        "Create a session",
        _S,
        status=201,
        body="object",
        request_schema="SessionCreate",
        response_schema="Session",
        params=(IDEMPOTENCY_KEY,),
        errors=(400, 401, 409, 413, 429, 503),
        etag=True,
    ),
    Route(
        "GET",
        "/sessions",
        "session.list",
        "List sessions",
        _S,
        response_schema="SessionList",
        params=(
            Param("user_id", "query", description="Only this user's sessions."),
            Param(
                "status",
                "query",
                enum=STATUSES,
                description="Only sessions in this status; closed and expired sessions "
                "are listed only when named.",
            ),
            Param("tag", "query", description="Only sessions with this tag."),
            Param("capability", "query", description="Only sessions with this capability."),
            Param("agent_type", "query", description="Only sessions of this agent_type."),
            Param("limit", "query", "integer", "Page size."),
            Param("cursor", "query", description="`next_cursor` of the previous page."),
        ),
        errors=(400, 401, 503),
    ),
    Route(
        "GET",
        _SID,
        "session.get",
        "Get a session",
        _S,
        response_schema="Session",
        params=(
            Param("at", "query", "integer", "The state as it was after event `at` (read only)."),
        ),
        etag=True,
    ),
    Route(
        "PATCH",
        _SID,
        "session.update",
        "Update a session",
        _S,
        body="object",
        request_schema="SessionUpdate",
        response_schema="Session",
        params=(IF_MATCH,),
        errors=(400, 401, 404, 409, 413, 503),
        etag=True,
    ),
    Route(
        "DELETE",
        _SID,
        "session.delete",
        "Delete a session",
        _S,
        response_schema="Deleted",
        params=(
            Param(
                "purge",
                "query",
                "boolean",
                "Also remove its events (else they stay for operators).",
            ),
        ),
    ),
    Route(
        "POST",
        f"{_SID}/close",
        "session.close",
        "Close a session",
        _S,
        response_schema="Session",
        errors=(400, 401, 404, 409, 503),
        etag=True,
    ),
    Route(
        "POST",
        f"{_SID}/pause",
        "session.pause",
        "Pause a session",
        _S,
        response_schema="Session",
        errors=(400, 401, 404, 409, 503),
        etag=True,
    ),
    Route(
        "POST",
        f"{_SID}/resume",
        "session.resume",
        "Resume a paused session",
        _S,
        response_schema="Session",
        errors=(400, 401, 404, 409, 503),
        etag=True,
    ),
    Route(
        "POST",
        f"{_SID}/heartbeat",
        "session.heartbeat",
        "Keep a session alive",
        _S,
        response_schema="Session",
        errors=(400, 401, 404, 409, 503),
        etag=True,
    ),
    Route(
        "GET",
        f"{_SID}/stats",
        "session.stats",
        "A session's statistics",
        _S,
        response_schema="Stats",
    ),
    # --- context store ---
    Route(
        "GET",
        f"{_SID}/context",
        "context.list",
        "All context entries",
        _C,
        response_schema="ContextEntries",
    ),
    Route(
        "PUT",
        f"{_SID}/context/{{key}}",
        "context.set",
        "Set a context entry",
        _C,
        body="value",
        body_required=True,
        request_schema="AnyValue",
        response_schema="ContextSet",
        errors=(400, 401, 404, 409, 413, 429, 503),
    ),
    Route(
        "GET",
        f"{_SID}/context/{{key}}",
        "context.get",
        "Get a context entry",
        _C,
        response_schema="ContextEntry",
    ),
    Route(
        "DELETE",
        f"{_SID}/context/{{key}}",
        "context.delete",
        "Delete a context entry",
        _C,
        response_schema="Success",
        errors=(400, 401, 404, 409, 503),
    ),
    Route(
        "POST",
        "/context",
        "context.op",
        "Save, load, list or delete context in one call",
        _C,
        body="object",
        body_required=True,
        request_schema="ContextOperation",
        response_schema="ContextOperationResult",
        errors=(400, 401, 404, 409, 413, 429, 503),
    ),
    # --- chats ---
    Route(
        "POST",
        f"{_SID}/chats",
        "chat.create",
        "Create a chat",
        _CH,
        status=201,
        body="object",
        request_schema="ChatCreate",
        response_schema="Chat",
        errors=(400, 401, 404, 409, 413, 429, 503),
    ),
    Route("GET", f"{_SID}/chats", "chat.list", "List the chats", _CH, response_schema="ChatList"),
    Route(
        "POST",
        f"{_SID}/chats/{{chat_id}}/switch",
        "chat.switch",
        "Make a chat the current one",
        _CH,
        response_schema="ChatList",
        errors=(400, 401, 404, 409, 503),
    ),
    Route(
        "DELETE",
        f"{_SID}/chats/{{chat_id}}",
        "chat.delete",
        "Delete a chat (not main)",
        _CH,
        response_schema="Success",
        errors=(400, 401, 404, 409, 503),
    ),
    Route(
        "GET",
        f"{_SID}/messages",
        "messages.list",
        "A chat's messages, oldest first",
        _CH,
        response_schema="MessageList",
        params=(
            Param("chat_id", "query", description="The chat (default: the current one)."),
            Param("limit", "query", "integer", "At most this many (the latest)."),
            Param("before", "query", description="Only messages before this message id."),
        ),
    ),
    # --- runs ---
    Route(
        "POST",
        f"{_SID}/run",
        "run",
        "Run one agent turn and wait for its answer",
        _R,
        body="object",
        body_required=True,
        request_schema="RunRequest",
        response_schema="RunResult",
        errors=(400, 401, 404, 409, 413, 429, 503),
    ),
    Route(
        "POST",
        f"{_SID}/run_stream",
        "run_stream",
        "Run one agent turn, streamed as SSE",
        _R,
        kind="sse",
        body="object",
        body_required=True,
        request_schema="RunRequest",
        response_schema="StreamMessage",
        response_type="text/event-stream",
        errors=(400, 401, 404, 409, 413, 429, 503),
        description="Each message is `id:` (stream_start only: the turn's event seq) and "
        "`data:` lines, never `event:`. The data's `type` is `stream_start`, "
        "`stream_chunk`, `stream_end` or `error`.",
    ),
    Route(
        "POST",
        f"{_SID}/cancel",
        "cancel",
        "Cancel the running turn",
        _R,
        body="object",
        request_schema="CancelRequest",
        response_schema="CancelResult",
        errors=(400, 401, 404, 409, 413, 503),
    ),
    # --- event log ---
    Route(
        "GET",
        f"{_SID}/events",
        "events.read",
        "Read the session's events",
        _E,
        response_schema="EventList",
        params=(
            Param("after", "query", "integer", "Only events with a greater seq."),
            Param("limit", "query", "integer", "At most this many."),
            Param("type", "query", description="Only events of this type."),
            Param("tail", "query", "integer", "Only the last N events."),
        ),
    ),
    Route(
        "POST",
        f"{_SID}/events",
        "events.append",
        "Append client events (all or none)",
        _E,
        body="object",
        body_required=True,
        request_schema="AppendEvents",
        response_schema="AppendedEvents",
        params=(IF_MATCH,),
        errors=(400, 401, 404, 409, 413, 429, 503),
    ),
    Route(
        "GET",
        f"{_SID}/events/stream",
        "events.stream",
        "Follow the session's events (SSE)",
        _E,
        kind="sse",
        response_schema="StreamMessage",
        response_type="text/event-stream",
        params=(
            LAST_EVENT_ID,
            Param(
                "after",
                "query",
                "integer",
                "Start after this seq (Last-Event-ID wins).",
                to_payload=False,
            ),
            ACCESS_TOKEN,
        ),
        description="Every event after Last-Event-ID (or `after`), then live. A durable "
        "event has `id:` its seq and `data:` the event object; a chunk of a running turn "
        "has `id:` `SEQ.N` and `data:` as in run_stream.",
    ),
    Route(
        "GET",
        f"{_SID}/ws",
        "ws",
        "WebSocket: run turns and follow the session's events",
        _E,
        kind="ws",
        status=101,
        params=(
            Param(
                "after",
                "query",
                "integer",
                "Also send the events after this seq (default: only new ones).",
                to_payload=False,
            ),
            ACCESS_TOKEN,
        ),
        errors=(400, 401, 404, 503),
        description='Send `{"type": "run", "message", "request_id"}` (or `cancel`, '
        '`ping`); receive `{"turn_id", "chunk_type": "text"|"data"|"error"|"metadata"|'
        '"done", "content", "timestamp", "final", "request_id"}` and the session\'s '
        "events (event objects as in `events`).",
    ),
    # --- collaboration between sessions ---
    Route(
        "POST",
        "/hub/messages",
        "hub.send",
        "Send a message to a session, reply in a thread, or broadcast",
        _H,
        status=201,
        body="object",
        body_required=True,
        errors=(400, 401, 404, 409, 413, 503),
        description="Body: `from_session` (required), `to_session` (absent: broadcast to "
        "every other open session of the sender's user), `type` (one of "
        f"{', '.join(MESSAGE_TYPES)}), `subject`, `body`, `data` (an object), `reply_to` "
        "(a message_id: joins its thread; `to_session` defaults to its sender). Answers "
        "the message: `message_id`, `thread_id`, `from_session`, `to_session`, "
        "`recipients`, `delivered_to`, `type`, ... Each recipient's log gets a "
        "`message_received` event.",
    ),
    Route(
        "GET",
        f"{_SID}/inbox",
        "hub.inbox",
        "A session's received messages, oldest first",
        _H,
        params=(
            Param("type", "query", enum=MESSAGE_TYPES, description="Only this message type."),
            Param(
                "after",
                "query",
                "integer",
                "Only messages received after this event seq (each message has its `seq`).",
            ),
        ),
        description='Answers `{"messages": [...]}`.',
    ),
    Route(
        "GET",
        "/hub/threads/{thread_id}",
        "hub.thread",
        "A whole thread in order",
        _H,
        errors=(400, 401, 404, 503),
        description='Answers `{"thread_id", "messages": [...]}`; a thread of another user is 404.',
    ),
    Route(
        "GET",
        "/hub/stats",
        "hub.stats",
        "Sessions, messages and shared memory of the caller's user",
        _H,
        params=(Param("user_id", "query", description="Without auth or for an operator: whose."),),
        errors=(400, 401, 503),
        description='Answers `{"user_id", "sessions": {"total", "by_status"}, "messages", '
        '"memory": {"entries", "writes", "by_type", "by_session"}}`.',
    ),
    # --- shared memory ---
    Route(
        "PUT",
        "/memory/{key}",
        "memory.set",
        "Set a shared memory entry (a new version of the key)",
        _M,
        body="object",
        body_required=True,
        params=(MEMORY_KEY,),
        errors=(400, 401, 404, 409, 413, 503),
        description="Body: `session_id` (required: the writer, whose user owns the memory), "
        f"`value` (any JSON, required), `type` (one of {', '.join(MEMORY_TYPES)}; default "
        "note), `tags`, `ttl_seconds`. Answers the entry: `key`, `value`, `type`, `tags`, "
        "`session_id`, `version`, `created_at`, `expires_at`.",
    ),
    Route(
        "GET",
        "/memory/{key}",
        "memory.get",
        "The latest entry of a key",
        _M,
        params=(MEMORY_KEY, MEMORY_SESSION, MEMORY_USER),
        errors=(400, 401, 404, 503),
        description="404 not_found for an unknown, deleted or expired key.",
    ),
    Route(
        "DELETE",
        "/memory/{key}",
        "memory.delete",
        "Delete a key (its history stays)",
        _M,
        response_schema="Success",
        params=(MEMORY_KEY, MEMORY_SESSION, MEMORY_USER),
        errors=(400, 401, 404, 503),
    ),
    Route(
        "GET",
        "/memory/{key}/history",
        "memory.history",
        "Every value a key has had, oldest first",
        _M,
        params=(MEMORY_KEY, MEMORY_SESSION, MEMORY_USER),
        errors=(400, 401, 404, 503),
        description='Answers `{"key", "entries": [...]}`.',
    ),
    Route(
        "GET",
        "/memory",
        "memory.search",
        "Search the shared memory",
        _M,
        params=(
            Param(
                "pattern",
                "query",
                description="A glob over keys (`task_*`, `a?c`, `[ab]*`): key characters "
                "and `* ? [ ] !`.",
            ),
            Param("tags", "query", description="Comma-separated; an entry must have all."),
            Param(
                "session_id",
                "query",
                description="Only entries written by this session (also names the user).",
            ),
            Param("type", "query", enum=MEMORY_TYPES, description="Only this entry type."),
            MEMORY_USER,
        ),
        errors=(400, 401, 404, 503),
        description='Answers `{"entries": [...]}`: the live latest entry of each key, by key.',
    ),
    # --- collaborations ---
    Route(
        "POST",
        "/collaborations",
        "collaboration.start",
        "Start a team of agents on a task, in the background",
        _T,
        status=202,
        body="object",
        body_required=True,
        errors=(400, 401, 404, 409, 413, 503),
        description='Body: `session_id`, `team` (`{"agents": [{"name", "role", "agent"}], '
        '"strategy": "round_robin"|"pipeline", "max_rounds"}`) or `team_config_path` (a '
        "YAML file under the server's teams folder), `task`, `context`. Answers "
        '`{"collaboration_id", "session_id", "status": "running"}`.',
    ),
    Route(
        "GET",
        "/collaborations/{collaboration_id}",
        "collaboration.get",
        "A collaboration's status, result and transcript",
        _T,
        params=(
            Param(
                "session_id",
                "query",
                required=True,
                description="The session the collaboration runs in.",
            ),
        ),
        errors=(400, 401, 404, 503),
        description="`status` is running, completed, failed or cancelled; `transcript` "
        "lists each agent's turn (`step`, `round`, `agent`, `role`, `input`, `output`).",
    ),
    Route(
        "POST",
        "/collaborations/stream",
        "collaboration.stream",
        "Run a team on a task, streamed as SSE",
        _T,
        kind="sse",
        body="object",
        body_required=True,
        response_type="text/event-stream",
        errors=(400, 401, 404, 409, 413, 503),
        description="The body of POST /collaborations. Each message is one `data:` line, "
        "never `id:` or `event:`; the data's `type` is `collaboration_start`, "
        "`agent_start`, `stream_chunk`, `agent_end`, `collaboration_end` or `error`.",
    ),
    # --- operations ---
    Route(
        "GET",
        "/health",
        "health",
        "Health of the server",
        _O,
        kind="raw",
        response_schema="Health",
        public=True,
        errors=(503,),
    ),
    Route(
        "GET",
        "/metrics",
        "metrics",
        "Prometheus metrics",
        _O,
        kind="raw",
        response_type="text/plain",
        public=True,
        errors=(),
    ),
    Route(
        "GET",
        "/openapi.json",
        "openapi",
        "This document",
        _O,
        kind="raw",
        response_schema="OpenAPI",
        errors=(401,),
    ),
)
