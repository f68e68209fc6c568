"""Commands of a session: check them against the state, produce events.

Each decider takes ``(state, args, ctx)`` and returns the events to append and a
function that builds the reply from the state after those events were applied.
Deciders raise ``HubError`` to refuse; they never change the state themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from actors.clock import iso
from actors.config import Limits
from actors.errors import (
    ChatNotFound,
    Conflict,
    InvalidRequest,
    LimitExceeded,
    NotFound,
    SessionNotFound,
)
from actors.ids import new_id
from actors.state import ENDED_STATUSES, MAIN_CHAT, SessionState, json_copy
from eventlog import Event, NewEvent, codec

Reply = Callable[[SessionState, list[Event]], Any]
Decision = tuple[list[NewEvent], Reply]


@dataclass(frozen=True)
class Ctx:
    """What a decision may know beyond the state: the time and the request."""

    now: float
    command_id: str
    limits: Limits

    def event(self, type_: str, data: dict[str, Any]) -> NewEvent:
        return NewEvent(type_, data, self.command_id, iso(self.now))


def _session(state: SessionState, _: list[Event]) -> dict[str, Any]:
    return state.to_api()


def _changed(state: SessionState, stored: list[Event]) -> bool:
    """The reply of the sweep's commands: whether they changed the session."""
    return bool(stored)


def require_exists(state: SessionState) -> None:
    if not state.exists or state.deleted:
        raise SessionNotFound(state.session_id)


def require_open(state: SessionState) -> None:
    require_exists(state)
    if state.status in ENDED_STATUSES:
        raise Conflict(
            "session_closed",
            f"session {state.session_id!r} is {state.status}",
            session_id=state.session_id,
            status=state.status,
        )


def require_version(state: SessionState, if_match: int | None) -> None:
    if if_match is not None and if_match != state.version:
        raise Conflict(
            "version_conflict",
            f"session is at version {state.version}, not {if_match}",
            expected=if_match,
            actual=state.version,
        )


def require_chat(state: SessionState, chat_id: str) -> None:
    if chat_id not in state.chats:
        raise ChatNotFound(state.session_id, chat_id)


# -- lifecycle ---------------------------------------------------------------


def create(state: SessionState, args: dict[str, Any], ctx: Ctx) -> Decision:
    if state.exists or state.version:
        raise Conflict(
            "already_exists",
            f"session {state.session_id!r} already exists",
            session_id=state.session_id,
        )
    data = dict(args)
    data["session_id"] = state.session_id
    ttl = data.pop("ttl_seconds", None)
    data["expires_at"] = iso(ctx.now + ttl) if ttl else None
    return [ctx.event("session_created", data)], _session


def update(state: SessionState, args: dict[str, Any], ctx: Ctx) -> Decision:
    require_open(state)
    require_version(state, args.pop("if_match", None))
    if not args:
        return [], _session
    return [ctx.event("session_updated", args)], _session


def _status_change(type_: str, allowed_from: frozenset[str] | None = None):
    def decide(state: SessionState, args: dict[str, Any], ctx: Ctx) -> Decision:
        require_open(state)
        if allowed_from is not None and state.status not in allowed_from:
            return [], _session
        return [ctx.event(type_, {})], _session

    return decide


pause = _status_change("session_paused", frozenset({"active", "working", "idle"}))
resume = _status_change("session_resumed", frozenset({"paused"}))
heartbeat = _status_change("heartbeat")


def close(state: SessionState, args: dict[str, Any], ctx: Ctx) -> Decision:
    require_open(state)
    return [ctx.event("session_closed", {"reason": args.get("reason", "closed")})], _session


def expire(state: SessionState, args: dict[str, Any], ctx: Ctx) -> Decision:
    """Sent by the supervisor's sweep; a session already ended stays as it is."""
    require_exists(state)
    if state.status in ENDED_STATUSES:
        return [], _changed
    return [ctx.event("expired", {"reason": args["reason"]})], _changed


def mark_idle(state: SessionState, args: dict[str, Any], ctx: Ctx) -> Decision:
    """Sent by the sweep when heartbeats stopped; only active or working sessions change."""
    require_exists(state)
    if state.status not in ("active", "working"):
        return [], _changed
    return [ctx.event("session_idle", {"reason": "missed_heartbeats"})], _changed


def delete(state: SessionState, args: dict[str, Any], ctx: Ctx) -> Decision:
    require_exists(state)

    def reply(state: SessionState, _: list[Event]) -> dict[str, Any]:
        return {"success": True, "message": f"Session {state.session_id} deleted"}

    return [ctx.event("session_deleted", {"purge": bool(args.get("purge"))})], reply


# -- context store -------------------------------------------------------------


