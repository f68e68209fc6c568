"""The transport-neutral command layer, driven without HTTP (as the NATS transport will)."""

from __future__ import annotations

import asyncio

import pytest

from actors.hub import Caller, Hub
from eventlog import open_eventlog
from tests.test_nats_commands import API_COMMANDS
from transports.commands import COMMANDS, execute

OPERATOR = Caller(None, "nats")


@pytest.fixture
async def hub():
    log = open_eventlog("memory://")
    async with Hub.running(log) as h:
        yield h
    log.close()


async def call(hub, name, payload, caller=OPERATOR):
    return await execute(name, hub, caller, payload, transport="nats")


def test_every_nats_command_is_in_the_table():
    """COMMANDS has every NATS command name of API.md."""
    assert set(API_COMMANDS) <= set(COMMANDS)


async def test_payload_is_body_plus_path_ids(hub):
    """A payload carries the body and the path ids; context.set carries value."""
    status, s = await call(hub, "session.create", {"name": "n", "idempotency_key": "k1"})
    assert status == 201
    sid = s["session_id"]
    status, again = await call(hub, "session.create", {"name": "n", "idempotency_key": "k1"})
    assert again["session_id"] == sid
    status, body = await call(hub, "context.set", {"session_id": sid, "key": "k", "value": [1, 2]})
    assert status == 200 and body["value"] == [1, 2]
    status, body = await call(hub, "context.get", {"session_id": sid, "key": "k"})
    assert body == {"key": "k", "value": [1, 2]}
    status, err = await call(hub, "context.set", {"session_id": sid, "key": "k"})
    assert status == 400 and err["error"]["details"]["field"] == "value"
    status, body = await call(
        hub, "session.update", {"session_id": sid, "tags": ["a"], "if_match": 2}
    )
    assert status == 200 and body["tags"] == ["a"]
    status, err = await call(hub, "session.update", {"session_id": sid, "tags": [], "if_match": 1})
    assert status == 409 and err["error"]["code"] == "version_conflict"
    status, body = await call(hub, "session.get", {"session_id": sid, "at": 1})
    assert status == 200 and body["version"] == 1
    status, body = await call(hub, "session.list", {"limit": 10, "tag": "a"})
    assert status == 200 and body["total"] == 1
    status, err = await call(hub, "session.list", {"limit": [1]})
    assert status == 400 and err["error"]["details"]["field"] == "limit"
    status, body = await call(hub, "events.read", {"session_id": sid, "after": 1, "limit": 1})
    assert [e["seq"] for e in body["events"]] == [2]
    status, chat = await call(hub, "chat.create", {"session_id": sid, "name": "c"})
    assert status == 201
    status, _ = await call(hub, "chat.switch", {"session_id": sid, "chat_id": chat["chat_id"]})
    assert status == 200
    status, body = await call(hub, "session.delete", {"session_id": sid, "purge": True})
    assert status == 200 and body["success"] is True


async def test_run_and_stream_run(hub):
    """run waits for the answer; with stream true it answers 202 with the turn id."""
    _, s = await call(hub, "session.create", {})
    sid = s["session_id"]
    status, body = await call(hub, "run", {"session_id": sid, "message": "hi"})
    assert status == 200 and body["message"]["content"] == "Echo: hi"
    status, body = await call(hub, "run", {"session_id": sid, "message": "x", "stream": True})
    assert status == 202 and body["turn_id"]
    for _ in range(200):
        _, msgs = await call(hub, "messages.list", {"session_id": sid})
        if len(msgs["messages"]) == 4:
            break
        await asyncio.sleep(0.01)
    assert msgs["messages"][-1]["content"] == "Echo: x (turn 2)"


@pytest.mark.parametrize(
    "name,payload,status,field",
    [
        ("session.get", {}, 400, "session_id"),
        ("session.get", {"session_id": 5}, 400, "session_id"),
        ("session.get", {"session_id": "s", "at": "x"}, 400, "at"),
        ("session.get", {"session_id": "s", "at": True}, 400, "at"),
        ("session.delete", {"session_id": "s", "purge": "perhaps"}, 400, "purge"),
        ("session.update", {"session_id": "s", "if_match": "W/x"}, 400, "if_match"),
        ("session.update", {"session_id": "s", "if_match": True}, 400, "if_match"),
        ("context.get", {"session_id": "s"}, 400, "key"),
        ("context.op", {"session_id": "s", "operation": "x"}, 400, "operation"),
        ("chat.switch", {"session_id": "s"}, 400, "chat_id"),
        ("run", {"session_id": "s", "message": "m", "stream": "yes"}, 400, "stream"),
        ("session.create", {"idempotency_key": 5}, 400, "idempotency_key"),
    ],
)
async def test_bad_payloads_are_400(hub, name, payload, status, field):
    """Bad payload fields are 400 naming the field, before anything happens."""
    got, body = await call(hub, name, payload)
    assert got == status, body
    assert body["error"]["details"]["field"] == field


async def test_unknown_command_and_non_object_payload(hub):
    """An unknown command is 404 not_found; a payload that is not an object is 400."""
    status, body = await call(hub, "no.such", {})
    assert status == 404 and body["error"]["code"] == "not_found"
    status, body = await call(hub, "session.get", [1])
    assert status == 400 and body["error"]["code"] == "invalid_request"


async def test_a_bug_is_500_in_the_error_shape(hub, monkeypatch):
    """An unexpected exception in the hub is a 500 internal_error body, not a crash."""

    async def broken(*args, **kwargs):
        raise RuntimeError("bug")

    monkeypatch.setattr(hub, "context_list", broken)
    status, body = await call(hub, "context.list", {"session_id": "s"})
    assert status == 500 and body["error"]["code"] == "internal_error"
