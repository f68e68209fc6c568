"""Hub messages over HTTP: send, reply, broadcast, inbox, threads, stats, live delivery."""

from __future__ import annotations

import asyncio

import pytest

from actors.messaging import MESSAGE_TYPES
from tests.http_helpers import read_sse, running_server

KEYS = {"ka": "alice", "kb": "bob", "kop": "*"}


@pytest.fixture
async def srv():
    async with running_server(api_keys=KEYS, default_key="ka") as server:
        yield server


async def _sessions(srv, n, key="ka", **body):
    return [(await srv.create(key=key, **body))["session_id"] for _ in range(n)]


async def _send(srv, body, key="ka", status=201):
    got, out = await srv.call("POST", "/hub/messages", body, key=key)
    assert got == status, (body, got, out)
    return out


async def test_direct_message_lands_in_the_inbox_and_the_log(srv):
    """POST /hub/messages answers 201 with ids; the recipient's inbox and log show it."""
    a, b = await _sessions(srv, 2)
    sent = await _send(
        srv,
        {
            "from_session": a,
            "to_session": b,
            "type": "request",
            "subject": "Need code review",
            "body": "Can you review my Python changes?",
            "data": {"pr": 123},
        },
    )
    assert sent["message_id"] and sent["thread_id"] == sent["message_id"]
    assert sent["from_session"] == a and sent["to_session"] == b
    assert sent["delivered_to"] == [b] and sent["type"] == "request"
    assert sent["data"] == {"pr": 123} and sent["created_at"].endswith("Z")
    status, inbox = await srv.call("GET", f"/sessions/{b}/inbox")
    assert status == 200
    (got,) = inbox["messages"]
    assert got["message_id"] == sent["message_id"] and got["subject"] == "Need code review"
    assert got["data"] == {"pr": 123} and isinstance(got["seq"], int)
    _, events = await srv.call("GET", f"/sessions/{b}/events?type=message_received")
    assert [e["data"]["message_id"] for e in events["events"]] == [sent["message_id"]]
    _, sender_inbox = await srv.call("GET", f"/sessions/{a}/inbox")
    assert sender_inbox["messages"] == []


async def test_every_message_type_is_accepted_and_filters_the_inbox(srv):
    """All nine types are accepted; ?type= filters the inbox and ?after= pages it."""
    a, b = await _sessions(srv, 2)
    for type_ in MESSAGE_TYPES:
        await _send(srv, {"from_session": a, "to_session": b, "type": type_, "subject": type_})
    _, inbox = await srv.call("GET", f"/sessions/{b}/inbox")
    assert [m["type"] for m in inbox["messages"]] == list(MESSAGE_TYPES)
    for type_ in MESSAGE_TYPES:
        _, only = await srv.call("GET", f"/sessions/{b}/inbox", params={"type": type_})
        assert [m["subject"] for m in only["messages"]] == [type_]
    fourth = inbox["messages"][3]["seq"]
    _, later = await srv.call("GET", f"/sessions/{b}/inbox?after={fourth}")
    assert [m["type"] for m in later["messages"]] == list(MESSAGE_TYPES[4:])


async def test_replies_form_a_thread_in_order(srv):
    """A reply joins its thread, goes back to the sender by default; the thread is in order."""
    dev, planner = await _sessions(srv, 2)
    question = await _send(
        srv, {"from_session": dev, "to_session": planner, "type": "request", "body": "REST?"}
    )
    answer = await _send(
        srv,
        {
            "from_session": planner,
            "type": "response",
            "reply_to": question["message_id"],
            "body": "REST.",
        },
    )
    assert answer["to_session"] == dev and answer["thread_id"] == question["thread_id"]
    follow_up = await _send(
        srv,
        {"from_session": dev, "reply_to": answer["message_id"], "type": "sync", "body": "ok"},
    )
    assert follow_up["to_session"] == planner
    status, thread = await srv.call("GET", f"/hub/threads/{question['thread_id']}")
    assert status == 200
    assert [m["message_id"] for m in thread["messages"]] == [
        question["message_id"],
        answer["message_id"],
        follow_up["message_id"],
    ]
    assert [m["body"] for m in thread["messages"]] == ["REST?", "REST.", "ok"]
    _, dev_inbox = await srv.call("GET", f"/sessions/{dev}/inbox?type=response")
    assert [m["reply_to"] for m in dev_inbox["messages"]] == [question["message_id"]]


