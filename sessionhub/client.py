"""Client subcommands: talk to a running sessionhub server over HTTP.

``register``, ``list``, ``ping``, ``status``, ``send``, ``broadcast``, ``inbox``,
``memory-set``, ``memory-get``, ``memory-search`` and ``stats`` each make one or a few
API calls and print the answer as a readable table, or as JSON with ``--json``. They
need nothing but the standard library and a server (``sessionhub serve``):

    sessionhub register Cece Claude --user alexa --capabilities python,review
    sessionhub send $DEV $PLANNER "API design question" "REST or GraphQL?" --type request
    sessionhub memory-set $PLANNER project_plan '{"phase": "design"}' --type state

Where the server is: ``--url`` (else ``SESSIONHUB_URL``, else http://127.0.0.1:8000);
the API key: ``--api-key`` (else ``SESSIONHUB_API_KEY``). Exit statuses: 0 success,
1 the server refused the request (its error code and message are printed) or could not
be reached, 2 a usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import Any

from actors.memory import MEMORY_TYPES
from actors.messaging import MESSAGE_TYPES

__all__ = [
    "DEFAULT_URL",
    "ApiError",
    "Client",
    "ClientError",
    "format_table",
    "register",
]

DEFAULT_URL = "http://127.0.0.1:8000"
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

STATUSES = ("active", "working", "idle", "paused", "closed", "expired")
SETTABLE_STATUSES = ("active", "working", "idle")


# --- the HTTP client -------------------------------------------------------------------------


class ClientError(Exception):
    """A request that could not be made or answered (connection refused, bad answer)."""

    status = EXIT_FAILED


class UsageError(ClientError):
    """Bad arguments the parser could not catch (exit status 2)."""

    status = EXIT_USAGE


class ApiError(ClientError):
    """An error answer of the API: ``{"error": {"code", "message", "details"}}``."""

    def __init__(self, http_status: int, body: Any) -> None:
        error = body.get("error") if isinstance(body, dict) else None
        if not isinstance(error, dict):
            error = {"code": "http_error", "message": str(body)[:200] or "no body"}
        self.http_status = http_status
        self.code = str(error.get("code", "unknown"))
        self.message = str(error.get("message", ""))
        self.details = error.get("details") or {}
        super().__init__(f"{http_status} {self.code}: {self.message}")


class Client:
    """A small, blocking JSON client of the sessionhub API.

    Args:
        url: the server's base URL (``http://127.0.0.1:8000``).
        api_key: sent as ``Authorization: Bearer <key>`` when given.
        timeout: seconds to wait for one answer.
    """

    def __init__(self, url: str, api_key: str | None = None, timeout: float = 30.0) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise UsageError(f"--url must be an http(s):// URL, not {url!r}")
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: Mapping[str, Any] | None = None,
    ) -> Any:
        """One call; answers the decoded JSON body or raises :class:`ApiError`."""
        url = self.url + path
        params = {k: v for k, v in (query or {}).items() if v is not None}
        if params:
            url += "?" + urllib.parse.urlencode(params)
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        except urllib.error.URLError as exc:
            reason = getattr(exc, "reason", exc)
            raise ClientError(
                f"cannot reach the server at {self.url}: {reason} "
                "(is `sessionhub serve` running? set --url or SESSIONHUB_URL)"
            ) from None
        except (TimeoutError, ConnectionError, OSError) as exc:
            raise ClientError(f"cannot reach the server at {self.url}: {exc}") from None
        try:
            answer = json.loads(raw.decode("utf-8")) if raw.strip() else None
        except (UnicodeDecodeError, ValueError):
            if status >= 400:
                raise ApiError(status, raw.decode("utf-8", "replace")) from None
            raise ClientError(
                f"the server at {self.url} did not answer JSON (is it sessionhub?)"
            ) from None
        if status >= 400:
            raise ApiError(status, answer)
        return answer

    # The API's calls, named as the commands are.

    def create_session(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.request("POST", "/sessions", body)

    def list_sessions(self, query: Mapping[str, Any]) -> dict[str, Any]:
        return self.request("GET", "/sessions", query=query)

    def heartbeat(self, session_id: str) -> dict[str, Any]:
        return self.request("POST", f"/sessions/{_quote(session_id)}/heartbeat")

    def update_session(self, session_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.request("PATCH", f"/sessions/{_quote(session_id)}", body)

    def send(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.request("POST", "/hub/messages", body)

    def inbox(self, session_id: str, query: Mapping[str, Any]) -> dict[str, Any]:
        return self.request("GET", f"/sessions/{_quote(session_id)}/inbox", query=query)

    def memory_set(self, key: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.request("PUT", f"/memory/{_quote(key)}", body)

    def memory_get(self, key: str, query: Mapping[str, Any]) -> dict[str, Any]:
        return self.request("GET", f"/memory/{_quote(key)}", query=query)

    def memory_history(self, key: str, query: Mapping[str, Any]) -> dict[str, Any]:
        return self.request("GET", f"/memory/{_quote(key)}/history", query=query)

    def memory_search(self, query: Mapping[str, Any]) -> dict[str, Any]:
        return self.request("GET", "/memory", query=query)

    def hub_stats(self, query: Mapping[str, Any]) -> dict[str, Any]:
        return self.request("GET", "/hub/stats", query=query)


def _count(n: int, noun: str, plural: str | None = None) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {plural or noun + 's'}"


def _quote(segment: str) -> str:
    return urllib.parse.quote(segment, safe="")


# --- output -----------------------------------------------------------------------------


def _cell(value: Any, width: int | None = None) -> str:
    if value is None:
        text = ""
    elif isinstance(value, str):
        text = value
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        text = ",".join(value)
    else:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    text = " ".join(text.split())
    if width is not None and len(text) > width:
        text = text[: width - 1] + "…"
    return text


def format_table(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str, int | None]]
) -> str:
    """Rows as aligned columns under a header; ``columns`` is (header, field, max width)."""
    cells = [[h for h, _, _ in columns]]
    for row in rows:
        cells.append([_cell(row.get(k), w) for _, k, w in columns])
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _pairs(pairs: Sequence[tuple[str, Any]]) -> str:
    """``label: value`` lines, labels aligned."""
    width = max(len(label) for label, _ in pairs)
    return "\n".join(f"{label + ':':<{width + 1}} {_cell(value)}" for label, value in pairs)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2)


def _emit(args: argparse.Namespace, answer: Any, text: Callable[[], str]) -> int:
    print(_json(answer) if args.json else text())
    return EXIT_OK


# --- arguments ---------------------------------------------------------------------------


def _common(parser: argparse.ArgumentParser, what: str) -> None:
    group = parser.add_argument_group("server")
    group.add_argument(
        "--url",
        metavar="URL",
        default=None,
        help=f"the server's base URL [env: SESSIONHUB_URL; default: {DEFAULT_URL}]",
    )
    group.add_argument(
        "--api-key",
        metavar="KEY",
        default=None,
        help="API key, sent as a Bearer token [env: SESSIONHUB_API_KEY]",
    )
    group.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="seconds to wait for an answer (default 30)",
    )
    parser.add_argument("--json", action="store_true", help=f"print {what} as JSON")


def _csv(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [part.strip() for part in text.split(",") if part.strip()]


def _json_object(text: str | None, flag: str) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{flag} must be a JSON object: {exc}") from None
    if not isinstance(value, dict):
        raise UsageError(f"{flag} must be a JSON object, like '{{\"pr\": 123}}'")
    return value


# --- register, list, ping, status ------------------------------------------------------------

_SESSION_COLUMNS = (
    ("SESSION ID", "session_id", 36),
    ("AGENT", "agent_name", 20),
    ("TYPE", "agent_type", 14),
    ("STATUS", "status", None),
    ("TASK", "current_task", 30),
    ("CAPABILITIES", "capabilities", 30),
    ("USER", "user_id", 16),
    ("LAST ACTIVITY", "last_activity_at", None),
)


def _session_text(session: Mapping[str, Any]) -> str:
    return _pairs(
        [
            ("session", session.get("session_id")),
            ("agent", session.get("agent_name")),
            ("type", session.get("agent_type")),
            ("user", session.get("user_id")),
            ("status", session.get("status")),
            ("task", session.get("current_task")),
            ("capabilities", session.get("capabilities")),
            ("last activity", session.get("last_activity_at")),
        ]
    )


def _register_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "session_id",
        nargs="?",
        metavar="SESSION_ID",
        help="the session id to claim (1-128 of letters, digits and ._:-); without it the "
        "server picks one",
    )
    parser.add_argument("agent_name", metavar="AGENT_NAME", help="the agent's name, e.g. Cece")
    parser.add_argument("agent_type", metavar="AGENT_TYPE", help="the agent's type, e.g. Claude")
    parser.add_argument("--user", metavar="USER", help="the session's user (without auth)")
    parser.add_argument(
        "--capabilities", metavar="A,B", help="what the agent can do, comma-separated"
    )
    parser.add_argument("--tags", metavar="A,B", help="tags, comma-separated")
    parser.add_argument("--name", help="a name for the session")
    parser.add_argument(
        "--agent-kind",
        metavar="KIND",
        help="the server-side agent (echo, calculator, openai, none: a storage-only "
        "session for agents that run elsewhere); default: the server's",
    )
    _common(parser, "the session")


def _register(client: Client, args: argparse.Namespace) -> int:
    """Create a session that stands for an agent: name, type and capabilities."""
    body: dict[str, Any] = {"agent_name": args.agent_name, "agent_type": args.agent_type}
    if args.session_id:
        body["session_id"] = args.session_id
    for field, value in (
        ("user_id", args.user),
        ("name", args.name),
        ("capabilities", _csv(args.capabilities)),
        ("tags", _csv(args.tags)),
    ):
        if value is not None:
            body[field] = value
    if args.agent_kind:
        body["agent"] = {"kind": args.agent_kind}
    session = client.create_session(body)
    return _emit(args, session, lambda: "registered\n" + _session_text(session))


def _list_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--status", choices=STATUSES, help="only sessions in this status")
    parser.add_argument("--capability", help="only sessions with this capability")
    parser.add_argument("--agent-type", metavar="TYPE", help="only sessions of this agent type")
    parser.add_argument("--tag", help="only sessions with this tag")
    parser.add_argument("--user", metavar="USER", help="only this user's sessions")
    parser.add_argument(
        "--limit", type=int, default=100, metavar="N", help="at most N sessions (default 100)"
    )
    parser.add_argument("--all", action="store_true", help="follow every page")
    _common(parser, '{"sessions", "total"}')


def _list(client: Client, args: argparse.Namespace) -> int:
    """List sessions by status and capability, with a count by status."""
    if args.limit < 1:
        raise UsageError("--limit must be at least 1")
    query: dict[str, Any] = {
        "status": args.status,
        "capability": args.capability,
        "agent_type": args.agent_type,
        "tag": args.tag,
        "user_id": args.user,
        "limit": min(args.limit, 1000),
    }
    sessions: list[dict[str, Any]] = []
    while True:
        page = client.list_sessions(query)
        sessions.extend(page["sessions"])
        cursor = page.get("next_cursor")
        if not cursor or (not args.all and len(sessions) >= args.limit):
            break
        query["cursor"] = cursor
    if not args.all:
        sessions = sessions[: args.limit]
    answer = {"sessions": sessions, "total": page.get("total", len(sessions))}

    def text() -> str:
        by_status: dict[str, int] = {}
        for s in sessions:
            by_status[s["status"]] = by_status.get(s["status"], 0) + 1
        counts = ", ".join(f"{k} {v}" for k, v in sorted(by_status.items())) or "none"
        more = (
            f" (of {answer['total']}; --all for every page)"
            if answer["total"] > len(sessions)
            else ""
        )
        return (
            format_table(sessions, _SESSION_COLUMNS)
            + f"\n\n{_count(len(sessions), 'session')}{more}: {counts}"
        )

    return _emit(args, answer, text)


def _session_id_argument(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("session_id", metavar="SESSION_ID", help=what)


def _ping_arguments(parser: argparse.ArgumentParser) -> None:
    _session_id_argument(parser, "the session to keep alive")
    _common(parser, "the session")


def _ping(client: Client, args: argparse.Namespace) -> int:
    """Send a heartbeat: the session's last activity becomes now."""
    session = client.heartbeat(args.session_id)
    return _emit(
        args,
        session,
        lambda: (
            f"{session['session_id']}: {session['status']}, "
            f"last activity {session['last_activity_at']}"
        ),
    )


