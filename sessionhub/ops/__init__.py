"""Operator tools: the ``sessionhub`` subcommands that work on an event log directly.

One module per tool, each with a ``register(commands, factory)`` that adds its
subcommands to :data:`sessionhub.cli.SUBCOMMANDS`:

- :mod:`~sessionhub.ops.sessions`: ``sessions`` lists sessions with the HTTP list's filters;
- :mod:`~sessionhub.ops.replay`: ``replay`` rebuilds a session's state (``--to-seq``, ``--verify``);
- :mod:`~sessionhub.ops.events`: ``events`` prints a stream's events, ``--follow`` tails it;
- :mod:`~sessionhub.ops.export_import`: ``export`` / ``import`` move logs between backends;
- :mod:`~sessionhub.ops.verify`: ``verify`` scans the whole log for damage;
- :mod:`~sessionhub.ops.snapshot`: ``snapshot`` / ``compact`` write snapshots;
- :mod:`~sessionhub.ops.progress`: the progress bar they draw on a terminal.

They need no server and run beside one on the same log.
"""

from sessionhub.ops import events, export_import, replay, sessions, snapshot, verify

__all__ = ["events", "export_import", "replay", "sessions", "snapshot", "verify"]
