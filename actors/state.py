"""Session state as a fold over its events.

``evolve`` is deterministic: it reads no clock and does no I/O, so replaying a
log always rebuilds the state the live actor had. For speed it updates the state
in place; a state belongs to exactly one owner (an actor, a replay, the catalog).

A *light* state (``full=False``) keeps the session object's fields and counters
but not context values or message bodies: the catalog holds one per session.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from eventlog import Event

MAIN_CHAT = "main"
OPEN_STATUSES = frozenset({"active", "working", "idle", "paused"})
ENDED_STATUSES = frozenset({"closed", "expired"})


def json_copy(value: Any) -> Any:
    """A deep copy of a JSON value (what the state holds and answers hand out).

    Answers must not share dicts and lists with the state, which the actor goes on
    changing; ``copy.deepcopy`` is general and about four times slower on the small
    values of a session (its memo and dispatch), which every answer pays.
    """
    if isinstance(value, dict):
        return {k: json_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_copy(v) for v in value]
    if isinstance(value, tuple):
        return tuple(json_copy(v) for v in value)
    return value  # str, int, float, bool, None: immutable


class EvolveError(Exception):
    """An event that cannot follow the state (wrong seq): the log or the code is wrong."""


@dataclass
class Chat:
    chat_id: str
    name: str
    created_at: str
    agent: dict[str, Any] | None = None
    system_prompt: str | None = None
    max_messages: int | None = None
    message_count: int = 0
    messages: list[dict[str, Any]] = field(default_factory=list)

    def to_api(self) -> dict[str, Any]:
        return {
            "chat_id": self.chat_id,
            "name": self.name,
            "created_at": self.created_at,
            "message_count": self.message_count,
            "agent": self.agent,
            "system_prompt": self.system_prompt,
            "max_messages": self.max_messages,
        }


@dataclass
class SessionState:
    session_id: str
    full: bool = True
    exists: bool = False
    deleted: bool = False
    version: int = 0
    user_id: str = ""
    name: str | None = None
    status: str = "active"
    created_at: str = ""
    last_activity_at: str = ""
    expires_at: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    capabilities: list[str] = field(default_factory=list)
    agent: dict[str, Any] = field(default_factory=lambda: {"kind": "echo"})
    agent_name: str | None = None
    agent_type: str | None = None
    current_task: str | None = None
    current_chat_id: str = MAIN_CHAT
    idempotency_key: str | None = None
    total_requests: int = 0
    total_collaborations: int = 0
    total_turns: int = 0
    response_ms_total: float = 0.0
    message_count: int = 0
    context_keys: set[str] = field(default_factory=set)
    context: dict[str, Any] = field(default_factory=dict)
    chats: dict[str, Chat] = field(default_factory=dict)
    #: turn_id -> chat_id of turns started and not yet completed.
    open_turns: dict[str, str] = field(default_factory=dict)
    #: Hub messages received, oldest first (each with the seq of its event).
    inbox: list[dict[str, Any]] = field(default_factory=list)
    #: collaboration_id -> {status, result, transcript, ...}.
    collaborations: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def is_open(self) -> bool:
        return self.exists and not self.deleted and self.status in OPEN_STATUSES

    @property
    def has_agent(self) -> bool:
        return self.agent.get("kind", "echo") != "none"

    def to_api(self) -> dict[str, Any]:
        """The session object of API.md."""
        return {
            "session_id": self.session_id,
            "user_id": self.user_id,
            "name": self.name,
            "status": self.status,
            "created_at": self.created_at,
            "last_activity_at": self.last_activity_at,
            "expires_at": self.expires_at,
            "version": self.version,
            "metadata": json_copy(self.metadata),
            "tags": list(self.tags),
            "capabilities": list(self.capabilities),
            "agent": json_copy(self.agent),
            "agent_name": self.agent_name,
            "agent_type": self.agent_type,
            "current_task": self.current_task,
            "current_chat_id": self.current_chat_id,
            "total_requests": self.total_requests,
            "total_collaborations": self.total_collaborations,
            "context_entries": len(self.context_keys),
            "chat_count": len(self.chats),
            "message_count": self.message_count,
        }

    def stats(self, events: int) -> dict[str, Any]:
        avg = self.response_ms_total / self.total_turns if self.total_turns else 0.0
        return {
            "session_id": self.session_id,
            "total_requests": self.total_requests,
            "total_turns": self.total_turns,
            "message_count": self.message_count,
            "chat_count": len(self.chats),
            "context_entries": len(self.context_keys),
            "events": events,
            "average_response_ms": round(avg, 3),
            "created_at": self.created_at,
            "last_activity_at": self.last_activity_at,
        }

    # -- snapshots -------------------------------------------------------------

    def to_snapshot(self) -> dict[str, Any]:
        data = self.__dict__.copy()
        data["context_keys"] = sorted(self.context_keys)
        data["chats"] = {cid: chat.__dict__.copy() for cid, chat in self.chats.items()}
        return copy.deepcopy(data)

    @classmethod
    def from_snapshot(cls, data: dict[str, Any]) -> SessionState:
        data = copy.deepcopy(data)
        data["context_keys"] = set(data["context_keys"])
        data["chats"] = {cid: Chat(**chat) for cid, chat in data["chats"].items()}
        return cls(**data)


# Events the server writes by itself: they do not count as the session's activity.
_NOT_ACTIVITY = frozenset({"expired", "session_idle"})

# Events a client command causes that count as a request of the session.
_COUNTED = frozenset(
    {
        "session_updated",
        "session_paused",
        "session_resumed",
        "session_closed",
        "context_set",
        "context_deleted",
        "chat_created",
        "chat_switched",
        "chat_deleted",
        "turn_started",
    }
)


def evolve(state: SessionState, event: Event) -> SessionState:
    """Apply one event to the state (in place) and return it."""
    if event.seq != state.version + 1:
        raise EvolveError(
            f"session {state.session_id!r}: event seq {event.seq} after version {state.version}"
        )
    state.version = event.seq
    kind = event.type
    data = event.data
    handler = _HANDLERS.get(kind)
    if handler is not None:
        handler(state, data, event)
    elif "." in kind:
        _client_event(state, data, event)
    if kind not in _NOT_ACTIVITY:
        state.last_activity_at = event.created_at
    if kind in _COUNTED or "." in kind:
        state.total_requests += 1
    return state


def replay(session_id: str, events: list[Event], full: bool = True) -> SessionState:
    state = SessionState(session_id=session_id, full=full)
    for event in events:
        evolve(state, event)
    return state


def _created(state: SessionState, data: dict[str, Any], event: Event) -> None:
    state.exists = True
    state.user_id = data["user_id"]
    state.name = data.get("name")
    state.status = "active"
    state.created_at = event.created_at
    state.expires_at = data.get("expires_at")
    state.metadata = dict(data.get("metadata") or {})
    state.tags = list(data.get("tags") or [])
    state.capabilities = list(data.get("capabilities") or [])
    state.agent = dict(data.get("agent") or {"kind": "echo"})
    state.agent_name = data.get("agent_name")
    state.agent_type = data.get("agent_type")
    state.idempotency_key = data.get("idempotency_key")
    state.current_chat_id = MAIN_CHAT
    state.chats = {MAIN_CHAT: Chat(MAIN_CHAT, "main", event.created_at)}


def _updated(state: SessionState, data: dict[str, Any], event: Event) -> None:
    if "status" in data:
        state.status = data["status"]
    if "current_task" in data:
        state.current_task = data["current_task"]
    if "metadata" in data:
        for k, v in data["metadata"].items():
            if v is None:
                state.metadata.pop(k, None)
            else:
                state.metadata[k] = v
    if "tags" in data:
        state.tags = list(data["tags"])
    if "capabilities" in data:
        state.capabilities = list(data["capabilities"])
    for k in ("agent_name", "agent_type"):
        if k in data:
            setattr(state, k, data[k])


def _set_status(status: str):
    def handler(state: SessionState, data: dict[str, Any], event: Event) -> None:
        state.status = status

    return handler


def _deleted(state: SessionState, data: dict[str, Any], event: Event) -> None:
    state.deleted = True


def _context_set(state: SessionState, data: dict[str, Any], event: Event) -> None:
    state.context_keys.add(data["key"])
    if state.full:
        state.context[data["key"]] = data["value"]


def _context_deleted(state: SessionState, data: dict[str, Any], event: Event) -> None:
    state.context_keys.discard(data["key"])
    state.context.pop(data["key"], None)


def _apply_context_delta(state: SessionState, delta: dict[str, Any] | None) -> None:
    for key, value in (delta or {}).items():
        if value is None:
            state.context_keys.discard(key)
            state.context.pop(key, None)
        else:
            state.context_keys.add(key)
            if state.full:
                state.context[key] = value


def _client_event(state: SessionState, data: dict[str, Any], event: Event) -> None:
    _apply_context_delta(state, data.get("context_delta"))


def _chat_created(state: SessionState, data: dict[str, Any], event: Event) -> None:
    state.chats[data["chat_id"]] = Chat(
        chat_id=data["chat_id"],
        name=data.get("name") or data["chat_id"],
        created_at=event.created_at,
        agent=data.get("agent"),
        system_prompt=data.get("system_prompt"),
        max_messages=data.get("max_messages"),
    )


def _chat_switched(state: SessionState, data: dict[str, Any], event: Event) -> None:
    state.current_chat_id = data["chat_id"]


def _chat_deleted(state: SessionState, data: dict[str, Any], event: Event) -> None:
    chat = state.chats.pop(data["chat_id"], None)
    if chat is not None:
        state.message_count -= chat.message_count
    if state.current_chat_id == data["chat_id"]:
        state.current_chat_id = MAIN_CHAT


def _add_message(state: SessionState, chat_id: str, message: dict[str, Any], event: Event) -> None:
    chat = state.chats.get(chat_id)
    if chat is None:
        return
    chat.message_count += 1
    state.message_count += 1
    if state.full:
        chat.messages.append({**message, "chat_id": chat_id, "created_at": event.created_at})


def _turn_started(state: SessionState, data: dict[str, Any], event: Event) -> None:
    state.open_turns[data["turn_id"]] = data["chat_id"]
    _add_message(state, data["chat_id"], data["message"], event)


def _turn_completed(state: SessionState, data: dict[str, Any], event: Event) -> None:
    state.open_turns.pop(data["turn_id"], None)
    state.total_turns += 1
    state.response_ms_total += float(data.get("duration_ms") or 0.0)
    _add_message(state, data["chat_id"], data["message"], event)


def _collaboration_started(state: SessionState, data: dict[str, Any], event: Event) -> None:
    state.total_collaborations += 1
    if state.full:
        state.collaborations[data["collaboration_id"]] = {
            **data,
            "status": "running",
            "result": None,
            "error": None,
            "transcript": [],
            "created_at": event.created_at,
            "completed_at": None,
        }


def _collaboration_step(state: SessionState, data: dict[str, Any], event: Event) -> None:
    collab = state.collaborations.get(data["collaboration_id"])
    if collab is not None:
        step = {k: v for k, v in data.items() if k != "collaboration_id"}
        collab["transcript"].append({**step, "created_at": event.created_at})


def _collaboration_completed(state: SessionState, data: dict[str, Any], event: Event) -> None:
    collab = state.collaborations.get(data["collaboration_id"])
    if collab is not None:
        collab["status"] = data["status"]
        collab["result"] = data.get("result")
        collab["error"] = data.get("error")
        collab["completed_at"] = event.created_at


def _message_received(state: SessionState, data: dict[str, Any], event: Event) -> None:
    if state.full:
        state.inbox.append({**data, "seq": event.seq})


_HANDLERS = {
    "session_created": _created,
    "session_updated": _updated,
    "session_paused": _set_status("paused"),
    "session_resumed": _set_status("active"),
    "session_closed": _set_status("closed"),
    "expired": _set_status("expired"),
    "session_idle": _set_status("idle"),
    "session_deleted": _deleted,
    "context_set": _context_set,
    "context_deleted": _context_deleted,
    "chat_created": _chat_created,
    "chat_switched": _chat_switched,
    "chat_deleted": _chat_deleted,
    "turn_started": _turn_started,
    "turn_completed": _turn_completed,
    "collaboration_started": _collaboration_started,
    "collaboration_step": _collaboration_step,
    "collaboration_completed": _collaboration_completed,
    "message_received": _message_received,
}
