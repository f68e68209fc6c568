"""Operations: /health, /metrics, and /openapi.json matching the served routes both ways."""

from __future__ import annotations

import re

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.http_helpers import running_server
from transports.http.routes import ROUTES
from transports.metrics import METRIC_NAMES


@pytest.fixture
async def srv():
    async with running_server() as server:
        yield server


async def test_health(srv):
    """GET /health has status, version, uptime, sessions, eventlog and nats."""
    await srv.create()
    status, body = await srv.call("GET", "/health")
    assert status == 200
    assert body["status"] == "ok"
    assert isinstance(body["version"], str) and body["uptime_s"] >= 0
    assert body["sessions"]["active"] == 1 and "live_actors" in body["sessions"]
    assert body["eventlog"]["backend"] == "memory" and body["eventlog"]["events"] >= 1
    assert body["nats"] is None


async def test_metrics_exposes_the_transport_metrics(srv):
    """GET /metrics is Prometheus text with the command, latency and subscriber metrics."""
    sid = (await srv.create())["session_id"]
    await srv.call("GET", f"/sessions/{sid}")
    await srv.call("GET", "/sessions/nope")
    async with srv.client.get(srv.url + "/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in METRIC_NAMES:
        base = name[: -len("_total")] if name.endswith("_total") else name
        assert base in families, name
    commands = families["sessionhub_commands"]
    labels = {
        (s.labels["command"], s.labels["transport"], s.labels["outcome"])
        for s in commands.samples
        if s.name == "sessionhub_commands_total"
    }
    assert ("session.create", "http", "ok") in labels
    assert ("session.get", "http", "session_not_found") in labels
    assert "sessionhub_command_duration_seconds_bucket" in text
    for name in ("sessionhub_live_actors", "sessionhub_turn_seconds"):
        assert name in text, name


def _router_routes(app):
    out = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("formatter") or info.get("path")
        out.add((route.method, path))
    return out


async def test_openapi_matches_the_routes_both_ways(srv):
    """Every served route is in openapi.json and every documented operation is served."""
    status, doc = await srv.call("GET", "/openapi.json")
    assert status == 200
    assert doc["openapi"].startswith("3.")
    documented = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    served = _router_routes(srv.app)
    assert documented == served
    assert documented == {(r.method, r.path) for r in ROUTES}


async def test_openapi_documents_parameters_and_errors(srv):
    """Each operation lists its path parameters, its query/header ones and its errors."""
    _, doc = await srv.call("GET", "/openapi.json")
    schemas = doc["components"]["schemas"]
    responses = doc["components"]["responses"]
    for path, ops in doc["paths"].items():
        names = set(re.findall(r"{(\w+)}", path))
        for method, op in ops.items():
            params = {(p["name"], p["in"]) for p in op["parameters"]}
            assert {(n, "path") for n in names} <= params, (method, path)
            assert op["operationId"] and op["responses"]
            for code, response in op["responses"].items():
                ref = response.get("$ref")
                if ref:
                    assert ref.split("/")[-1] in responses
                    assert int(code) >= 400
            if path not in ("/health", "/metrics"):
                assert "401" in op["responses"], (method, path)
            if "{session_id}" in path and "ws" not in path:
                assert "404" in op["responses"], (method, path)
            body = op.get("requestBody")
            if body:
                ref = body["content"]["application/json"]["schema"]["$ref"]
                assert ref.split("/")[-1] in schemas
    patch = doc["paths"]["/sessions/{session_id}"]["patch"]
    assert ("If-Match", "header") in {(p["name"], p["in"]) for p in patch["parameters"]}
    create = doc["paths"]["/sessions"]["post"]
    assert "Idempotency-Key" in {p["name"] for p in create["parameters"]}
    stream = doc["paths"]["/sessions/{session_id}/events/stream"]["get"]
    assert "Last-Event-ID" in {p["name"] for p in stream["parameters"]}
    listing = doc["paths"]["/sessions"]["get"]
    assert {p["name"] for p in listing["parameters"]} >= {
        "user_id",
        "status",
        "tag",
        "capability",
        "agent_type",
        "limit",
        "cursor",
    }
    for status in ("400", "401", "404", "405", "409", "413", "429", "503"):
        assert f"E{status}" in responses
    for ref in _refs(doc):
        assert ref.split("/")[-1] in schemas or ref.split("/")[-1] in responses, ref


def _refs(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)
