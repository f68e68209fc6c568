"""The server's settings: built once at the entry point, frozen, then passed down.

Every setting comes from, in order of precedence: a command-line flag, an environment
variable ``SESSIONHUB_*``, a TOML file (``--config FILE`` / ``SESSIONHUB_CONFIG``), the
default. :data:`OPTIONS` is the one table of them: it feeds argparse (so ``--help``
documents every flag with its environment variable), the environment and file readers,
and :class:`Settings`. The options of the session layer are generated from the fields
of :class:`actors.config.Limits`, :class:`actors.config.HubConfig` and
:class:`actors.agents.base.AgentSettings`, so a field added there gets its flag here.

A TOML file holds the options by name, at top level or in tables (``[server]``,
``[limits]``, ``[hub]``, ``[agents]``, ``[logging]``), e.g.::

    port = 8080
    eventlog = "sqlite:///var/lib/sessionhub/events.db"
    [limits]
    max_sessions_per_user = 50
    [api_keys]
    key1 = "alice"
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from actors.agents.base import AgentSettings
from actors.config import HubConfig, Limits

__all__ = [
    "DEFAULT_EVENTLOG",
    "OPTIONS",
    "Option",
    "Settings",
    "SettingsError",
    "add_arguments",
    "load_settings",
]

DEFAULT_EVENTLOG = "sqlite:///./data/events.db"
ENV_PREFIX = "SESSIONHUB_"
OPERATOR = "*"
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS = ("auto", "json", "console")


class SettingsError(ValueError):
    """A setting has a bad value; the message names where it came from."""


# --- the option table ----------------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    """One setting: its name (the TOML key), kind, default, help, flag and env variables.

    ``kind`` is one of ``str``, ``opt_str`` (may be unset), ``int``, ``float``, ``bool``,
    ``list`` (comma-separated) and ``map`` (``a=b,c=d``).
    """

    name: str
    kind: str
    default: Any
    help: str
    group: str
    env: tuple[str, ...] = ()
    metavar: str | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def envs(self) -> tuple[str, ...]:
        return self.env or (ENV_PREFIX + self.name.upper(),)


_SERVER = [
    Option("host", "str", "127.0.0.1", "Address to bind.", "server", metavar="HOST"),
    Option(
        "port", "int", 8000, "TCP port to listen on (0: any free port).", "server", metavar="PORT"
    ),
    Option(
        "eventlog",
        "str",
        DEFAULT_EVENTLOG,
        "Event log URL: memory://, sqlite:///path/events.db or jetstream://host:4222?replicas=N.",
        "server",
        metavar="URL",
    ),
    Option(
        "api_keys",
        "map",
        "",
        "API keys as KEY=USER pairs, comma-separated; USER '*' is an operator who sees "
        "every session. Without keys the server is open.",
        "server",
        metavar="KEY=USER,...",
    ),
    Option(
        "api_keys_file",
        "opt_str",
        None,
        "File of API keys, one KEY=USER per line ('#' starts a comment); adds to --api-keys.",
        "server",
        metavar="FILE",
    ),
    Option(
        "insecure",
        "bool",
        False,
        "Allow binding a non-loopback address without API keys.",
        "server",
    ),
    Option(
        "cors_origins",
        "list",
        (),
        "Origins allowed by CORS, comma-separated ('*': any); CORS is off when empty.",
        "server",
        metavar="ORIGIN,...",
    ),
    Option(
        "nats",
        "opt_str",
        None,
        "NATS server URL(s), comma-separated (nats://127.0.0.1:4222): also serve every "
        "command over NATS and publish every event there. With a jetstream:// event log "
        "the nodes share sessions, each owned by one node at a time.",
        "server",
        metavar="URL",
    ),
    Option(
        "nats_prefix",
        "str",
        "sessionhub",
        "Subject prefix of the NATS transport (<prefix>.cmd.*, <prefix>.events.*).",
        "server",
        metavar="PREFIX",
    ),
    Option(
        "max_body_bytes",
        "int",
        1024 * 1024,
        "Largest request body accepted; larger ones get 413 payload_too_large.",
        "server",
        metavar="BYTES",
    ),
    Option(
        "sse_keepalive_s",
        "float",
        15.0,
        "Seconds between keepalive comments on idle SSE streams.",
        "server",
        metavar="SECONDS",
    ),
    Option(
        "shutdown_timeout_s",
        "float",
        10.0,
        "Seconds a graceful shutdown waits for requests in flight.",
        "server",
        metavar="SECONDS",
    ),
]

_LOGGING = [
    Option(
        "log_level",
        "str",
        "info",
        f"Log level: {', '.join(LOG_LEVELS)}.",
        "logging",
        metavar="LEVEL",
    ),
    Option(
        "log_format",
        "str",
        "auto",
        "Log format: json (JSON lines), console, or auto (console on a terminal, else json).",
        "logging",
        metavar="FORMAT",
    ),
    Option(
        "access_log",
        "bool",
        True,
        "Log one line per HTTP request (method, path, status, duration) at info level; "
        "errors are logged either way.",
        "logging",
    ),
]

_AGENT_HELP = {
    "openai_base_url": "Base URL of the OpenAI-compatible server the openai agent uses "
    "(e.g. http://127.0.0.1:8080/v1); without it openai sessions are refused.",
    "openai_api_key": "API key sent to the OpenAI-compatible server (prefer the "
    "environment variable to the flag).",
    "timeout_s": "Seconds allowed for one upstream agent request.",
    "max_retries": "Retries of an upstream agent request after a 429, a 5xx or a connection error.",
    "retry_backoff_s": "First retry delay of an upstream agent request; it doubles each time.",
}

_AGENT_ENV = {
    "openai_base_url": ("SESSIONHUB_OPENAI_BASE_URL", "OPENAI_BASE_URL"),
    "openai_api_key": ("SESSIONHUB_OPENAI_API_KEY", "OPENAI_API_KEY"),
}

_METAVARS = {"openai_base_url": "URL", "openai_api_key": "KEY", "teams_dir": "DIR"}

_LIMIT_HELP = {
    "max_sessions_per_user": "Most sessions one user may have.",
    "max_sessions_total": "Most sessions in total.",
    "max_chats_per_session": "Most chats in one session.",
    "max_context_entries": "Most context entries in one session.",
    "max_message_bytes": "Largest message a run may carry, in bytes.",
    "max_messages_per_chat": "Most messages in one chat.",
}

_HUB_HELP = {
    "idle_timeout_s": "A session with no activity for this many seconds expires (0: never).",
    "max_lifetime_s": "A session older than this many seconds expires (0: never).",
    "passivate_after_s": "Seconds after which an unused session actor is stopped (the "
    "session lives on in the log).",
    "max_live_actors": "Most session actors alive at once; the least recently used are "
    "passivated first.",
    "sweep_interval_s": "Seconds between sweeps for expiry and passivation.",
    "snapshot_every": "Write a snapshot every N events of a session.",
    "chunk_buffer": "Stream chunks of a running turn kept for reconnecting clients.",
    "history_cache_events": "Events of recently read session histories kept in memory to "
    "answer the next reads (0: off; SQLite and memory logs only).",
    "catalog_snapshot_every": "Save the session catalog as a snapshot after this many "
    "more events and at shutdown, so that a start-up folds only the events after it (0: "
    "off; SQLite logs only).",
    "heartbeat_timeout_s": "Sessions whose heartbeat is older than this many seconds "
    "show as idle (0: off).",
    "teams_dir": "Folder of team YAML files that POST /collaborations may name as "
    "team_config_path (a path leaving it is refused); without it only inline teams run.",
}

#: Shorter spellings some flags also accept.
_FLAG_ALIASES = {"heartbeat_timeout_s": ("--heartbeat-timeout",)}

#: HubConfig fields that are not scalar options of their own.
_HUB_COMPOSITE = ("limits", "agents", "agent_plugins")


def _kind_of(value: Any) -> str | None:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    return None


def _field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _dataclass_options(
    cls: type, group: str, helps: Mapping[str, str], prefix: str = "", skip: Sequence[str] = ()
) -> list[Option]:
    options = []
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        default = _field_default(f)
        kind = _kind_of(default)
        if kind is None and default is None:
            kind = "opt_str"
        if kind is None:
            continue
        name = f.name if f.name.startswith("openai_") else prefix + f.name
        options.append(
            Option(
                name,
                kind,
                default,
                helps.get(f.name, f"{cls.__name__}.{f.name}."),
                group,
                env=_AGENT_ENV.get(f.name, ()),
                metavar=_METAVARS.get(f.name) or ("SECONDS" if f.name.endswith("_s") else "N"),
            )
        )
    return options


_AGENTS = [
    *_dataclass_options(AgentSettings, "agents", _AGENT_HELP, prefix="agent_"),
    Option(
        "agent_plugins",
        "map",
        "",
        "Extra agent kinds as KIND=package.module:factory pairs, comma-separated.",
        "agents",
        metavar="KIND=MODULE:FACTORY,...",
    ),
]

#: Every option, in --help order.
OPTIONS: tuple[Option, ...] = (
    *_SERVER,
    *_LOGGING,
    *_AGENTS,
    *_dataclass_options(Limits, "limits", _LIMIT_HELP),
    *_dataclass_options(HubConfig, "hub", _HUB_HELP, skip=_HUB_COMPOSITE),
)
_BY_NAME = {o.name: o for o in OPTIONS}
_GROUP_TITLES = {
    "server": "server",
    "logging": "logging",
    "agents": "agents",
    "limits": "limits (a refusal is 429 limit_exceeded)",
    "hub": "sessions and actors",
}


# --- conversions -------------------------------------------------------------------------


def _convert(option: Option, value: Any, source: str) -> Any:
    """Turn a raw value (a string from a flag or the environment, or a TOML value)."""
    kind = option.kind
    try:
        if kind in ("str", "opt_str"):
            if not isinstance(value, str):
                raise TypeError("expected a string")
            if kind == "opt_str" and value == "":
                return None
            return value
        if kind == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on"):
                return True
            if isinstance(value, str) and value.strip().lower() in ("0", "false", "no", "off", ""):
                return False
            raise TypeError("expected true or false")
        if kind == "int":
            if isinstance(value, bool):
                raise TypeError("expected an integer")
            return int(value.strip()) if isinstance(value, str) else int(_exact_int(value))
        if kind == "float":
            if isinstance(value, bool):
                raise TypeError("expected a number")
            number = float(value.strip()) if isinstance(value, str) else float(value)
            if number != number or number in (float("inf"), float("-inf")):
                raise TypeError("expected a finite number")
            return number
        if kind == "list":
            if isinstance(value, str):
                return tuple(p.strip() for p in value.split(",") if p.strip())
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                return tuple(v.strip() for v in value if v.strip())
            raise TypeError("expected a comma-separated string or a list of strings")
        if kind == "map":
            return _parse_map(value)
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"{source}: bad value {value!r} for {option.name}: {exc}") from None
    raise SettingsError(f"{option.name}: unknown kind {kind}")  # pragma: no cover


def _exact_int(value: Any) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise TypeError("expected an integer")


def _parse_map(value: Any) -> dict[str, str]:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(v, str) or not v.strip():
                raise ValueError(f"the value of {k!r} must be a non-empty string")
            out[str(k)] = v.strip()
        return out
    if not isinstance(value, str):
        raise TypeError("expected KEY=VALUE pairs")
    out = {}
    for part in value.split(","):
        part = part.strip()
        if not part:
            continue
        k, sep, v = part.partition("=")
        if not sep or not k.strip() or not v.strip():
            raise ValueError(f"{part!r} is not KEY=VALUE")
        out[k.strip()] = v.strip()
    return out


def read_keys_file(path: str) -> dict[str, str]:
    """The ``KEY=USER`` lines of an API keys file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"cannot read the API keys file {path!r}: {exc}") from None
    keys = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        key, sep, user = line.partition("=")
        if not sep or not key.strip() or not user.strip():
            raise SettingsError(f"{path}:{number}: expected KEY=USER")
        keys[key.strip()] = user.strip()
    return keys