async def test_broadcast_reaches_every_open_session_of_the_user_and_nobody_else(srv):
    """A broadcast reaches the sender's user's other open sessions, not closed ones, not bob's."""
    a, b, c, closed = await _sessions(srv, 4)
    await srv.call("POST", f"/sessions/{closed}/close")
    bobs = await _sessions(srv, 2, key="kb")
    sent = await _send(
        srv, {"from_session": a, "type": "broadcast", "subject": "Deploy", "body": "in 5 min"}
    )
    assert sent["to_session"] is None and sent["type"] == "broadcast"
    assert sorted(sent["delivered_to"]) == sorted([b, c])
    for sid in (b, c):
        _, inbox = await srv.call("GET", f"/sessions/{sid}/inbox")
        assert [m["subject"] for m in inbox["messages"]] == ["Deploy"]
    for sid in (a, closed):
        _, inbox = await srv.call("GET", f"/sessions/{sid}/inbox")
        assert inbox["messages"] == []
    for sid in bobs:
        status, inbox = await srv.call("GET", f"/sessions/{sid}/inbox", key="kb")
        assert status == 200 and inbox["messages"] == []
        _, events = await srv.call("GET", f"/sessions/{sid}/events?type=message_received", key="kb")
        assert events["events"] == []
    # Without a type, a message with no recipient named is a broadcast too.
    plain = await _send(srv, {"from_session": b, "body": "hello all"})
    assert plain["type"] == "broadcast" and sorted(plain["delivered_to"]) == sorted([a, c])


async def test_message_received_shows_live_on_the_recipients_event_stream(srv):
    """The delivery event reaches an open SSE events stream of the recipient as it happens."""
    a, b = await _sessions(srv, 2)
    version = (await srv.get(b))["version"]
    url = f"{srv.url}/sessions/{b}/events/stream?after={version}"
    async with srv.client.get(url, headers=srv.headers()) as resp:
        assert resp.status == 200  # subscribed: the stream is open before the message
        sent = await _send(
            srv, {"from_session": a, "to_session": b, "type": "ping", "subject": "are you there?"}
        )

        async def first():
            async for message in read_sse(resp):
                return message

        message = await asyncio.wait_for(first(), 10)
    assert message.data["type"] == "message_received"
    assert message.id == str(message.data["seq"]) and int(message.id) == version + 1
    assert message.data["data"]["message_id"] == sent["message_id"]
    assert message.data["data"]["subject"] == "are you there?"
    assert not any(line.startswith("event:") for line in message.lines)


async def test_handoff_carries_data_and_the_receiver_reads_the_senders_memory(srv):
    """A handoff's data arrives; the receiver reads what the sender put in shared memory."""
    dev, reviewer = await _sessions(srv, 2)
    status, _ = await srv.call(
        "PUT",
        "/memory/deploy_state",
        {"session_id": dev, "value": {"stage": "testing"}, "type": "task"},
    )
    assert status == 200
    await _send(
        srv,
        {
            "from_session": dev,
            "to_session": reviewer,
            "type": "handoff",
            "data": {"task": "deploy-prod", "stage": "testing"},
        },
    )
    _, inbox = await srv.call("GET", f"/sessions/{reviewer}/inbox?type=handoff")
    assert inbox["messages"][0]["data"] == {"task": "deploy-prod", "stage": "testing"}
    status, state = await srv.call("GET", f"/memory/deploy_state?session_id={reviewer}")
    assert status == 200 and state["value"] == {"stage": "testing"}
    assert state["session_id"] == dev


