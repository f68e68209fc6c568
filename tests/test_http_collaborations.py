"""Collaborations over HTTP: start (202), status and transcript, team files, SSE stream."""

from __future__ import annotations

import asyncio

import pytest

from actors.config import HubConfig
from tests.http_helpers import running_server

KEYS = {"ka": "alice", "kb": "bob"}
DUO = {
    "agents": [
        {"name": "writer", "role": "Write the first draft", "agent": {"kind": "echo"}},
        {"name": "editor", "role": "Tighten the draft"},
    ],
    "strategy": "round_robin",
    "max_rounds": 2,
}


@pytest.fixture
async def srv(tmp_path):
    teams = tmp_path / "teams"
    (teams / "nested").mkdir(parents=True)
    (teams / "review.yaml").write_text(
        "agents:\n"
        "  - {name: planner, role: plan}\n"
        "  - {name: checker, role: compute, agent: {kind: calculator}}\n"
        "strategy: pipeline\nmax_rounds: 1\n"
    )
    (teams / "nested" / "solo.yml").write_text("team:\n  agents: [{name: solo, role: all}]\n")
    (teams / "broken.yaml").write_text("agents: [unclosed\n")
    (teams / "empty.yaml").write_text("agents: []\n")
    (tmp_path / "outside.yaml").write_text("agents: [{name: x, role: y}]\n")
    config = HubConfig(teams_dir=str(teams), sweep_interval_s=0)
    async with running_server(hub_config=config, api_keys=KEYS, default_key="ka") as server:
        yield server


async def _start(srv, body, key="ka", status=202):
    got, out = await srv.call("POST", "/collaborations", body, key=key)
    assert got == status, (body, got, out)
    return out


async def _wait(srv, cid, sid, key="ka"):
    """Poll GET /collaborations/{id} until it is no longer running (with a deadline)."""
    deadline = asyncio.get_running_loop().time() + 20
    while True:
        status, got = await srv.call("GET", f"/collaborations/{cid}?session_id={sid}", key=key)
        assert status == 200, got
        if got["status"] != "running":
            return got
        assert asyncio.get_running_loop().time() < deadline, got
        await asyncio.sleep(0.02)


async def test_round_robin_runs_in_the_background_and_reads_back(srv):
    """POST answers 202 running; GET shows completed with each agent's turn in order, and
    every step is an event in the session's log."""
    sid = (await srv.create())["session_id"]
    started = await _start(
        srv,
        {
            "session_id": sid,
            "team": DUO,
            "task": "Write a blog post about AI collaboration",
            "context": {"style": "professional"},
        },
    )
    assert started["status"] == "running" and started["session_id"] == sid
    cid = started["collaboration_id"]
    got = await _wait(srv, cid, sid)
    assert got["status"] == "completed" and got["collaboration_id"] == cid
    transcript = got["transcript"]
    assert [(t["step"], t["round"], t["agent"]) for t in transcript] == [
        (1, 1, "writer"),
        (2, 1, "editor"),
        (3, 2, "writer"),
        (4, 2, "editor"),
    ]
    assert all(t["output"].startswith("Echo:") for t in transcript)
    assert "Write a blog post about AI collaboration" in transcript[0]["input"]
    assert "professional" in transcript[0]["input"]
    assert "writer (Write the first draft)" in transcript[1]["input"]
    assert got["result"] == transcript[-1]["output"]
    session = await srv.get(sid)
    assert session["total_collaborations"] == 1
    _, events = await srv.call("GET", f"/sessions/{sid}/events")
    types = [e["type"] for e in events["events"]]
    assert types.count("collaboration_started") == 1
    assert types.count("collaboration_step") == 4
    assert types[-1] == "collaboration_completed"


async def test_team_file_pipeline_and_nested_file(srv):
    """A team file under the teams folder runs; a pipeline passes each output on."""
    sid = (await srv.create())["session_id"]
    started = await _start(
        srv, {"session_id": sid, "team_config_path": "review.yaml", "task": "What is 6*7?"}
    )
    got = await _wait(srv, started["collaboration_id"], sid)
    assert got["status"] == "completed"
    assert [t["agent"] for t in got["transcript"]] == ["planner", "checker"]
    assert "Input from planner" in got["transcript"][1]["input"]
    assert "42" in got["result"]
    assert got["team"]["strategy"] == "pipeline"
    started = await _start(
        srv, {"session_id": sid, "team_config_path": "nested/solo.yml", "task": "t"}
    )
    got = await _wait(srv, started["collaboration_id"], sid)
    assert [t["agent"] for t in got["transcript"]] == ["solo"]
    assert (await srv.get(sid))["total_collaborations"] == 2