def read_config_file(path: str) -> dict[str, Any]:
    """The options of a TOML file, flattened to ``{option name: value}``."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise SettingsError(f"cannot read the config file {path!r}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: invalid TOML: {exc}") from None
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if key in _BY_NAME:
            flat[key] = value
        elif isinstance(value, dict) and key in _GROUP_TITLES:
            for sub, sub_value in value.items():
                name = sub
                if key == "agents" and sub not in _BY_NAME and f"agent_{sub}" in _BY_NAME:
                    name = f"agent_{sub}"
                if name not in _BY_NAME:
                    raise SettingsError(f"{path}: unknown setting {key}.{sub}")
                flat[name] = sub_value
        else:
            raise SettingsError(f"{path}: unknown setting {key}")
    return flat


# --- Settings ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """Everything the server needs, resolved; build it with :func:`load_settings`.

    ``api_keys`` maps each API key to its user (``"*"``: an operator). ``hub`` is the
    session layer's configuration, handed to ``Hub.running`` as is.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    eventlog: str = DEFAULT_EVENTLOG
    api_keys: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), repr=False)
    insecure: bool = False
    cors_origins: tuple[str, ...] = ()
    nats: str | None = None
    nats_prefix: str = "sessionhub"
    max_body_bytes: int = 1024 * 1024
    sse_keepalive_s: float = 15.0
    shutdown_timeout_s: float = 10.0
    log_level: str = "info"
    log_format: str = "auto"
    access_log: bool = True
    config_file: str | None = None
    hub: HubConfig = field(default_factory=HubConfig, repr=False)

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_keys)

    def check_bind(self) -> None:
        """Refuse an open server on a non-loopback address unless ``insecure`` is set."""
        if self.auth_enabled or self.insecure or is_loopback(self.host):
            return
        raise SettingsError(
            f"refusing to serve without API keys on the non-loopback address {self.host!r}: "
            "set --api-keys / --api-keys-file, bind 127.0.0.1, or pass --insecure"
        )