def _status_arguments(parser: argparse.ArgumentParser) -> None:
    _session_id_argument(parser, "the session")
    parser.add_argument("status", choices=SETTABLE_STATUSES, help="its new status")
    parser.add_argument("--task", metavar="TEXT", help="what it is working on (current_task)")
    parser.add_argument("--clear-task", action="store_true", help="clear current_task")
    _common(parser, "the session")


def _status(client: Client, args: argparse.Namespace) -> int:
    """Set a session's status (active, working, idle) and its current task."""
    body: dict[str, Any] = {"status": args.status}
    if args.task is not None:
        body["current_task"] = args.task
    elif args.clear_task:
        body["current_task"] = None
    session = client.update_session(args.session_id, body)
    return _emit(args, session, lambda: _session_text(session))


# --- messages ----------------------------------------------------------------------------


def _message_text(message: Mapping[str, Any]) -> str:
    delivered = message.get("delivered_to") or []
    to = message.get("to_session") or f"broadcast to {len(delivered)} sessions"
    return _pairs(
        [
            ("message", message.get("message_id")),
            ("thread", message.get("thread_id")),
            ("type", message.get("type")),
            ("from", message.get("from_session")),
            ("to", to),
            ("delivered to", delivered or "nobody"),
        ]
    )


def _message_options(parser: argparse.ArgumentParser, default_type: str) -> None:
    parser.add_argument(
        "--type",
        choices=MESSAGE_TYPES,
        default=default_type,
        help=f"the message type (default {default_type})",
    )
    parser.add_argument("--data", metavar="JSON", help="structured data, a JSON object")