async def test_message_errors(srv):
    """Unknown and foreign sessions are 404; bad types and fields 400; closed recipients 409."""
    a, b = await _sessions(srv, 2)
    (bob,) = await _sessions(srv, 1, key="kb")
    cases = [
        ({"from_session": a, "to_session": "nope"}, 404, "session_not_found"),
        ({"from_session": "nope", "to_session": a}, 404, "session_not_found"),
        ({"from_session": a, "to_session": bob}, 404, "session_not_found"),
        ({"from_session": bob, "to_session": a}, 404, "session_not_found"),
        ({"from_session": a, "to_session": b, "type": "shout"}, 400, "invalid_request"),
        ({"from_session": a, "to_session": b, "type": 3}, 400, "invalid_request"),
        ({"from_session": a, "to_session": b, "data": [1]}, 400, "invalid_request"),
        ({"from_session": a, "to_session": b, "subject": {"x": 1}}, 400, "invalid_request"),
        ({"from_session": a, "to_session": 7}, 400, "invalid_request"),
        ({"from_session": 7, "to_session": b}, 400, "invalid_request"),
        ({"to_session": b}, 400, "invalid_request"),
        ({"from_session": a, "reply_to": "msg-unknown"}, 404, "not_found"),
    ]
    for body, status, code in cases:
        err = await _send(srv, body, status=status)
        assert err["error"]["code"] == code, body
    for raw in ("[1, 2]", "not json", ""):
        status, err = await srv.call("POST", "/hub/messages", data=raw, headers=_json())
        assert status == 400 and err["error"]["code"] == "invalid_request", raw
    await srv.call("POST", f"/sessions/{b}/close")
    err = await _send(srv, {"from_session": a, "to_session": b}, status=409)
    assert err["error"]["code"] == "session_closed"
    err = await _send(srv, {"from_session": b, "to_session": a}, status=409)
    assert err["error"]["code"] == "session_closed"
    # A reply to bob's message is as unknown to alice as a message that does not exist.
    (bob2,) = await _sessions(srv, 1, key="kb")
    bobs = await _send(srv, {"from_session": bob, "to_session": bob2}, key="kb")
    err = await _send(srv, {"from_session": a, "reply_to": bobs["message_id"]}, status=404)
    assert err["error"]["code"] == "not_found"
    _, inbox = await srv.call("GET", f"/sessions/{a}/inbox")
    assert inbox["messages"] == []


def _json():
    return {"Content-Type": "application/json"}


async def test_inbox_and_thread_errors(srv):
    """Inbox: unknown/foreign session 404, bad type/after 400; thread: foreign or unknown 404."""
    a, b = await _sessions(srv, 2)
    (bob,) = await _sessions(srv, 1, key="kb")
    sent = await _send(srv, {"from_session": a, "to_session": b, "type": "request"})
    for path, status, field in [
        ("/sessions/nope/inbox", 404, None),
        (f"/sessions/{bob}/inbox", 404, None),
        (f"/sessions/{b}/inbox?type=shout", 400, "type"),
        (f"/sessions/{b}/inbox?after=x", 400, "after"),
        (f"/sessions/{b}/inbox?after=-1", 400, "after"),
        ("/hub/threads/msg-unknown", 404, None),
    ]:
        got, err = await srv.call("GET", path)
        assert got == status, (path, err)
        if field:
            assert err["error"]["details"]["field"] == field
    status, err = await srv.call("GET", f"/hub/threads/{sent['thread_id']}", key="kb")
    assert status == 404 and err["error"]["code"] == "not_found"
    status, thread = await srv.call("GET", f"/hub/threads/{sent['thread_id']}", key="kop")
    assert status == 200 and len(thread["messages"]) == 1
    status, err = await srv.call("GET", f"/sessions/{b}/inbox", key="nokey")
    assert status == 401 and err["error"]["code"] == "unauthorized"
    async with srv.client.get(f"{srv.url}/sessions/{b}/inbox") as resp:
        assert resp.status == 401
    status, err = await srv.call("POST", "/hub/messages", {"from_session": a}, key="nokey")
    assert status == 401
    status, err = await srv.call("DELETE", "/hub/messages")
    assert status == 405 and err["error"]["code"] == "method_not_allowed"


async def test_hub_stats_per_user(srv):
    """GET /hub/stats: the caller's sessions by status, messages and memory; an operator's
    view of everyone, or of one user."""
    a, b, c = await _sessions(srv, 3)
    await srv.call("PATCH", f"/sessions/{b}", {"status": "working", "current_task": "t"})
    await srv.call("POST", f"/sessions/{c}/close")
    await _sessions(srv, 1, key="kb")
    await _send(srv, {"from_session": a, "to_session": b})
    await srv.call("PUT", "/memory/k", {"session_id": a, "value": 1, "type": "fact"})
    await srv.call("PUT", "/memory/k", {"session_id": a, "value": 2, "type": "fact"})
    status, stats = await srv.call("GET", "/hub/stats")
    assert status == 200
    assert stats["user_id"] == "alice"
    assert stats["sessions"] == {
        "total": 3,
        "by_status": {"active": 1, "working": 1, "closed": 1},
    }
    assert stats["messages"] == 1
    assert stats["memory"]["entries"] == 1 and stats["memory"]["writes"] == 2
    assert stats["memory"]["by_type"] == {"fact": 1}
    _, bobs = await srv.call("GET", "/hub/stats?user_id=alice", key="kb")
    assert bobs["user_id"] == "bob" and bobs["sessions"]["total"] == 1 and bobs["messages"] == 0
    _, everyone = await srv.call("GET", "/hub/stats", key="kop")
    assert everyone["user_id"] is None and everyone["sessions"]["total"] == 4
    _, one = await srv.call("GET", "/hub/stats?user_id=alice", key="kop")
    assert one["sessions"]["total"] == 3 and one["memory"]["entries"] == 1