def is_loopback(host: str) -> bool:
    """Whether ``host`` names only the loopback interface."""
    if host in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add a flag for every option (and ``--config``), grouped, each naming its env vars.

    Flags default to ``argparse.SUPPRESS`` so the namespace holds only the given ones.
    """
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help=f"TOML file of settings (lowest precedence after defaults). [env: {ENV_PREFIX}CONFIG]",
    )
    groups: dict[str, Any] = {}
    for option in OPTIONS:
        group = groups.get(option.group)
        if group is None:
            group = groups[option.group] = parser.add_argument_group(_GROUP_TITLES[option.group])
        default = option.default
        if option.kind == "map" or option.kind == "list":
            shown = "none" if not default else str(default)
        elif option.kind == "bool":
            shown = "on" if default else "off"
        else:
            shown = "unset" if default is None else str(default)
        env = ", ".join(option.envs)
        text = f"{option.help} [env: {env}; default: {shown}]"
        text = text.replace("%", "%%")
        if option.kind == "bool":
            # An option that is on by default is turned off with --no-<name>.
            action = argparse.BooleanOptionalAction if default else "store_true"
            group.add_argument(option.flag, action=action, default=argparse.SUPPRESS, help=text)
        else:
            group.add_argument(
                option.flag,
                *_FLAG_ALIASES.get(option.name, ()),
                dest=option.name,
                metavar=option.metavar or option.kind.upper(),
                default=argparse.SUPPRESS,
                help=text,
            )


def load_settings(
    flags: Mapping[str, Any] | argparse.Namespace | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Resolve every option: flags > environment > TOML file > defaults.

    Args:
        flags: the given flags by option name (an argparse namespace from a parser set up
            by :func:`add_arguments`, or a dict); ``config`` names the TOML file.
        environ: the environment (``os.environ`` when None).

    Raises:
        SettingsError: naming the flag, variable or file of a bad value.
    """
    if isinstance(flags, argparse.Namespace):
        flags = vars(flags)
    flags = dict(flags or {})
    env = os.environ if environ is None else environ

    config_path = flags.get("config") or env.get(ENV_PREFIX + "CONFIG") or None
    from_file = read_config_file(config_path) if config_path else {}

    values: dict[str, Any] = {}
    for option in OPTIONS:
        if option.name in flags and flags[option.name] is not None:
            value = _convert(option, flags[option.name], option.flag)
        else:
            for name in option.envs:
                if name in env:
                    value = _convert(option, env[name], name)
                    break
            else:
                if option.name in from_file:
                    value = _convert(
                        option, from_file[option.name], f"{config_path}: {option.name}"
                    )
                else:
                    value = option.default
                    if option.kind == "map":
                        value = {}
        values[option.name] = value

    return _build(values, config_path)