def _send_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("from_session", metavar="FROM", help="the sending session")
    parser.add_argument("to_session", metavar="TO", help="the receiving session")
    parser.add_argument("subject", help="the subject line")
    parser.add_argument("body", nargs="?", help="the text")
    _message_options(parser, "notification")
    parser.add_argument(
        "--reply-to", metavar="MESSAGE_ID", help="answer this message, in its thread"
    )
    _common(parser, "the message")


def _message_body(args: argparse.Namespace, **fields: Any) -> dict[str, Any]:
    """The body of POST /hub/messages from the options ``send`` and ``broadcast`` share."""
    body: dict[str, Any] = {
        "from_session": args.from_session,
        **fields,
        "type": args.type,
        "subject": args.subject,
    }
    if args.body is not None:
        body["body"] = args.body
    data = _json_object(args.data, "--data")
    if data is not None:
        body["data"] = data
    return body


def _send(client: Client, args: argparse.Namespace) -> int:
    """Send a message from one session to another."""
    body = _message_body(args, to_session=args.to_session)
    if args.reply_to:
        body["reply_to"] = args.reply_to
    message = client.send(body)
    return _emit(args, message, lambda: "sent\n" + _message_text(message))


def _broadcast_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("from_session", metavar="FROM", help="the sending session")
    parser.add_argument("subject", help="the subject line")
    parser.add_argument("body", nargs="?", help="the text")
    _message_options(parser, "broadcast")
    _common(parser, "the message")


