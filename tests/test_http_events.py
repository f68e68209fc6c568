"""The event log over HTTP: paged reads, client appends, SSE follow and resume, WebSocket."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from tests.http_helpers import read_sse, running_server


@pytest.fixture
async def srv():
    async with running_server(sse_keepalive_s=0.2) as server:
        yield server


async def _seed(srv, n=5):
    sid = (await srv.create())["session_id"]
    for i in range(n):
        status, _ = await srv.call("PUT", f"/sessions/{sid}/context/k{i}", i)
        assert status == 200
    return sid


async def test_read_events_with_after_limit_type_tail(srv):
    """GET events pages by after/limit, filters by type, and tails."""
    sid = await _seed(srv, 5)
    status, body = await srv.call("GET", f"/sessions/{sid}/events")
    assert status == 200
    events = body["events"]
    assert [e["seq"] for e in events] == [1, 2, 3, 4, 5, 6]
    assert body["last_seq"] == 6
    assert set(events[0]) == {"seq", "type", "data", "created_at", "command_id"}
    _, page = await srv.call("GET", f"/sessions/{sid}/events?after=2&limit=2")
    assert [e["seq"] for e in page["events"]] == [3, 4]
    _, typed = await srv.call("GET", f"/sessions/{sid}/events?type=session_created")
    assert [e["seq"] for e in typed["events"]] == [1]
    _, tail = await srv.call("GET", f"/sessions/{sid}/events?tail=2")
    assert [e["seq"] for e in tail["events"]] == [5, 6]
    for bad in ("after=x", "limit=0", "limit=abc", "tail=-3"):
        status, err = await srv.call("GET", f"/sessions/{sid}/events?{bad}")
        assert status == 400, bad
        assert err["error"]["details"]["field"] == bad.split("=")[0]


async def test_append_client_events_all_or_none(srv):
    """POST events appends client events with context_delta, all or none, with If-Match."""
    sid = await _seed(srv, 1)
    version = (await srv.get(sid))["version"]
    status, body = await srv.call(
        "POST",
        f"/sessions/{sid}/events",
        {
            "events": [
                {
                    "type": "app.step_done",
                    "data": {"step": 1},
                    "context_delta": {"k0": None, "n": 2},
                },
                {"type": "app.other", "data": {}},
            ]
        },
        headers={"If-Match": str(version)},
    )
    assert status == 200, body
    assert [e["seq"] for e in body["events"]] == [version + 1, version + 2]
    assert body["version"] == version + 2
    assert body["events"][0]["type"] == "app.step_done"
    _, ctx = await srv.call("GET", f"/sessions/{sid}/context")
    assert ctx == {"entries": {"n": 2}}
    status, err = await srv.call(
        "POST",
        f"/sessions/{sid}/events",
        {"events": [{"type": "app.x"}]},
        headers={"If-Match": str(version)},
    )
    assert status == 409 and err["error"]["code"] == "version_conflict"
    after = (await srv.get(sid))["version"]
    for bad in [
        {"events": []},
        {"events": "x"},
        {},
        {"events": [{"type": "app.ok"}, {"type": "Bad.Type"}]},
        {"events": [{"type": "session_created"}]},
        {"events": [{"type": "app.ok"}, {"type": "turn_completed"}]},
        {"events": [{"type": "app.ok", "context_delta": {"../x": 1}}]},
        {"events": [{"type": "app.ok", "context_delta": [1]}]},
        {"events": [5]},
    ]:
        status, err = await srv.call("POST", f"/sessions/{sid}/events", bad)
        assert status == 400, (bad, err)
        assert err["error"]["code"] == "invalid_request"
    assert (await srv.get(sid))["version"] == after


async def _collect(resp, *, until_seq=None, count=None, timeout=10.0, out=None):
    out = [] if out is None else out

    async def run():
        async for message in read_sse(resp):
            out.append(message)
            if count is not None and len(out) >= count:
                return
            if (
                until_seq is not None
                and message.id
                and "." not in message.id
                and int(message.id) >= until_seq
            ):
                return

    await asyncio.wait_for(run(), timeout)
    return out


async def test_events_stream_replays_then_follows_live(srv):
    """events/stream sends every past event (id = seq), then live ones; keepalive comments."""
    sid = await _seed(srv, 2)
    comments: list[str] = []
    async with srv.client.get(f"{srv.url}/sessions/{sid}/events/stream") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        got = await _collect(resp, count=3)
        assert [m.id for m in got] == ["1", "2", "3"]
        assert got[0].data["type"] == "session_created" and got[0].data["seq"] == 1
        assert all(not line.startswith("event:") for m in got for line in m.lines)
        await srv.call("PUT", f"/sessions/{sid}/context/live", True)

        async def more():
            async for message in read_sse(resp, comments=comments):
                return message

        live = await asyncio.wait_for(more(), 5)
        assert live.id == "4" and live.data["type"] == "context_set"
        # idle: keepalive comments arrive
        await asyncio.sleep(0.5)
        await srv.call("PUT", f"/sessions/{sid}/context/live2", True)
        nxt = await asyncio.wait_for(more(), 5)
        assert nxt.id == "5"
    assert any(c.startswith(": keepalive") for c in comments)


async def test_events_stream_after_query_and_bad_resume_points(srv):
    """?after= starts after a seq; a bad Last-Event-ID/after is 400; unknown session 404."""
    sid = await _seed(srv, 3)
    async with srv.client.get(f"{srv.url}/sessions/{sid}/events/stream?after=2") as resp:
        got = await _collect(resp, count=2)
    assert [m.id for m in got] == ["3", "4"]
    for headers, query in [
        ({"Last-Event-ID": "abc"}, ""),
        ({}, "?after=x"),
        ({"Last-Event-ID": "-1"}, ""),
    ]:
        async with srv.client.get(
            f"{srv.url}/sessions/{sid}/events/stream{query}", headers=headers
        ) as resp:
            assert resp.status == 400
            assert (await resp.json())["error"]["code"] == "invalid_request"
    async with srv.client.get(f"{srv.url}/sessions/nope/events/stream") as resp:
        assert resp.status == 404


async def test_sse_resume_after_a_dropped_connection_has_no_gap_or_duplicate(srv):
    """Drop the stream, write more, reconnect with Last-Event-ID: every seq exactly once."""
    sid = await _seed(srv, 3)
    seen: list[str] = []
    async with srv.client.get(f"{srv.url}/sessions/{sid}/events/stream") as resp:
        got = await _collect(resp, count=2)
        seen += [m.id for m in got]
        resp.close()
    for i in range(5):
        await srv.call("PUT", f"/sessions/{sid}/context/x{i}", i)
    last = (await srv.get(sid))["version"]
    async with srv.client.get(
        f"{srv.url}/sessions/{sid}/events/stream", headers={"Last-Event-ID": seen[-1]}
    ) as resp:
        got = await _collect(resp, until_seq=last)
    seen += [m.id for m in got]
    assert seen == [str(i) for i in range(1, last + 1)]


async def test_sse_resume_inside_a_running_turn_continues_from_the_chunk(srv):
    """Dropped mid-turn at chunk SEQ.N, a resume gets SEQ.N+1... then the turn's end."""
    sid = (await srv.create(agent={"kind": "echo", "params": {"delay_s": 0.1}}))["session_id"]
    words = " ".join(f"w{i}" for i in range(12))
    expected = f"Echo: {words}"
    first: list = []
    async with srv.client.get(f"{srv.url}/sessions/{sid}/events/stream") as resp:
        run = asyncio.create_task(srv.call("POST", f"/sessions/{sid}/run", {"message": words}))

        async def until_chunks():
            async for message in read_sse(resp):
                first.append(message)
                if sum(1 for m in first if m.id and "." in m.id) >= 3:
                    return

        await asyncio.wait_for(until_chunks(), 10)
        resp.close()
    resume_from = first[-1].id
    second: list = []
    async with srv.client.get(
        f"{srv.url}/sessions/{sid}/events/stream", headers={"Last-Event-ID": resume_from}
    ) as resp:

        async def until_done():
            async for message in read_sse(resp):
                second.append(message)
                if message.data.get("type") == "turn_completed":
                    return

        await asyncio.wait_for(until_done(), 15)
    status, _ = await run
    assert status == 200
    chunks = [m for m in first + second if m.id and "." in m.id]
    ns = [int(m.id.split(".")[1]) for m in chunks]
    assert ns == list(range(1, len(ns) + 1)), ns
    assert "".join(m.data["data"]["content"] for m in chunks) == expected
    durable = [int(m.id) for m in first + second if m.id and "." not in m.id]
    assert durable == sorted(set(durable))
    assert second[-1].data["data"]["message"]["content"] == expected


