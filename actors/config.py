"""Limits and timings of the session layer, built once by the entry point."""

from __future__ import annotations

from dataclasses import dataclass, field

from actors.agents.base import AgentSettings


@dataclass(frozen=True)
class Limits:
    """Caps a client can hit; each refusal names its limit (429 ``limit_exceeded``)."""

    max_sessions_per_user: int = 1000
    max_sessions_total: int = 100_000
    max_chats_per_session: int = 50
    max_context_entries: int = 1000
    max_message_bytes: int = 256 * 1024
    max_messages_per_chat: int = 10_000


@dataclass(frozen=True)
class HubConfig:
    """How the session layer behaves; every field has a flag and an env variable."""

    limits: Limits = field(default_factory=Limits)
    agents: AgentSettings = field(default_factory=AgentSettings)
    #: Extra agent kinds: {"kind": "package.module:factory"}.
    agent_plugins: dict[str, str] = field(default_factory=dict)
    #: A session with no activity for this long expires (0: never).
    idle_timeout_s: float = 0.0
    #: A session older than this expires (0: never).
    max_lifetime_s: float = 0.0
    #: An actor unused for this long is stopped; its session lives on in the log.
    passivate_after_s: float = 300.0
    #: At most this many live actors; the least recently used are passivated first.
    max_live_actors: int = 10_000
    #: How often expiry and passivation are swept.
    sweep_interval_s: float = 5.0
    #: Write a snapshot every N events of a session.
    snapshot_every: int = 200
    #: Chunks of a running turn kept for reconnecting clients.
    chunk_buffer: int = 2000
    #: Events of recently read session histories kept in memory for the next reads
    #: (0: off). Only for logs that notify before they acknowledge (SQLite, memory).
    history_cache_events: int = 100_000
    #: Save the catalog (every session's light state) as a snapshot of the log after
    #: this many more events, at start-up when the fold was long, and at shutdown, so
    #: that start-up folds only the events after it (0: off; SQLite logs only).
    catalog_snapshot_every: int = 1_000_000
    #: Active or working sessions with no heartbeat (or other activity) for this
    #: long are marked idle (0: off).
    heartbeat_timeout_s: float = 0.0
    #: Folder of team YAML files for collaborations (``team_config_path``).
    teams_dir: str | None = None
