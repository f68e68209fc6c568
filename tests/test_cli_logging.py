"""structlog: JSON lines off a terminal, request context bound to every line."""

from __future__ import annotations

import io
import json
import logging

import structlog

import sessionhub.logging as sessionhub_logging
from sessionhub.logging import configure_logging, request_context, resolve_format


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_auto_format_is_json_off_a_terminal_and_console_on_one():
    """auto picks JSON for pipes and files, console for a terminal."""
    assert resolve_format("auto", io.StringIO()) == "json"
    assert resolve_format("auto", _Tty()) == "console"
    assert resolve_format("console", io.StringIO()) == "console"


def test_any_value_gives_one_valid_json_line():
    """Values JSON cannot hold are logged by their repr; text msgspec refuses (a lone
    surrogate) still comes out as one JSON line; non-ASCII text stays readable."""

    class Opaque:
        def __repr__(self) -> str:
            return "<opaque>"

    stream = io.StringIO()
    try:
        configure_logging("info", "json", stream, force=True)
        log = structlog.get_logger("test")
        log.info("odd", obj=Opaque(), city="Zürich", big=2**70)
        log.info("surrogate", text="a\udc80b", obj=Opaque())
        first, second = (json.loads(line) for line in stream.getvalue().splitlines())
        assert first["obj"] == "<opaque>" and first["big"] == 2**70
        assert first["city"] == "Zürich" and "Zürich" in stream.getvalue()
        assert second["text"] == "a\udc80b" and second["obj"] == "<opaque>"
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers.clear()
        sessionhub_logging._configured = False


def test_json_lines_carry_the_request_context():
    """Every line logged inside request_context carries session_id, command_id, transport;
    standard-library loggers come out in the same format."""
    stream = io.StringIO()
    try:
        configure_logging("info", "json", stream, force=True)
        log = structlog.get_logger("test")
        with request_context(session_id="s1", command_id="c1", transport="http"):
            log.info("inside", n=1)
            logging.getLogger("aiohttp.server").warning("foreign %s", "line")
        log.info("outside")
        log.debug("hidden")
        lines = [json.loads(line) for line in stream.getvalue().splitlines()]
        assert [line["event"] for line in lines] == ["inside", "foreign line", "outside"]
        for line in lines[:2]:
            assert line["session_id"] == "s1" and line["command_id"] == "c1"
            assert line["transport"] == "http"
            assert line["timestamp"].endswith("Z")
        assert "session_id" not in lines[2]
        assert lines[1]["level"] == "warning"
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers.clear()
        sessionhub_logging._configured = False
