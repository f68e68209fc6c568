"""A sessionhub client in plain Python (standard library only): runs, SSE, and resume.

Start a server (``sessionhub serve``), then::

    python examples/python_client.py [--base-url http://127.0.0.1:8000] [--api-key KEY]

It creates a session, stores context, runs a turn, streams a turn chunk by chunk
(``POST /sessions/{id}/run_stream``), and then follows the session's event stream
(``GET /sessions/{id}/events/stream``) while a turn runs, drops the connection in the
middle of the turn and reconnects with ``Last-Event-ID``: the stream continues from the
last chunk it delivered, with nothing repeated and nothing lost. Copy
:class:`SessionhubClient` and :func:`read_sse` into your own code.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


class ApiError(Exception):
    """An error answer of the API: ``{"error": {"code", "message", "details"}}``."""

    def __init__(self, status: int, body: Any) -> None:
        error = body.get("error", {}) if isinstance(body, dict) else {}
        self.status = status
        self.code = error.get("code", "unknown")
        self.details = error.get("details", {})
        super().__init__(f"{status} {self.code}: {error.get('message', body)}")


@dataclass
class SSEMessage:
    """One server-sent event: its ``id:`` (None when it has none) and its JSON ``data:``."""

    id: str | None
    data: dict[str, Any]


def read_sse(response: http.client.HTTPResponse) -> Iterator[SSEMessage]:
    """Parse a ``text/event-stream`` body into messages as the bytes arrive.

    sessionhub sends only ``id:`` and ``data:`` fields (and ``:`` keep-alive comments);
    a blank line ends a message.
    """
    event_id: str | None = None
    data: list[str] = []
    for raw in response:
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            if data:
                yield SSEMessage(event_id, json.loads("\n".join(data)))
            event_id, data = None, []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "id":
            event_id = value
        elif name == "data":
            data.append(value)


class SessionhubClient:
    """The HTTP API of API.md, one method per call used here."""

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 30) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout

    def _request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> urllib.request.Request:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        if body is not None:
            request.add_header("Content-Type", "application/json")
        if self.api_key:
            request.add_header("Authorization", f"Bearer {self.api_key}")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        return request

    def call(self, method: str, path: str, body: Any = None, **headers: str) -> Any:
        """One request; the JSON answer, or :class:`ApiError`."""
        request = self._request(method, path, body, headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise ApiError(exc.code, _json_or_text(exc.read())) from None

    def open_stream(
        self, method: str, path: str, body: Any = None, **headers: str
    ) -> http.client.HTTPResponse:
        """Start an SSE response; the caller reads it with :func:`read_sse` and closes it."""
        request = self._request(method, path, body, {"Accept": "text/event-stream", **headers})
        try:
            return urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            raise ApiError(exc.code, _json_or_text(exc.read())) from None

    # -- the calls ---------------------------------------------------------------------

    def create_session(self, **fields: Any) -> dict[str, Any]:
        return self.call("POST", "/sessions", fields)

    def delete_session(self, session_id: str) -> dict[str, Any]:
        return self.call("DELETE", f"/sessions/{session_id}")

    def set_context(self, session_id: str, key: str, value: Any) -> dict[str, Any]:
        return self.call("PUT", f"/sessions/{session_id}/context/{urllib.parse.quote(key)}", value)

    def run(self, session_id: str, message: str) -> dict[str, Any]:
        return self.call("POST", f"/sessions/{session_id}/run", {"message": message})

    def run_stream(self, session_id: str, message: str) -> Iterator[SSEMessage]:
        """The messages of a streamed turn: stream_start, stream_chunk..., stream_end."""
        response = self.open_stream(
            "POST", f"/sessions/{session_id}/run_stream", {"message": message}
        )
        with response:
            yield from read_sse(response)

    def events(self, session_id: str, last_event_id: str | None = None) -> EventStream:
        """The session's event stream after ``last_event_id`` (all of it when None), live.

        Durable events have ``id`` = their seq; chunks of a running turn ``SEQ.N``.
        Reconnecting with the last id seen resumes exactly after it. The connection is
        open when this returns; iterate for the messages, ``close()`` to hang up.
        """
        headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
        return EventStream(
            self.open_stream("GET", f"/sessions/{session_id}/events/stream", **headers)
        )


class EventStream:
    """An open SSE connection: iterate for :class:`SSEMessage`, ``close()`` to hang up."""

    def __init__(self, response: http.client.HTTPResponse) -> None:
        self.response = response

    def __iter__(self) -> Iterator[SSEMessage]:
        return read_sse(self.response)

    def close(self) -> None:
        self.response.close()


def _json_or_text(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


def follow_turn_with_resume(
    client: SessionhubClient, session_id: str, message: str, drop_after_chunks: int
) -> dict[str, Any]:
    """Follow a turn on the event stream, dropping the connection after a few chunks and
    resuming with Last-Event-ID. Returns what was seen, to check nothing was lost."""
    errors: list[BaseException] = []

    def run_turn() -> None:
        try:
            client.run(session_id, message)
        except BaseException as exc:  # reported by the caller
            errors.append(exc)

    # Follow from the session's current version: only what the new turn writes.
    last_id: str | None = str(client.call("GET", f"/sessions/{session_id}")["version"])
    stream = client.events(session_id, last_id)
    runner = threading.Thread(target=run_turn, daemon=True)
    runner.start()  # the stream is already open: nothing of the turn can be missed
    seen_ids: list[str] = []
    chunks: list[str] = []
    final: str | None = None
    reconnects = 0
    while True:
        for msg in stream:
            if msg.id is not None:
                seen_ids.append(msg.id)
                last_id = msg.id
            kind = msg.data.get("type")
            if kind == "stream_chunk":
                chunks.append(msg.data["data"]["content"])
                if reconnects == 0 and len(chunks) == drop_after_chunks:
                    print(f"  ... dropping the connection after event id {last_id}")
                    break
            elif kind == "turn_completed":
                final = msg.data["data"]["message"]["content"]
                break
        stream.close()
        if final is not None:
            break
        reconnects += 1
        print(f"  ... reconnecting with Last-Event-ID: {last_id}")
        stream = client.events(session_id, last_id)
    runner.join(30)
    if errors:
        raise errors[0]
    return {"chunks": chunks, "final": final, "ids": seen_ids, "reconnects": reconnects}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8000")
    parser.add_argument("--api-key", default=None, help="sent as Authorization: Bearer KEY")
    args = parser.parse_args(argv)
    client = SessionhubClient(args.base_url, args.api_key)

    session = client.create_session(
        user_id="user123",
        name="python client",
        # The echo agent answers word by word; a small delay makes the turn last long
        # enough to drop and resume its stream in the middle.
        agent={"kind": "echo", "params": {"delay_s": 0.05}},
    )
    sid = session["session_id"]
    print(f"session {sid}")
    client.set_context(sid, "plan", {"steps": ["ask", "stream", "resume"]})

    reply = client.run(sid, "What is 2+2?")
    print(f"run: {reply['message']['content']}")

    print("run_stream: ", end="", flush=True)
    text = ""
    for msg in client.run_stream(sid, "stream this answer word by word"):
        if msg.data["type"] == "stream_chunk":
            print(msg.data["data"]["content"], end="", flush=True)
            text += msg.data["data"]["content"]
        elif msg.data["type"] == "stream_end":
            assert msg.data["data"]["complete_text"] == text, "the chunks make the answer"
        elif msg.data["type"] == "error":
            raise ApiError(500, {"error": msg.data["data"]})
    print()

    print("events/stream with a dropped connection:")
    seen = follow_turn_with_resume(
        client, sid, "one two three four five six seven eight", drop_after_chunks=3
    )
    joined = "".join(seen["chunks"])
    print(f"  chunks: {joined!r}")
    print(f"  final:  {seen['final']!r}")
    ok = (
        joined == seen["final"]
        and len(seen["ids"]) == len(set(seen["ids"]))
        and seen["reconnects"] == 1
    )
    print("resume: ok (nothing repeated, nothing lost)" if ok else "resume: MISMATCH")

    client.delete_session(sid)
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ApiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
