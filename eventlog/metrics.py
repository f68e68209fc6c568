"""Prometheus metrics of the event log, shared by its backends."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

EVENTS_APPENDED = Counter(
    "sessionhub_eventlog_events_appended_total", "Events durably appended", ["backend"]
)
APPEND_SECONDS = Histogram(
    "sessionhub_eventlog_append_seconds",
    "Time from an append call until its events are durable (queueing included)",
    ["backend"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
COMMIT_SECONDS = Histogram(
    "sessionhub_eventlog_commit_seconds",
    "Time of one group commit: the batch's inserts and its fsync",
    ["backend"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
)
BATCH_APPENDS = Histogram(
    "sessionhub_eventlog_batch_appends",
    "Appends that shared one group commit",
    ["backend"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)
