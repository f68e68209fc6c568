"""Prometheus metrics of the transports (HTTP, SSE, WebSocket and NATS).

They live in prometheus-client's default registry, next to the metrics of the session
layer, so ``GET /metrics`` exposes everything with one ``generate_latest()``. Labels are
bounded: ``command`` is a name of :data:`transports.commands.COMMANDS`, ``transport`` is
``http``, ``ws`` or ``nats``, and ``outcome`` is ``ok`` or the API error code.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "COMMANDS_TOTAL",
    "COMMAND_LATENCY",
    "HTTP_REQUESTS_TOTAL",
    "METRIC_NAMES",
    "SSE_SUBSCRIBERS",
    "WS_SUBSCRIBERS",
]

COMMANDS_TOTAL = Counter(
    "sessionhub_commands_total",
    "Commands handled, by command type, transport and outcome (ok or the error code).",
    ["command", "transport", "outcome"],
)

COMMAND_LATENCY = Histogram(
    "sessionhub_command_duration_seconds",
    "Time from receiving a command to its reply, by command type and transport.",
    ["command", "transport"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)

HTTP_REQUESTS_TOTAL = Counter(
    "sessionhub_http_requests_total",
    "HTTP requests answered, by method, route template and status.",
    ["method", "route", "status"],
)

SSE_SUBSCRIBERS = Gauge(
    "sessionhub_sse_subscribers",
    "Open server-sent-event streams (run_stream and events/stream).",
    ["stream"],
)

WS_SUBSCRIBERS = Gauge(
    "sessionhub_websocket_subscribers",
    "Open WebSocket connections.",
)

#: The names a scrape shows (a counter also shows ``<name>_total``), for tests and docs.
METRIC_NAMES = (
    "sessionhub_commands_total",
    "sessionhub_command_duration_seconds",
    "sessionhub_http_requests_total",
    "sessionhub_sse_subscribers",
    "sessionhub_websocket_subscribers",
)