async def test_team_paths_that_leave_the_folder_and_bad_teams_are_refused(srv):
    """400 for paths outside the teams folder, missing or broken files and invalid teams."""
    sid = (await srv.create())["session_id"]
    for path in (
        "../outside.yaml",
        "nested/../../outside.yaml",
        "/etc/passwd",
        "missing.yaml",
        "broken.yaml",
        "empty.yaml",
        "nested",
        "",
        5,
    ):
        err = await _start(
            srv, {"session_id": sid, "team_config_path": path, "task": "x"}, status=400
        )
        assert err["error"]["code"] == "invalid_request", path
    for team, field in [
        ("x", "team"),
        (None, "team"),
        ({"agents": []}, "team.agents"),
        ({"agents": "a"}, "team.agents"),
        ({"agents": [{"role": "no name"}]}, "team.agents[0]"),
        ({"agents": ["x"]}, "team.agents[0]"),
        ({"agents": [{"name": "a", "agent": {"kind": "nope"}}]}, "team.agents[0].agent"),
        ({"agents": [{"name": "a", "agent": {"kind": "none"}}]}, "team.agents[0].agent"),
        ({"agents": [{"name": "a"}], "strategy": "chaos"}, "team.strategy"),
        ({"agents": [{"name": "a"}], "max_rounds": 0}, "team.max_rounds"),
        ({"agents": [{"name": "a"}], "max_rounds": 21}, "team.max_rounds"),
        ({"agents": [{"name": "a"}], "max_rounds": "2"}, "team.max_rounds"),
        ({"agents": [{"name": f"a{i}"} for i in range(17)]}, "team.agents"),
    ]:
        err = await _start(srv, {"session_id": sid, "team": team, "task": "x"}, status=400)
        assert err["error"]["details"]["field"] == field, team
    for body, field in [
        ({"session_id": sid, "team": DUO}, "task"),
        ({"session_id": sid, "team": DUO, "task": 5}, "task"),
        ({"team": DUO, "task": "x"}, "session_id"),
        ({"session_id": 5, "team": DUO, "task": "x"}, "session_id"),
    ]:
        err = await _start(srv, body, status=400)
        assert err["error"]["details"]["field"] == field, body
    assert (await srv.get(sid))["total_collaborations"] == 0


async def test_without_a_teams_folder_team_files_are_refused():
    """A server started without --teams-dir refuses team_config_path with 400."""
    async with running_server() as srv:
        sid = (await srv.create())["session_id"]
        status, err = await srv.call(
            "POST",
            "/collaborations",
            {"session_id": sid, "team_config_path": "review.yaml", "task": "x"},
        )
        assert status == 400 and err["error"]["details"]["field"] == "team_config_path"


async def test_sessions_and_ids_errors(srv):
    """Unknown or foreign sessions 404, closed ones 409; a collaboration is read through its
    own session only; session_id is required."""
    sid = (await srv.create())["session_id"]
    other = (await srv.create())["session_id"]
    bobs = (await srv.create(key="kb"))["session_id"]
    closed = (await srv.create())["session_id"]
    await srv.call("POST", f"/sessions/{closed}/close")
    body = {"team": DUO, "task": "x"}
    err = await _start(srv, {"session_id": "nope", **body}, status=404)
    assert err["error"]["code"] == "session_not_found"
    err = await _start(srv, {"session_id": bobs, **body}, status=404)
    assert err["error"]["code"] == "session_not_found"
    err = await _start(srv, {"session_id": closed, **body}, status=409)
    assert err["error"]["code"] == "session_closed"
    started = await _start(srv, {"session_id": sid, **body})
    cid = started["collaboration_id"]
    await _wait(srv, cid, sid)
    for path, key, status, code in [
        (f"/collaborations/{cid}?session_id={bobs}", "ka", 404, "session_not_found"),
        (f"/collaborations/{cid}?session_id={sid}", "kb", 404, "session_not_found"),
        (f"/collaborations/{cid}?session_id={other}", "ka", 404, "not_found"),
        (f"/collaborations/collab-unknown?session_id={sid}", "ka", 404, "not_found"),
        (f"/collaborations/{cid}?session_id=nope", "ka", 404, "session_not_found"),
        (f"/collaborations/{cid}", "ka", 400, "invalid_request"),
        (f"/collaborations/{cid}", "nokey", 401, "unauthorized"),
    ]:
        got, err = await srv.call("GET", path, key=key)
        assert got == status and err["error"]["code"] == code, (path, key, err)
    for raw in ("[1]", "nope", ""):
        status, err = await srv.call(
            "POST", "/collaborations", data=raw, headers={"Content-Type": "application/json"}
        )
        assert status == 400, raw
    status, _ = await srv.call("DELETE", f"/collaborations/{cid}")
    assert status == 405