def _broadcast(client: Client, args: argparse.Namespace) -> int:
    """Send a message to every other open session of the sender's user."""
    message = client.send(_message_body(args))
    return _emit(args, message, lambda: "broadcast\n" + _message_text(message))


_INBOX_COLUMNS = (
    ("SEQ", "seq", None),
    ("TYPE", "type", None),
    ("FROM", "from_session", 36),
    ("SUBJECT", "subject", 30),
    ("BODY", "body", 40),
    ("DATA", "data", 30),
    ("MESSAGE ID", "message_id", None),
    ("THREAD", "thread_id", None),
)


def _inbox_arguments(parser: argparse.ArgumentParser) -> None:
    _session_id_argument(parser, "the receiving session")
    parser.add_argument("--type", choices=MESSAGE_TYPES, help="only messages of this type")
    parser.add_argument(
        "--after", type=int, metavar="SEQ", help="only messages after this seq (the SEQ column)"
    )
    _common(parser, '{"messages": [...]}')


def _inbox(client: Client, args: argparse.Namespace) -> int:
    """A session's received messages, oldest first."""
    answer = client.inbox(args.session_id, {"type": args.type, "after": args.after})
    messages = answer["messages"]
    return _emit(
        args,
        answer,
        lambda: format_table(messages, _INBOX_COLUMNS) + f"\n\n{_count(len(messages), 'message')}",
    )


# --- shared memory -------------------------------------------------------------------------