async def test_websocket_runs_turns_and_sends_events(srv):
    """WS: a run message streams chunks (metadata, text..., done) and the session's events."""
    sid = (await srv.create())["session_id"]
    async with srv.client.ws_connect(f"{srv.url}/sessions/{sid}/ws") as ws:
        await ws.send_json({"type": "ping", "request_id": "p"})
        pong = await ws.receive_json(timeout=5)
        assert pong["type"] == "pong" and pong["request_id"] == "p"
        await ws.send_json({"type": "run", "message": "hi there", "request_id": "r1"})
        chunks, events = [], []
        while True:
            frame = await ws.receive_json(timeout=5)
            if "chunk_type" in frame:
                chunks.append(frame)
            else:
                events.append(frame)
            if any(c["final"] for c in chunks) and any(
                e.get("type") == "turn_completed" for e in events
            ):
                break
        for c in chunks:
            assert set(c) >= {"turn_id", "chunk_type", "content", "timestamp", "final"}
            assert c["request_id"] == "r1"
        assert chunks[0]["chunk_type"] == "metadata"
        assert [c["chunk_type"] for c in chunks[1:-1]] == ["text"] * (len(chunks) - 2)
        assert chunks[-1]["chunk_type"] == "done" and chunks[-1]["final"] is True
        assert "".join(c["content"] for c in chunks[1:-1]) == "Echo: hi there"
        assert chunks[-1]["content"] == "Echo: hi there"
        assert len({c["turn_id"] for c in chunks}) == 1
        assert [e["type"] for e in events] == ["turn_started", "turn_completed"]
        assert all("seq" in e for e in events)

        await ws.send_json({"type": "run", "message": 5, "request_id": "bad"})
        err = await ws.receive_json(timeout=5)
        assert err["chunk_type"] == "error" and err["final"] is True
        assert err["request_id"] == "bad" and err["error"]["code"] == "invalid_request"
        await ws.send_str("not json")
        err = await ws.receive_json(timeout=5)
        assert err["chunk_type"] == "error"
        await ws.send_json({"type": "dance"})
        err = await ws.receive_json(timeout=5)
        assert err["error"]["details"]["field"] == "type"


