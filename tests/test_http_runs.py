"""Runs over HTTP: run, run_stream (SSE), double-texting, cancel, agents, concurrency."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from actors.agents import AgentSettings
from actors.agents.echo import echo_answer
from actors.config import HubConfig
from tests.fake_openai import FakeOpenAI, FakeReply
from tests.http_helpers import read_sse, running_server


@pytest.fixture
async def srv():
    async with running_server() as server:
        yield server


async def _slow_session(srv, delay=0.05):
    return (await srv.create(agent={"kind": "echo", "params": {"delay_s": delay}}))["session_id"]


async def _messages(srv, sid, chat_id=None):
    path = f"/sessions/{sid}/messages" + (f"?chat_id={chat_id}" if chat_id else "")
    status, body = await srv.call("GET", path)
    assert status == 200
    return body["messages"]


async def _wait_for(predicate, timeout=10.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await predicate()
        if result:
            return result
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_run_answers_the_assistant_message(srv):
    """POST run waits for the turn and answers {message: {id, role, content}, turn_id}."""
    sid = (await srv.create())["session_id"]
    status, body = await srv.call("POST", f"/sessions/{sid}/run", {"message": "What is 2+2?"})
    assert status == 200, body
    assert body["message"]["role"] == "assistant"
    assert body["message"]["content"] == "Echo: What is 2+2?"
    assert body["message"]["id"] and body["turn_id"]


async def test_run_stream_is_sse_with_id_and_data_lines_only(srv):
    """run_stream: stream_start (with id: its seq), stream_chunk with sequence, stream_end."""
    sid = (await srv.create())["session_id"]
    async with srv.client.post(
        f"{srv.url}/sessions/{sid}/run_stream", json={"message": "a b c"}
    ) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        assert resp.headers["Cache-Control"] == "no-cache"
        raw = (await resp.read()).decode()
    assert "event:" not in raw
    for line in raw.splitlines():
        assert line == "" or line.startswith(("id: ", "data: ", ":")), line
    messages = [json.loads(line[6:]) for line in raw.splitlines() if line.startswith("data: ")]
    ids = [line[4:] for line in raw.splitlines() if line.startswith("id: ")]
    assert [m["type"] for m in messages] == (
        ["stream_start"] + ["stream_chunk"] * 4 + ["stream_end"]
    )
    start, *chunks, end = messages
    version_after = (await srv.get(sid))["version"]
    assert ids[0].isdigit() and 0 < int(ids[0]) < version_after
    for m in messages:
        assert m["id"].startswith("evt-") and m["created_at"].endswith("Z")
    assert start["data"]["turn_id"]
    assert [c["data"]["sequence"] for c in chunks] == [1, 2, 3, 4]
    assert "".join(c["data"]["content"] for c in chunks) == "Echo: a b c"
    assert end["data"]["complete_text"] == "Echo: a b c"


async def test_follow_up_run_sees_the_earlier_turn(srv):
    """The agent sees the chat's whole history: the echo agent counts the turns."""
    sid = (await srv.create())["session_id"]
    await srv.call("POST", f"/sessions/{sid}/run", {"message": "first"})
    msgs = await srv.sse("POST", f"/sessions/{sid}/run_stream", {"message": "second"})
    assert msgs[-1].data["data"]["complete_text"] == "Echo: second (turn 2)"
    _, body = await srv.call("POST", f"/sessions/{sid}/run", {"message": "third"})
    assert body["message"]["content"] == "Echo: third (turn 3)"


async def test_run_input_errors(srv):
    """Bad run bodies are 400 naming the field; unknown sessions 404; nothing changes."""
    sid = (await srv.create())["session_id"]
    version = (await srv.get(sid))["version"]
    for body, field in [
        ({}, "message"),
        ({"message": 5}, "message"),
        ({"message": "x", "chat_id": 3}, "chat_id"),
        ({"message": "x", "multitask": "sometimes"}, "multitask"),
    ]:
        for route in ("run", "run_stream"):
            status, err = await srv.call("POST", f"/sessions/{sid}/{route}", body)
            assert status == 400, (route, body, err)
            assert err["error"]["details"]["field"] == field
    for route in ("run", "run_stream"):
        status, err = await srv.call("POST", f"/sessions/{sid}/{route}", data=b"not json")
        assert status == 400
        status, err = await srv.call("POST", f"/sessions/nope/{route}", {"message": "x"})
        assert status == 404 and err["error"]["code"] == "session_not_found"
        status, err = await srv.call(
            "POST", f"/sessions/{sid}/{route}", {"message": "x", "chat_id": "nope"}
        )
        assert status == 404 and err["error"]["code"] == "chat_not_found"
    assert (await srv.get(sid))["version"] == version