_MEMORY_COLUMNS = (
    ("KEY", "key", 40),
    ("TYPE", "type", None),
    ("TAGS", "tags", 24),
    ("VERSION", "version", None),
    ("SESSION", "session_id", 36),
    ("EXPIRES", "expires_at", None),
    ("VALUE", "value", 50),
)


def _entry_text(entry: Mapping[str, Any]) -> str:
    return _pairs(
        [
            ("key", entry.get("key")),
            ("value", entry.get("value")),
            ("type", entry.get("type")),
            ("tags", entry.get("tags") or "-"),
            ("version", entry.get("version")),
            ("session", entry.get("session_id")),
            ("created", entry.get("created_at")),
            ("expires", entry.get("expires_at") or "never"),
        ]
    )


def _owner_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--session",
        metavar="SESSION_ID",
        help="a session of the user whose memory to read (with auth on, the key's user is enough)",
    )
    parser.add_argument(
        "--user", metavar="USER", help="without auth and --session: whose memory to read"
    )


def _memory_set_arguments(parser: argparse.ArgumentParser) -> None:
    _session_id_argument(parser, "the writing session (its user owns the memory)")
    parser.add_argument("key", help="the key")
    parser.add_argument(
        "value", help="the value: JSON when it parses as JSON (42, [1], {...}), else text"
    )
    parser.add_argument("--raw", action="store_true", help="store VALUE as text, never JSON")
    parser.add_argument(
        "--type", choices=MEMORY_TYPES, default="note", help="the entry type (default note)"
    )
    parser.add_argument("--tags", metavar="A,B", help="tags, comma-separated")
    parser.add_argument(
        "--ttl", type=float, metavar="SECONDS", help="forget the entry after this long"
    )
    _common(parser, "the entry")


def _value(text: str, raw: bool) -> Any:
    if raw:
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def _memory_set(client: Client, args: argparse.Namespace) -> int:
    """Store a value in the user's shared memory (a new version of the key)."""
    body: dict[str, Any] = {
        "session_id": args.session_id,
        "value": _value(args.value, args.raw),
        "type": args.type,
    }
    tags = _csv(args.tags)
    if tags is not None:
        body["tags"] = tags
    if args.ttl is not None:
        body["ttl_seconds"] = args.ttl
    entry = client.memory_set(args.key, body)
    return _emit(args, entry, lambda: "stored\n" + _entry_text(entry))


def _memory_get_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("key", help="the key")
    parser.add_argument(
        "--all", action="store_true", help="every value the key has had, oldest first"
    )
    _owner_options(parser)
    _common(parser, "the entry (with --all: the history)")


def _memory_get(client: Client, args: argparse.Namespace) -> int:
    """The latest value of a key, or (``--all``) its whole history."""
    query = {"session_id": args.session, "user_id": args.user}
    if args.all:
        history = client.memory_history(args.key, query)
        entries = history["entries"]
        return _emit(
            args,
            history,
            lambda: (
                format_table(entries, _MEMORY_COLUMNS) + f"\n\n{_count(len(entries), 'version')}"
            ),
        )
    entry = client.memory_get(args.key, query)
    return _emit(args, entry, lambda: _entry_text(entry))


def _memory_search_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pattern", help="a glob over keys, like task_* or agent_?")
    parser.add_argument("--tags", metavar="A,B", help="entries having all these tags")
    parser.add_argument("--type", choices=MEMORY_TYPES, help="only entries of this type")
    parser.add_argument(
        "--session",
        metavar="SESSION_ID",
        help="only entries written by this session (it also names the user)",
    )
    parser.add_argument("--user", metavar="USER", help="without auth: whose memory")
    _common(parser, '{"entries": [...]}')


def _memory_search(client: Client, args: argparse.Namespace) -> int:
    """Search the user's shared memory by pattern, tags, session and type."""
    tags = _csv(args.tags)
    answer = client.memory_search(
        {
            "pattern": args.pattern,
            "tags": ",".join(tags) if tags else None,
            "type": args.type,
            "session_id": args.session,
            "user_id": args.user,
        }
    )
    entries = answer["entries"]
    return _emit(
        args,
        answer,
        lambda: (
            format_table(entries, _MEMORY_COLUMNS)
            + f"\n\n{_count(len(entries), 'entry', 'entries')}"
        ),
    )