async def test_stream_sends_each_agents_turn_as_data_lines_only(srv):
    """POST /collaborations/stream: SSE of data: lines only (no id:, no event:), each agent's
    start, chunks and end, then the end; the run is recorded like any other."""
    sid = (await srv.create())["session_id"]
    messages = await srv.sse(
        "POST",
        "/collaborations/stream",
        {"session_id": sid, "team": DUO, "task": "Write a haiku about coding"},
        until="collaboration_end",
    )
    for message in messages:
        assert message.id is None
        assert all(line.startswith("data: ") for line in message.lines), message.lines
    payloads = [m.data for m in messages]
    types = [p["type"] for p in payloads]
    assert types[0] == "collaboration_start" and types[-1] == "collaboration_end"
    assert types.count("agent_start") == 4 and types.count("agent_end") == 4
    assert "stream_chunk" in types
    cid = payloads[0]["data"]["collaboration_id"]
    ends = [p["data"] for p in payloads if p["type"] == "agent_end"]
    assert [e["agent"] for e in ends] == ["writer", "editor", "writer", "editor"]
    chunks = [
        p["data"]["content"]
        for p in payloads[: types.index("agent_end")]
        if p["type"] == "stream_chunk"
    ]
    assert "".join(chunks) == ends[0]["output"]
    end = payloads[-1]["data"]
    assert end["status"] == "completed" and end["collaboration_id"] == cid
    got = await _wait(srv, cid, sid)
    assert got["status"] == "completed" and len(got["transcript"]) == 4
    assert [t["output"] for t in got["transcript"]] == [e["output"] for e in ends]


async def test_stream_refusals_are_json_before_any_stream(srv):
    """A refused stream answers the API's JSON error with its status, not an SSE body."""
    sid = (await srv.create())["session_id"]
    bobs = (await srv.create(key="kb"))["session_id"]
    for body, status in [
        ({"session_id": "nope", "team": DUO, "task": "x"}, 404),
        ({"session_id": bobs, "team": DUO, "task": "x"}, 404),
        ({"session_id": sid, "team": {"agents": []}, "task": "x"}, 400),
        ({"session_id": sid, "team_config_path": "../outside.yaml", "task": "x"}, 400),
        ({"session_id": sid, "team": DUO}, 400),
    ]:
        async with srv.client.post(
            f"{srv.url}/collaborations/stream", json=body, headers=srv.headers()
        ) as resp:
            assert resp.status == status, body
            assert resp.headers["Content-Type"].startswith("application/json")
            err = await resp.json()
            assert set(err["error"]) == {"code", "message", "details"}
    status, _ = await srv.call("POST", "/collaborations/stream", data="[]")
    assert status == 400
    async with srv.client.post(f"{srv.url}/collaborations/stream", json={}) as resp:
        assert resp.status == 401
    assert (await srv.get(sid))["total_collaborations"] == 0


async def test_a_client_that_leaves_the_stream_does_not_stop_the_collaboration(srv):
    """Reading one message and leaving: the collaboration runs to its end and is recorded."""
    sid = (await srv.create())["session_id"]
    first = await srv.sse(
        "POST",
        "/collaborations/stream",
        {"session_id": sid, "team": DUO, "task": "keep going"},
        limit=1,
    )
    cid = first[0].data["data"]["collaboration_id"]
    got = await _wait(srv, cid, sid)
    assert got["status"] == "completed" and len(got["transcript"]) == 4
