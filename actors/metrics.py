"""Prometheus metrics of the session layer."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LIVE_ACTORS = Gauge("sessionhub_live_actors", "Session actors currently running")
ACTOR_RESTARTS = Counter("sessionhub_actor_crashes_total", "Session actors that crashed")
SESSIONS_BY_STATUS = Gauge("sessionhub_sessions", "Sessions by status", ["status"])
EXPIRATIONS = Counter("sessionhub_expirations_total", "Sessions expired, by reason", ["reason"])
PASSIVATIONS = Counter(
    "sessionhub_passivations_total", "Actors stopped while their session lives on", ["reason"]
)
TURN_LATENCY = Histogram(
    "sessionhub_turn_seconds",
    "Duration of agent turns",
    ["agent", "status"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
TIME_TO_FIRST_CHUNK = Histogram(
    "sessionhub_turn_first_chunk_seconds",
    "Time from the start of a turn to its first streamed chunk",
    ["agent"],
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