def _check_value_size(value: Any, limits: Limits, field: str) -> None:
    size = len(codec.encode(value).encode())
    if size > limits.max_message_bytes:
        raise LimitExceeded(
            "max_message_bytes",
            limits.max_message_bytes,
            f"{field} is {size} bytes, over the limit of {limits.max_message_bytes}",
        )


def context_set(state: SessionState, args: dict[str, Any], ctx: Ctx) -> Decision:
    require_open(state)
    key, value = args["key"], args["value"]
    if key not in state.context_keys and len(state.context_keys) >= ctx.limits.max_context_entries:
        raise LimitExceeded(
            "max_context_entries",
            ctx.limits.max_context_entries,
            f"session has {len(state.context_keys)} context entries, the maximum",
        )
    _check_value_size(value, ctx.limits, "value")

    def reply(state: SessionState, _: list[Event]) -> dict[str, Any]:
        return {
            "key": key,
            "value": json_copy(state.context.get(key)),
            "version": state.version,
        }

    return [ctx.event("context_set", {"key": key, "value": value})], reply


def context_delete(state: SessionState, args: dict[str, Any], ctx: Ctx) -> Decision:
    require_open(state)
    key = args["key"]
    if key not in state.context_keys:
        raise NotFound(f"context key {key!r} not found", details={"key": key})
    return [ctx.event("context_deleted", {"key": key})], lambda s, e: {"success": True}


# -- chats ---------------------------------------------------------------------


def chat_create(state: SessionState, args: dict[str, Any], ctx: Ctx) -> Decision:
    require_open(state)
    if len(state.chats) >= ctx.limits.max_chats_per_session:
        raise LimitExceeded(
            "max_chats_per_session",
            ctx.limits.max_chats_per_session,
            f"session has {len(state.chats)} chats, the maximum",
        )
    chat_id = args.get("chat_id") or new_id("chat-", 12)
    if chat_id in state.chats:
        raise Conflict("already_exists", f"chat {chat_id!r} already exists", chat_id=chat_id)
    data = {
        "chat_id": chat_id,
        "name": args.get("name") or chat_id,
        "system_prompt": args.get("system_prompt"),
        "agent": args.get("agent"),
        "max_messages": args.get("max_messages"),
    }

    def reply(state: SessionState, _: list[Event]) -> dict[str, Any]:
        return state.chats[chat_id].to_api()

    return [ctx.event("chat_created", data)], reply


def chat_switch(state: SessionState, args: dict[str, Any], ctx: Ctx) -> Decision:
    require_open(state)
    chat_id = args["chat_id"]
    require_chat(state, chat_id)

    def reply(state: SessionState, _: list[Event]) -> dict[str, Any]:
        return {**state.chats[chat_id].to_api(), "current_chat_id": state.current_chat_id}

    return [ctx.event("chat_switched", {"chat_id": chat_id})], reply


def chat_delete(state: SessionState, args: dict[str, Any], ctx: Ctx) -> Decision:
    require_open(state)
    chat_id = args["chat_id"]
    if chat_id == MAIN_CHAT:
        raise InvalidRequest("the main chat cannot be deleted", field="chat_id")
    require_chat(state, chat_id)
    if chat_id in state.open_turns.values():
        raise Conflict("turn_in_progress", f"chat {chat_id!r} has a turn running", chat_id=chat_id)
    return [ctx.event("chat_deleted", {"chat_id": chat_id})], lambda s, e: {"success": True}


# -- turns ---------------------------------------------------------------------


def effective_agent(state: SessionState, chat_id: str) -> tuple[dict[str, Any], str | None]:
    """The agent spec and system prompt of a chat: the chat's override the session's."""
    chat = state.chats[chat_id]
    agent = dict(state.agent)
    if chat.agent:
        agent.update({k: v for k, v in chat.agent.items() if v is not None})
    prompt = chat.system_prompt or agent.get("system_prompt")
    return agent, prompt


