"""Queries of one session's state: no events, no changes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from actors.decide import require_chat, require_exists
from actors.errors import NotFound
from actors.state import SessionState, json_copy


def get(state: SessionState, args: dict[str, Any]) -> dict[str, Any]:
    require_exists(state)
    return state.to_api()


def stats(state: SessionState, args: dict[str, Any]) -> dict[str, Any]:
    require_exists(state)
    return state.stats(events=state.version)


def context_get(state: SessionState, args: dict[str, Any]) -> dict[str, Any]:
    require_exists(state)
    key = args["key"]
    if key not in state.context:
        raise NotFound(f"context key {key!r} not found", details={"key": key})
    return {"key": key, "value": json_copy(state.context[key])}


def context_list(state: SessionState, args: dict[str, Any]) -> dict[str, Any]:
    require_exists(state)
    return {"entries": json_copy(state.context)}


def chat_list(state: SessionState, args: dict[str, Any]) -> dict[str, Any]:
    require_exists(state)
    return {
        "chats": [chat.to_api() for chat in state.chats.values()],
        "current_chat_id": state.current_chat_id,
    }


def messages(state: SessionState, args: dict[str, Any]) -> dict[str, Any]:
    require_exists(state)
    chat_id = args.get("chat_id") or state.current_chat_id
    require_chat(state, chat_id)
    items = state.chats[chat_id].messages
    before = args.get("before")
    if before:
        ids = [m["id"] for m in items]
        if before not in ids:
            raise NotFound(f"message {before!r} not found", details={"before": before})
        items = items[: ids.index(before)]
    limit = args.get("limit")
    if limit is not None:
        items = items[-limit:] if limit else []
    return {
        "messages": [
            {
                "id": m["id"],
                "role": m["role"],
                "content": m["content"],
                "created_at": m["created_at"],
                "chat_id": m["chat_id"],
                "status": m.get("status", "complete"),
            }
            for m in items
        ]
    }


def snapshot(state: SessionState, args: dict[str, Any]) -> dict[str, Any]:
    return state.to_snapshot()


def inbox(state: SessionState, args: dict[str, Any]) -> dict[str, Any]:
    require_exists(state)
    after = args.get("after") or 0
    type_ = args.get("type")
    return {
        "messages": [
            dict(m)
            for m in state.inbox
            if m["seq"] > after and (type_ is None or m["type"] == type_)
        ]
    }


def collaboration(state: SessionState, args: dict[str, Any]) -> dict[str, Any]:
    require_exists(state)
    collab = state.collaborations.get(args["collaboration_id"])
    if collab is None:
        raise NotFound(
            f"collaboration {args['collaboration_id']!r} not found",
            details={"collaboration_id": args["collaboration_id"]},
        )
    return json_copy(collab)


def open_turns(state: SessionState, args: dict[str, Any]) -> dict[str, str]:
    return dict(state.open_turns)


READERS: dict[str, Callable[[SessionState, dict[str, Any]], Any]] = {
    "get": get,
    "stats": stats,
    "context_get": context_get,
    "context_list": context_list,
    "chat_list": chat_list,
    "messages": messages,
    "open_turns": open_turns,
    "snapshot": snapshot,
    "inbox": inbox,
    "collaboration": collaboration,
}
