"""The facade's collaboration commands: hub messages, shared memory, collaborations.

A mixin of ``Hub`` (kept apart so each module holds one idea); it relies on the
hub's ``_access``, ``_ask`` and projections.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from actors import validate as v
from actors.caller import Caller
from actors.clock import iso
from actors.collab import Collaboration, check_team, load_team_file
from actors.errors import Conflict, InvalidRequest, NotFound
from actors.ids import new_id
from actors.memory import MEMORY_TYPES, check_pattern
from actors.messaging import MESSAGE_TYPES, hub_stream
from actors.state import ENDED_STATUSES
from eventlog import NewEvent

if TYPE_CHECKING:
    from actors.hub import Hub


class CollaborationStream:
    """The SSE messages of one collaboration: each agent's turn, then the end."""

    def __init__(self, collab: Collaboration) -> None:
        self.collaboration_id = collab.collaboration_id
        self._queue = collab.listen()

    async def __aiter__(self) -> AsyncIterator[tuple[str | None, dict[str, Any]]]:
        while True:
            item = await self._queue.get()
            if item is None:
                return
            yield None, item


class CollaborationMixin:
    # -- hub messages ----------------------------------------------------------------------

    async def send_message(self: Hub, caller: Caller, body: Any) -> dict[str, Any]:
        """Deliver a message to one session, or broadcast it to the user's open sessions."""
        body = v.body_object(body)
        sender = self._access(caller, v.req_str(body, "from_session", 128))
        user = self.catalog.owner(sender) or ""
        sender_status = self.catalog.status(sender)
        if sender_status in ENDED_STATUSES:
            raise Conflict(
                "session_closed", f"session {sender!r} is {sender_status}", session_id=sender
            )
        type_ = v.enum(body, "type", MESSAGE_TYPES, "notification")
        subject = v.opt_str(body, "subject", 1000)
        text = v.opt_str(body, "body", 1_000_000)
        data = body.get("data")
        if data is not None and not isinstance(data, dict):
            raise InvalidRequest("data must be an object", field="data")
        reply_to = v.opt_str(body, "reply_to", 128)
        to = v.opt_str(body, "to_session", 128)
        thread_id = None
        if reply_to is not None:
            original = self.threads.message(reply_to)
            if original is None or original["user_id"] != user:
                raise NotFound(f"message {reply_to!r} not found", details={"reply_to": reply_to})
            thread_id = original["thread_id"]
            if to is None:
                to = original["from_session"]
        if to is not None:
            recipient = self._access(Caller(user), to)
            status = self.catalog.status(recipient)
            if status in ENDED_STATUSES:
                raise Conflict("session_closed", f"session {to!r} is {status}", session_id=to)
            recipients = [recipient]
        else:
            recipients = [
                s["session_id"]
                for s in self.catalog.open_sessions(user)
                if s["session_id"] != sender
            ]
        message_id = new_id("msg-")
        message = {
            "message_id": message_id,
            "thread_id": thread_id or message_id,
            "user_id": user,
            "from_session": sender,
            "to_session": to,
            "recipients": recipients,
            "type": type_ if to is not None or type_ != "notification" else "broadcast",
            "subject": subject,
            "body": text,
            "data": data,
            "reply_to": reply_to,
            "created_at": iso(self.clock.now()),
        }
        stream = hub_stream(user)

        def record() -> None:
            event = NewEvent("message_sent", message, message_id, message["created_at"])
            self.log.append(stream, [event], self.threads.last_seq(stream))

        async with self._hub_lock(user):
            await self._in_executor(record)
        delivered = []
        for sid in recipients:
            try:
                await self._ask(sid, "deliver_message", message, command_id=f"{message_id}:{sid}")
                delivered.append(sid)
            except Conflict:
                continue
        return {**message, "delivered_to": delivered}

    def _hub_lock(self: Hub, user: str) -> asyncio.Lock:
        locks = self.__dict__.setdefault("_hub_locks", {})
        return locks.setdefault(user, asyncio.Lock())

    async def inbox(
        self: Hub, caller: Caller, session_id: str, query: Mapping[str, str]
    ) -> dict[str, Any]:
        type_ = query.get("type") or None
        if type_ is not None and type_ not in MESSAGE_TYPES:
            raise InvalidRequest(f"type must be one of {', '.join(MESSAGE_TYPES)}", field="type")
        after = v.query_int(query, "after", 0, minimum=0)
        return await self._command(caller, session_id, "inbox", {"type": type_, "after": after})

    async def thread(self: Hub, caller: Caller, thread_id: str) -> dict[str, Any]:
        messages = self.threads.thread(thread_id)
        if caller.user_id is not None:
            messages = [m for m in messages if m["user_id"] == caller.user_id]
        if not messages:
            raise NotFound(f"thread {thread_id!r} not found", details={"thread_id": thread_id})
        return {"thread_id": thread_id, "messages": messages}

    # -- shared memory ------------------------------------------------------------------------

    def _memory_user(
        self: Hub, caller: Caller, fields: Mapping[str, Any], session_field: str = "session_id"
    ) -> tuple[str, str | None]:
        """The user whose memory a request names, and the session it names (if any)."""
        sid = fields.get(session_field) or None
        if sid is not None:
            if not isinstance(sid, str):
                raise InvalidRequest(f"{session_field} must be a string", field=session_field)
            sid = self._access(caller, sid)
            return self.catalog.owner(sid) or "", sid
        if caller.user_id is not None:
            return caller.user_id, None
        user = fields.get("user_id")
        if user is not None and not isinstance(user, str):
            raise InvalidRequest("user_id must be a string", field="user_id")
        return user or "anonymous", None

    async def memory_set(self: Hub, caller: Caller, key: str, body: Any) -> dict[str, Any]:
        body = v.body_object(body)
        key = v.key(key)
        if not body.get("session_id"):
            raise InvalidRequest("session_id is required", field="session_id")
        user, sid = self._memory_user(caller, body)
        if self.catalog.status(sid) in ENDED_STATUSES:
            raise Conflict("session_closed", f"session {sid!r} is closed", session_id=sid)
        return await self._in_executor(self.memory.set, user, key, body, sid)

    async def memory_get(
        self: Hub, caller: Caller, key: str, query: Mapping[str, str]
    ) -> dict[str, Any]:
        user, _ = self._memory_user(caller, query)
        return self.memory.get(user, v.key(key))

    async def memory_history(
        self: Hub, caller: Caller, key: str, query: Mapping[str, str]
    ) -> dict[str, Any]:
        user, _ = self._memory_user(caller, query)
        return self.memory.history(user, v.key(key))

    async def memory_search(self: Hub, caller: Caller, query: Mapping[str, str]) -> dict[str, Any]:
        user, sid = self._memory_user(caller, query)
        pattern = query.get("pattern") or None
        if pattern is not None:
            check_pattern(pattern)
        tags = [t for t in (query.get("tags") or "").split(",") if t] or None
        type_ = query.get("type") or None
        if type_ is not None and type_ not in MEMORY_TYPES:
            raise InvalidRequest(f"type must be one of {', '.join(MEMORY_TYPES)}", field="type")
        return self.memory.search(user, pattern, tags, sid, type_)

    async def memory_delete(
        self: Hub, caller: Caller, key: str, query: Mapping[str, str]
    ) -> dict[str, Any]:
        user, _ = self._memory_user(caller, query)
        return await self._in_executor(self.memory.delete, user, v.key(key))

    async def hub_stats(self: Hub, caller: Caller, query: Mapping[str, str]) -> dict[str, Any]:
        """Sessions, messages and memory of one user (all users for an operator)."""
        user = caller.user_id or query.get("user_id") or None
        by_status: dict[str, int] = {}
        for s in self.catalog.list_states(user):
            by_status[s.status] = by_status.get(s.status, 0) + 1
        out: dict[str, Any] = {
            "user_id": user,
            "sessions": {"total": sum(by_status.values()), "by_status": by_status},
            "messages": self.threads.count(user),
        }
        if user is not None:
            out["memory"] = self.memory.stats(user)
        return out

    # -- collaborations ---------------------------------------------------------------------------

    async def _start_collaboration(self: Hub, caller: Caller, body: Any) -> Collaboration:
        body = v.body_object(body)
        sid = self._access(caller, v.req_str(body, "session_id", 128))
        if "team_config_path" in body and body["team_config_path"] is not None:
            raw_team = load_team_file(self.config.teams_dir, body["team_config_path"])
        else:
            raw_team = body.get("team")
        team = check_team(raw_team, self.registry, self.config.agents)
        task = v.req_str(body, "task", 1_000_000)
        context = body.get("context")
        return await self.collabs.start(sid, team, task, context)

    async def collaboration_start(self: Hub, caller: Caller, body: Any) -> dict[str, Any]:
        collab = await self._start_collaboration(caller, body)
        return {
            "collaboration_id": collab.collaboration_id,
            "session_id": collab.session_id,
            "status": "running",
        }

    async def collaboration_stream(self: Hub, caller: Caller, body: Any) -> CollaborationStream:
        collab = await self._start_collaboration(caller, body)
        return CollaborationStream(collab)

    async def collaboration_get(
        self: Hub, caller: Caller, collaboration_id: str, query: Mapping[str, str]
    ) -> dict[str, Any]:
        sid = query.get("session_id")
        if not sid:
            raise InvalidRequest("session_id is required", field="session_id")
        out = await self._command(
            caller, sid, "collaboration", {"collaboration_id": collaboration_id}
        )
        return {"collaboration_id": collaboration_id, "session_id": sid, **out}

    async def wait_collaboration(self: Hub, collaboration_id: str) -> None:
        """Wait until a collaboration of this node ends (for tests and scripts)."""
        collab = self.collabs.running.get(collaboration_id)
        if collab is not None:
            await collab.done.wait()