# --- stats -----------------------------------------------------------------------------------


def _stats_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--user", metavar="USER", help="without auth or as an operator: whose")
    _common(parser, "the statistics")


def _stats(client: Client, args: argparse.Namespace) -> int:
    """Sessions by status, messages and shared memory of the user."""
    stats = client.hub_stats({"user_id": args.user})

    def text() -> str:
        sessions = stats.get("sessions") or {}
        by_status = sessions.get("by_status") or {}
        lines = [
            f"user:     {stats.get('user_id') or 'everyone'}",
            f"sessions: {sessions.get('total', 0)}"
            + (
                " (" + ", ".join(f"{k} {v}" for k, v in sorted(by_status.items())) + ")"
                if by_status
                else ""
            ),
            f"messages: {stats.get('messages', 0)}",
        ]
        memory = stats.get("memory")
        if memory is not None:
            by_type = memory.get("by_type") or {}
            types = ", ".join(f"{k} {v}" for k, v in sorted(by_type.items()))
            lines.append(
                f"memory:   {memory.get('entries', 0)} entries, {memory.get('writes', 0)} writes"
                + (f" ({types})" if types else "")
            )
        return "\n".join(lines)

    return _emit(args, stats, text)


# --- registration ----------------------------------------------------------------------------

Run = Callable[[Client, argparse.Namespace], int]


def _runner(name: str, run: Run) -> Callable[[argparse.Namespace], int]:
    """Wrap a client command: errors become one line on stderr and an exit status."""

    def wrapped(args: argparse.Namespace) -> int:
        env = os.environ
        url = args.url or env.get("SESSIONHUB_URL") or DEFAULT_URL
        key = args.api_key or env.get("SESSIONHUB_API_KEY") or None
        try:
            if args.timeout <= 0:
                raise UsageError("--timeout must be positive")
            return run(Client(url, key, args.timeout), args)
        except ApiError as exc:
            print(f"sessionhub {name}: {exc}", file=sys.stderr)
            field = exc.details.get("field") if isinstance(exc.details, dict) else None
            if field:
                print(f"  (field: {field})", file=sys.stderr)
            return EXIT_FAILED
        except ClientError as exc:
            print(f"sessionhub {name}: {exc}", file=sys.stderr)
            return exc.status
        except KeyboardInterrupt:
            print(file=sys.stderr)
            return EXIT_INTERRUPTED
        except BrokenPipeError:
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
            except (OSError, ValueError):
                pass
            return EXIT_OK

    wrapped.__name__ = f"run_{name.replace('-', '_')}"
    wrapped.__doc__ = run.__doc__
    return wrapped


_CLIENT_HELP = (
    "Talks to a running server over HTTP: --url (else SESSIONHUB_URL, else "
    f"{DEFAULT_URL}) and --api-key (else SESSIONHUB_API_KEY). Exit status 1 when the "
    "server refuses the request or cannot be reached."
)

_COMMANDS: tuple[tuple[str, str, Callable[[argparse.ArgumentParser], None], Run], ...] = (
    ("register", "register an agent as a session", _register_arguments, _register),
    ("list", "list sessions by status and capability", _list_arguments, _list),
    ("ping", "send a session's heartbeat", _ping_arguments, _ping),
    ("status", "set a session's status and current task", _status_arguments, _status),
    ("send", "send a message to another session", _send_arguments, _send),
    ("broadcast", "message every other open session", _broadcast_arguments, _broadcast),
    ("inbox", "a session's received messages", _inbox_arguments, _inbox),
    ("memory-set", "store a value in shared memory", _memory_set_arguments, _memory_set),
    ("memory-get", "read a key of shared memory", _memory_get_arguments, _memory_get),
    ("memory-search", "search shared memory", _memory_search_arguments, _memory_search),
    ("stats", "sessions, messages and memory at a glance", _stats_arguments, _stats),
)


def register(commands: MutableMapping[str, Any], factory: Callable[..., Any]) -> None:
    """Add the client subcommands to the CLI's table of subcommands."""
    for name, help_, arguments, run in _COMMANDS:
        doc = (run.__doc__ or help_).strip()
        commands[name] = factory(
            help=f"{help_} (client)",
            description=f"{doc}\n\n{_CLIENT_HELP}",
            add_arguments=arguments,
            run=_runner(name, run),
        )