async def test_websocket_errors_before_upgrade(srv):
    """An unknown session is a JSON 404 before the upgrade; a plain GET is 400."""
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        async with srv.client.ws_connect(f"{srv.url}/sessions/nope/ws"):
            pass
    assert info.value.status == 404
    sid = (await srv.create())["session_id"]
    status, err = await srv.call("GET", f"/sessions/{sid}/ws")
    assert status == 400 and err["error"]["code"] == "invalid_request"


async def test_websocket_close_mid_turn_does_not_stop_the_turn(srv):
    """Closing the socket during a turn leaves the turn to finish and be recorded."""
    sid = (await srv.create(agent={"kind": "echo", "params": {"delay_s": 0.05}}))["session_id"]
    async with srv.client.ws_connect(f"{srv.url}/sessions/{sid}/ws") as ws:
        await ws.send_json({"type": "run", "message": "a b c d e f", "request_id": 1})
        frame = await ws.receive_json(timeout=5)
        while "chunk_type" not in frame:
            frame = await ws.receive_json(timeout=5)
        assert frame["chunk_type"] == "metadata"
    for _ in range(200):
        _, body = await srv.call("GET", f"/sessions/{sid}/messages")
        if len(body["messages"]) == 2:
            break
        await asyncio.sleep(0.02)
    assert body["messages"][-1]["content"] == "Echo: a b c d e f"
    assert body["messages"][-1]["status"] == "complete"


async def test_resume_from_a_chunk_after_tool_events_has_no_duplicate(srv):
    """Resuming from a chunk id never re-sends durable events the client already saw."""
    sid = (await srv.create(agent={"kind": "calculator"}))["session_id"]
    seen: list = []
    async with srv.client.get(f"{srv.url}/sessions/{sid}/events/stream") as resp:
        run = asyncio.create_task(srv.call("POST", f"/sessions/{sid}/run", {"message": "2+2?"}))

        async def until_done():
            async for message in read_sse(resp):
                seen.append(message)
                if message.data.get("type") == "turn_completed":
                    return

        await asyncio.wait_for(until_done(), 10)
    await run
    first_chunk = next(i for i, m in enumerate(seen) if m.id and "." in m.id)
    async with srv.client.get(
        f"{srv.url}/sessions/{sid}/events/stream",
        headers={"Last-Event-ID": seen[first_chunk].id},
    ) as resp:
        again = await _collect(resp, until_seq=int(seen[-1].id))
    already = {m.id for m in seen[: first_chunk + 1]}
    assert not [m.id for m in again if m.id in already]