def _build(values: dict[str, Any], config_path: str | None) -> Settings:
    keys = dict(values["api_keys"])
    if values["api_keys_file"]:
        keys.update(read_keys_file(values["api_keys_file"]))

    port = values["port"]
    if not 0 <= port <= 65535:
        raise SettingsError(f"port must be between 0 and 65535, not {port}")
    if values["max_body_bytes"] < 1:
        raise SettingsError("max_body_bytes must be at least 1")
    if values["sse_keepalive_s"] <= 0:
        raise SettingsError("sse_keepalive_s must be positive")
    if values["shutdown_timeout_s"] < 0:
        raise SettingsError("shutdown_timeout_s must not be negative")
    level = values["log_level"].lower()
    if level not in LOG_LEVELS:
        raise SettingsError(f"log_level must be one of {', '.join(LOG_LEVELS)}")
    fmt = values["log_format"].lower()
    if fmt not in LOG_FORMATS:
        raise SettingsError(f"log_format must be one of {', '.join(LOG_FORMATS)}")
    if values["nats"] and not all(
        u.strip().startswith(("nats://", "tls://")) for u in values["nats"].split(",")
    ):
        raise SettingsError(f"nats must be nats://host:port URLs, not {values['nats']!r}")
    if not re.fullmatch(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*", values["nats_prefix"]):
        raise SettingsError(f"nats_prefix {values['nats_prefix']!r} is not a subject prefix")
    for origin in values["cors_origins"]:
        if origin != "*" and "://" not in origin:
            raise SettingsError(f"CORS origin {origin!r} is not '*' or scheme://host[:port]")

    def pick(cls: type, prefix: str = "") -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(cls):
            name = f.name if f.name.startswith("openai_") else prefix + f.name
            if name in values:
                out[f.name] = values[name]
        return out

    for name in (*(f.name for f in dataclasses.fields(Limits)),):
        if isinstance(values.get(name), int) and values[name] < 0:
            raise SettingsError(f"{name} must not be negative")

    hub = HubConfig(
        limits=Limits(**pick(Limits)),
        agents=AgentSettings(**pick(AgentSettings, "agent_")),
        agent_plugins=dict(values["agent_plugins"]),
        **{k: v for k, v in pick(HubConfig).items() if k not in _HUB_COMPOSITE},
    )
    return Settings(
        host=values["host"],
        port=port,
        eventlog=values["eventlog"],
        api_keys=MappingProxyType(keys),
        insecure=values["insecure"],
        cors_origins=tuple(values["cors_origins"]),
        nats=values["nats"] or None,
        nats_prefix=values["nats_prefix"],
        max_body_bytes=values["max_body_bytes"],
        sse_keepalive_s=values["sse_keepalive_s"],
        shutdown_timeout_s=values["shutdown_timeout_s"],
        log_level=level,
        log_format=fmt,
        access_log=values["access_log"],
        config_file=config_path,
        hub=hub,
    )