async def test_second_run_is_turn_in_progress(srv):
    """A second run on a busy chat is 409 turn_in_progress."""
    sid = await _slow_session(srv)
    first = asyncio.create_task(
        srv.call("POST", f"/sessions/{sid}/run", {"message": "one two three four five"})
    )
    await _wait_for(lambda: _running(srv, sid))
    status, err = await srv.call("POST", f"/sessions/{sid}/run", {"message": "again"})
    assert status == 409 and err["error"]["code"] == "turn_in_progress"
    async with srv.client.post(
        f"{srv.url}/sessions/{sid}/run_stream", json={"message": "again"}
    ) as resp:
        assert resp.status == 409
    status, _body = await first
    assert status == 200


async def _running(srv, sid):
    return (await srv.get(sid))["status"] == "working" or bool(srv.hub.runner.running(sid))


async def test_enqueue_waits_its_turn(srv):
    """multitask enqueue runs after the running turn, in order."""
    sid = await _slow_session(srv)
    first = asyncio.create_task(
        srv.call("POST", f"/sessions/{sid}/run", {"message": "one two three"})
    )
    await _wait_for(lambda: _running(srv, sid))
    status, body = await srv.call(
        "POST", f"/sessions/{sid}/run", {"message": "queued", "multitask": "enqueue"}
    )
    assert status == 200, body
    assert body["message"]["content"] == "Echo: queued (turn 2)"
    assert (await first)[0] == 200
    msgs = await _messages(srv, sid)
    assert [m["content"] for m in msgs] == [
        "one two three",
        "Echo: one two three",
        "queued",
        "Echo: queued (turn 2)",
    ]


async def test_interrupt_cancels_the_running_turn(srv):
    """multitask interrupt cancels the running turn (partial text kept as cancelled)."""
    sid = await _slow_session(srv, delay=0.2)
    first = asyncio.create_task(
        srv.call("POST", f"/sessions/{sid}/run", {"message": "a b c d e f g h"})
    )
    await _wait_for(lambda: _running(srv, sid))
    await asyncio.sleep(0.3)
    status, body = await srv.call(
        "POST", f"/sessions/{sid}/run", {"message": "now", "multitask": "interrupt"}
    )
    assert status == 200, body
    status, first_body = await first
    assert status == 200 and first_body["status"] == "cancelled"
    msgs = await _messages(srv, sid)
    cancelled = [m for m in msgs if m["status"] == "cancelled"]
    assert len(cancelled) == 1 and cancelled[0]["role"] == "assistant"
    assert "Echo: a b c d e f g h".startswith(cancelled[0]["content"])
    assert msgs[-1]["status"] == "complete"


async def test_cancel_keeps_partial_text(srv):
    """POST cancel stops the turn; the partial answer is an assistant message, cancelled."""
    sid = await _slow_session(srv, delay=0.2)
    stream = asyncio.create_task(
        srv.sse("POST", f"/sessions/{sid}/run_stream", {"message": "w1 w2 w3 w4 w5 w6 w7 w8"})
    )
    await _wait_for(lambda: _running(srv, sid))
    await asyncio.sleep(0.3)
    status, body = await srv.call("POST", f"/sessions/{sid}/cancel", {})
    assert status == 200, body
    messages = await stream
    end = messages[-1].data
    assert end["type"] == "stream_end"
    msgs = await _messages(srv, sid)
    assert msgs[-1]["role"] == "assistant" and msgs[-1]["status"] == "cancelled"
    assert msgs[-1]["content"] == end["data"]["complete_text"]
    status, err = await srv.call("POST", f"/sessions/{sid}/cancel", {})
    assert status == 409 and "error" in err
    status, _ = await srv.call("POST", f"/sessions/{sid}/cancel", {"chat_id": 5})
    assert status == 400


async def test_client_disconnect_does_not_break_the_turn(srv):
    """A client that drops a run_stream mid-way: the turn finishes and is recorded."""
    sid = await _slow_session(srv, delay=0.05)
    text = "one two three four five six seven eight"
    resp = await srv.client.post(f"{srv.url}/sessions/{sid}/run_stream", json={"message": text})
    got = []
    async for message in read_sse(resp):
        got.append(message)
        if len(got) == 3:
            break
    resp.close()  # drop the connection mid-stream

    async def recorded():
        msgs = await _messages(srv, sid)
        return msgs if len(msgs) == 2 else None

    msgs = await _wait_for(recorded)
    assert msgs[1]["content"] == f"Echo: {text}" and msgs[1]["status"] == "complete"