def start_turn(state: SessionState, args: dict[str, Any], ctx: Ctx) -> Decision:
    require_open(state)
    if state.status == "paused":
        raise Conflict("session_paused", f"session {state.session_id!r} is paused")
    if not state.has_agent:
        raise Conflict("no_agent", f"session {state.session_id!r} is storage-only: it has no agent")
    chat_id = args.get("chat_id") or state.current_chat_id
    require_chat(state, chat_id)
    running = [t for t, c in state.open_turns.items() if c == chat_id]
    if running:
        raise Conflict(
            "turn_in_progress",
            f"chat {chat_id!r} has a turn running",
            chat_id=chat_id,
            turn_id=running[0],
        )
    _check_value_size(args["message"], ctx.limits, "message")
    chat = state.chats[chat_id]
    cap = chat.max_messages or ctx.limits.max_messages_per_chat
    if chat.message_count + 2 > cap:
        raise LimitExceeded(
            "max_messages", cap, f"chat {chat_id!r} has {chat.message_count} messages"
        )
    turn_id = new_id("turn-")
    message = {"id": new_id("msg-"), "role": "user", "content": args["message"]}
    message["status"] = "complete"
    event = ctx.event("turn_started", {"turn_id": turn_id, "chat_id": chat_id, "message": message})

    def reply(state: SessionState, stored: list[Event]) -> dict[str, Any]:
        agent, prompt = effective_agent(state, chat_id)
        history = [
            {"role": m["role"], "content": m["content"]}
            for m in state.chats[chat_id].messages
            if m.get("status", "complete") == "complete" or m["role"] == "user"
        ]
        return {
            "turn_id": turn_id,
            "chat_id": chat_id,
            "seq": stored[0].seq,
            "agent": agent,
            "system_prompt": prompt,
            "messages": history,
        }

    return [event], reply


def record_tool(state: SessionState, args: dict[str, Any], ctx: Ctx) -> Decision:
    require_exists(state)
    if args["turn_id"] not in state.open_turns:
        return [], lambda s, e: None
    return [ctx.event(args.pop("type"), args)], lambda s, e: e[0].seq


def complete_turn(state: SessionState, args: dict[str, Any], ctx: Ctx) -> Decision:
    """Records a turn's end; a turn already ended (or never started) is left alone."""
    require_exists(state)
    turn_id = args["turn_id"]
    chat_id = state.open_turns.get(turn_id)
    if chat_id is None:
        return [], lambda s, e: None
    message = {
        "id": new_id("msg-"),
        "role": "assistant",
        "content": args["content"],
        "status": args["status"],
    }
    data = {
        "turn_id": turn_id,
        "chat_id": chat_id,
        "message": message,
        "duration_ms": args.get("duration_ms", 0.0),
    }
    if args.get("error"):
        data["error"] = args["error"]

    def reply(state: SessionState, stored: list[Event]) -> dict[str, Any]:
        return {"message": dict(message), "turn_id": turn_id, "seq": stored[0].seq}

    return [ctx.event("turn_completed", data)], reply


# -- client events -------------------------------------------------------------


def append_client(state: SessionState, args: dict[str, Any], ctx: Ctx) -> Decision:
    require_open(state)
    require_version(state, args.get("if_match"))
    keys = set(state.context_keys)
    new_events = []
    for item in args["events"]:
        delta = item.get("context_delta")
        for k, v in (delta or {}).items():
            if v is None:
                keys.discard(k)
            else:
                keys.add(k)
                _check_value_size(v, ctx.limits, f"context_delta.{k}")
        new_events.append(
            ctx.event(item["type"], {"data": item.get("data"), "context_delta": delta})
        )
    if len(keys) > ctx.limits.max_context_entries:
        raise LimitExceeded(
            "max_context_entries",
            ctx.limits.max_context_entries,
            f"these events would leave {len(keys)} context entries",
        )

    def reply(state: SessionState, stored: list[Event]) -> dict[str, Any]:
        return {"events": [event_to_api(e) for e in stored], "version": state.version}

    return new_events, reply


def collaboration_event(state: SessionState, args: dict[str, Any], ctx: Ctx) -> Decision:
    require_open(state)
    return [ctx.event(args.pop("type"), args)], lambda s, e: e[0].seq


def deliver_message(state: SessionState, args: dict[str, Any], ctx: Ctx) -> Decision:
    require_open(state)
    return [ctx.event("message_received", args)], lambda s, e: e[0].seq


def event_to_api(event: Event) -> dict[str, Any]:
    """An event as the API shows it; a client event shows its own data and delta."""
    body = event.to_api()
    if "." in event.type and isinstance(event.data, dict):
        body["data"] = event.data.get("data")
        body["context_delta"] = event.data.get("context_delta")
    return body


DECIDERS: dict[str, Callable[[SessionState, dict[str, Any], Ctx], Decision]] = {
    "create": create,
    "update": update,
    "pause": pause,
    "resume": resume,
    "heartbeat": heartbeat,
    "close": close,
    "expire": expire,
    "mark_idle": mark_idle,
    "delete": delete,
    "context_set": context_set,
    "context_delete": context_delete,
    "chat_create": chat_create,
    "chat_switch": chat_switch,
    "chat_delete": chat_delete,
    "start_turn": start_turn,
    "record_tool": record_tool,
    "complete_turn": complete_turn,
    "append_client": append_client,
    "collaboration_event": collaboration_event,
    "deliver_message": deliver_message,
}