async def test_registry_fields_filters_heartbeat_and_status(srv):
    """Sessions carry agent_name/type/capabilities; list filters by status and capability;
    heartbeat refreshes activity; PATCH sets working/idle with current_task."""
    reviewer = await srv.create(
        agent_name="Reviewer", agent_type="Claude", capabilities=["python", "review"]
    )
    await srv.create(agent_name="Dev", agent_type="GPT-4", capabilities=["python"])
    await srv.create(key="kb", agent_name="Other", capabilities=["review"])
    _, found = await srv.call("GET", "/sessions?capability=review")
    assert [s["agent_name"] for s in found["sessions"]] == ["Reviewer"]
    _, found = await srv.call("GET", "/sessions?capability=python")
    assert found["total"] == 2
    sid = reviewer["session_id"]
    status, patched = await srv.call(
        "PATCH", f"/sessions/{sid}", {"status": "working", "current_task": "Code review"}
    )
    assert status == 200 and patched["current_task"] == "Code review"
    _, working = await srv.call("GET", "/sessions?status=working&capability=review")
    assert [s["session_id"] for s in working["sessions"]] == [sid]
    status, beat = await srv.call("POST", f"/sessions/{sid}/heartbeat")
    assert status == 200 and beat["last_activity_at"] >= patched["last_activity_at"]
    assert beat["status"] == "working"
    status, _ = await srv.call("PATCH", f"/sessions/{sid}", {"status": "paused"})
    assert status == 400


async def test_everything_is_back_after_a_restart(tmp_path):
    """On the same SQLite file: inboxes, threads, memory with history (and deletes) and
    collaboration transcripts all come back from the log."""
    url = f"sqlite:///{tmp_path}/events.db"
    team = {"agents": [{"name": "writer", "role": "draft"}, {"name": "editor", "role": "edit"}]}

    async def snapshot(srv, a, b, thread_id, cid):
        out = {}
        for name, path in [
            ("inbox_a", f"/sessions/{a}/inbox"),
            ("inbox_b", f"/sessions/{b}/inbox"),
            ("thread", f"/hub/threads/{thread_id}"),
            ("plan", "/memory/plan"),
            ("plan_history", "/memory/plan/history"),
            ("gone_history", "/memory/gone/history"),
            ("search", "/memory"),
            ("collaboration", f"/collaborations/{cid}?session_id={a}"),
            ("session_a", f"/sessions/{a}"),
            ("stats", "/hub/stats"),
        ]:
            status, body = await srv.call("GET", path)
            assert status == 200, (name, body)
            out[name] = body
        status, _ = await srv.call("GET", "/memory/gone")
        out["gone_status"] = status
        return out

    async with running_server(eventlog=url, api_keys=KEYS, default_key="ka") as srv:
        a, b = await _sessions(srv, 2)
        sent = await _send(srv, {"from_session": a, "to_session": b, "type": "request"})
        await _send(srv, {"from_session": b, "reply_to": sent["message_id"], "type": "response"})
        await _send(srv, {"from_session": a, "type": "broadcast", "body": "all"})
        for value in (1, 2, 3):
            await srv.call("PUT", "/memory/plan", {"session_id": a, "value": value})
        await srv.call("PUT", "/memory/gone", {"session_id": b, "value": "x"})
        await srv.call("DELETE", "/memory/gone")
        status, started = await srv.call(
            "POST", "/collaborations", {"session_id": a, "team": team, "task": "write"}
        )
        assert status == 202
        cid = started["collaboration_id"]
        await srv.hub.wait_collaboration(cid)
        before = await snapshot(srv, a, b, sent["thread_id"], cid)
    assert before["collaboration"]["status"] == "completed"
    assert [e["value"] for e in before["plan_history"]["entries"]] == [1, 2, 3]
    assert before["gone_status"] == 404 and len(before["inbox_b"]["messages"]) == 2
    async with running_server(eventlog=url, api_keys=KEYS, default_key="ka") as srv:
        after = await snapshot(srv, a, b, sent["thread_id"], cid)
        # The hub goes on from where it was: new versions and replies continue.
        status, entry = await srv.call("PUT", "/memory/plan", {"session_id": a, "value": 4})
        assert status == 200 and entry["version"] == 4
        more = await _send(srv, {"from_session": b, "reply_to": sent["message_id"]})
        assert more["thread_id"] == sent["thread_id"] and more["to_session"] == a
    assert after == before