async def test_run_with_stream_true_answers_the_turn_id_at_once(srv):
    """run with "stream": true answers 202 {turn_id}; the turn is recorded."""
    sid = (await srv.create())["session_id"]
    status, body = await srv.call("POST", f"/sessions/{sid}/run", {"message": "bg", "stream": True})
    assert status == 202 and set(body) == {"turn_id"}

    async def done():
        return len(await _messages(srv, sid)) == 2

    await _wait_for(done)


async def test_calculator_agent_records_its_tool_call(srv):
    """The calculator answers in words through a tool call recorded as events."""
    sid = (await srv.create(agent={"kind": "calculator"}))["session_id"]
    status, body = await srv.call("POST", f"/sessions/{sid}/run", {"message": "What is 2+2?"})
    assert status == 200
    assert body["message"]["content"] == "2+2 equals 4."
    _, events = await srv.call("GET", f"/sessions/{sid}/events")
    types = [e["type"] for e in events["events"]]
    assert "tool_called" in types and "tool_result" in types


async def test_openai_agent_against_a_fake_server():
    """The openai agent streams from the configured server and sends the whole history."""
    async with FakeOpenAI() as fake:
        fake.enqueue(FakeReply(text="2+2 equals 4."), FakeReply(text="You asked about 2+2."))
        config = HubConfig(agents=AgentSettings(openai_base_url=fake.base_url, max_retries=0))
        async with running_server(hub_config=config) as srv:
            sid = (
                await srv.create(
                    agent={"kind": "openai", "model": "m", "system_prompt": "Be exact."}
                )
            )["session_id"]
            status, body = await srv.call(
                "POST", f"/sessions/{sid}/run", {"message": "What is 2+2?"}
            )
            assert status == 200 and body["message"]["content"] == "2+2 equals 4."
            msgs = await srv.sse(
                "POST", f"/sessions/{sid}/run_stream", {"message": "What did I ask?"}
            )
            chunks = [m.data for m in msgs if m.data["type"] == "stream_chunk"]
            assert len(chunks) > 1
            assert msgs[-1].data["data"]["complete_text"] == "You asked about 2+2."
            sent = fake.last_request.messages
            assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
            assert sent[1]["content"] == "What is 2+2?"
            assert sent[2]["content"] == "2+2 equals 4."


async def test_failing_agent_ends_the_stream_with_error():
    """A failing upstream ends run_stream with {"type": "error", "data": {code, message}}."""
    async with FakeOpenAI(default=FakeReply.failure(500, "boom")) as fake:
        config = HubConfig(agents=AgentSettings(openai_base_url=fake.base_url, max_retries=0))
        async with running_server(hub_config=config) as srv:
            sid = (await srv.create(agent={"kind": "openai"}))["session_id"]
            msgs = await srv.sse("POST", f"/sessions/{sid}/run_stream", {"message": "hi"})
            assert msgs[0].data["type"] == "stream_start"
            err = msgs[-1].data
            assert err["type"] == "error"
            assert set(err["data"]) >= {"code", "message"}
            status, body = await srv.call("POST", f"/sessions/{sid}/run", {"message": "hi"})
            assert status >= 500 and "error" in body
            msgs = await _messages(srv, sid)
            assert any(m["status"] == "failed" for m in msgs)


async def test_hundred_sessions_streaming_at_once(srv):
    """100 concurrent run_streams: per session no chunk lost, duplicated or reordered."""
    words = " ".join(f"w{i}" for i in range(20))
    sids = []
    for _i in range(100):
        s = await srv.create(agent={"kind": "echo", "params": {"delay_s": 0.005}})
        sids.append(s["session_id"])
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as client:

        async def stream(sid):
            out = []
            async with client.post(
                f"{srv.url}/sessions/{sid}/run_stream", json={"message": f"{sid} {words}"}
            ) as resp:
                assert resp.status == 200
                async for message in read_sse(resp):
                    out.append(message)
            return sid, out

        results = await asyncio.gather(*(stream(sid) for sid in sids))
    for sid, messages in results:
        expected = echo_answer([{"role": "user", "content": f"{sid} {words}"}])
        start, *chunks, end = messages
        assert start.data["type"] == "stream_start"
        assert end.data["type"] == "stream_end"
        seqs = [c.data["data"]["sequence"] for c in chunks]
        assert seqs == list(range(1, len(chunks) + 1))
        assert [c.id for c in chunks] == [f"{start.id}.{n}" for n in seqs]
        assert "".join(c.data["data"]["content"] for c in chunks) == expected
        assert end.data["data"]["complete_text"] == expected
        msgs = await _messages(srv, sid)
        assert msgs[-1]["content"] == expected
