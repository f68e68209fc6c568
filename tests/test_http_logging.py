"""Request logging over HTTP: one line per request carrying that request's context only."""

from __future__ import annotations

import io
import json
import logging

import aiohttp
import structlog

import sessionhub.logging as sessionhub_logging
from sessionhub.logging import configure_logging
from tests.http_helpers import running_server


def _request_lines(stream: io.StringIO) -> list[dict]:
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    return [line for line in lines if line.get("event") == "request"]


async def test_each_request_line_carries_its_own_context_and_nothing_leaks():
    """On one keep-alive connection, each request's line has its own command, request id
    and session id; a later request without a session id has none; nothing stays bound."""
    stream = io.StringIO()
    try:
        configure_logging("info", "json", stream, force=True)
        # Nothing cached in module-level loggers past this test.
        structlog.configure(cache_logger_on_first_use=False)
        opened: list[int] = []
        trace = aiohttp.TraceConfig()

        async def on_create(*_: object) -> None:
            opened.append(1)

        trace.on_connection_create_end.append(on_create)
        async with (
            running_server() as srv,
            aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=1), trace_configs=[trace]
            ) as client,
        ):
            async with client.post(f"{srv.url}/sessions", json={}) as resp:
                sid = (await resp.json())["session_id"]
            async with client.get(
                f"{srv.url}/sessions/{sid}", headers={"X-Request-Id": "given-id"}
            ) as resp:
                assert resp.status == 200
                assert resp.headers["X-Request-Id"] == "given-id"
            async with client.get(f"{srv.url}/sessions") as resp:
                assert resp.status == 200
                listed_id = resp.headers["X-Request-Id"]
            async with client.get(f"{srv.url}/nope") as resp:
                assert resp.status == 404
            assert opened == [1]  # one connection, kept alive for every request
        structlog.get_logger("test").info("after")
        lines = _request_lines(stream)
        create, get, listing, missing = lines
        assert create["command"] == "session.create" and "session_id" not in create
        assert get["command"] == "session.get" and get["session_id"] == sid
        assert get["command_id"] == "given-id" and get["transport"] == "http"
        assert get["status"] == 200 and get["path"] == f"/sessions/{sid}"
        assert listing["command"] == "session.list" and listing["command_id"] == listed_id
        assert "session_id" not in listing
        assert missing["status"] == 404 and "command" not in missing
        assert "session_id" not in missing
        after = json.loads(stream.getvalue().splitlines()[-1])
        assert after["event"] == "after"
        assert not {"command_id", "command", "session_id", "transport"} & set(after)
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers.clear()
        sessionhub_logging._configured = False


async def test_no_access_log_drops_request_lines_but_not_errors(monkeypatch):
    """With access_log off there is no line per request; a failing handler is still logged."""
    stream = io.StringIO()
    try:
        configure_logging("info", "json", stream, force=True)
        structlog.configure(cache_logger_on_first_use=False)
        async with running_server(access_log=False) as srv, aiohttp.ClientSession() as client:
            async with client.post(f"{srv.url}/sessions", json={}) as resp:
                sid = (await resp.json())["session_id"]

            async def broken(*_: object, **__: object) -> None:
                raise RuntimeError("boom")

            monkeypatch.setattr(srv.hub, "get_session", broken)
            async with client.get(f"{srv.url}/sessions/{sid}") as resp:
                assert resp.status == 500
        lines = [json.loads(line) for line in stream.getvalue().splitlines()]
        assert not [line for line in lines if line.get("event") == "request"]
        failed = [line for line in lines if line.get("event") == "command_failed"]
        assert len(failed) == 1 and failed[0]["session_id"] == sid
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers.clear()
        sessionhub_logging._configured = False
