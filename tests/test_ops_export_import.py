"""``sessionhub export`` / ``import``: logs move between backends losing nothing."""

from __future__ import annotations

import io
import json

import pytest

from eventlog import NewEvent, open_eventlog
from eventlog.backends.memory import MemoryEventLog
from sessionhub.ops import export_import
from sessionhub.ops.export_import import export_events, import_events
from tests.test_ops_common import populated_sqlite, run_cli, sqlite_url


@pytest.fixture
async def source(tmp_path):
    """A SQLite log written by a real hub; yields its URL."""
    return await populated_sqlite(tmp_path / "source.db")


def _export(url: str, *extra: str) -> bytes:
    result = run_cli("export", "--eventlog", url, *extra)
    assert result.status == 0, result
    return result.out.encode("utf-8")


def _lines(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.decode("utf-8").split("\n") if line]


async def test_export_import_export_is_identical_sqlite_to_sqlite(source, tmp_path):
    """Export from SQLite, import into a fresh SQLite, export again: the same bytes."""
    first = _export(source)
    events = _lines(first)
    assert {e["stream_id"] for e in events} >= {"work", "review", "bobs", "done", "gone"}
    assert "purged" not in {e["stream_id"] for e in events}  # purged: gone from the log
    assert any(e["stream_id"].startswith("~") for e in events)  # hub and memory streams
    assert set(events[0]) == {
        "stream_id",
        "seq",
        "type",
        "data",
        "created_at",
        "command_id",
        "version",
    }
    dump = tmp_path / "backup.jsonl"
    dump.write_bytes(first)
    target = sqlite_url(tmp_path / "target.db")
    result = run_cli("import", str(dump), "--eventlog", target, "--json")
    assert result.status == 0, result
    report = result.json()
    assert report["appended"] == len(events) and report["conflicts"] == []
    assert _export(target) == first

    # The same seqs, command ids and timestamps: a hub on the target sees the same state.
    log = open_eventlog(target)
    try:
        assert log.read("work")[0].command_id == events[0]["command_id"]
    finally:
        log.close()
    replayed = run_cli("replay", "work", "--eventlog", target, "--json").json()
    assert replayed == run_cli("replay", "work", "--eventlog", source, "--json").json()


async def test_import_into_memory_and_export_again_is_identical(source):
    """The tools are backend-agnostic: SQLite -> memory -> export gives the same lines."""
    first = _export(source)
    log = MemoryEventLog()
    report = import_events(log, io.StringIO(first.decode("utf-8")))
    assert report.ok and report.appended == len(_lines(first))
    out = io.StringIO()
    export_events(log, out)
    assert out.getvalue().encode("utf-8") == first


async def test_reimport_is_idempotent(source, tmp_path):
    """Importing the same file twice appends nothing the second time, exit status 0."""
    dump = tmp_path / "backup.jsonl"
    dump.write_bytes(_export(source))
    target = sqlite_url(tmp_path / "target.db")
    assert run_cli("import", str(dump), "--eventlog", target).status == 0
    again = run_cli("import", str(dump), "--eventlog", target, "--json")
    assert again.status == 0, again
    report = again.json()
    assert report["appended"] == 0 and report["skipped"] == report["lines"]
    assert _export(target) == dump.read_bytes()


async def test_a_conflicting_event_is_reported_by_stream_and_seq(source, tmp_path):
    """A different event at a (stream, seq) the target holds: exit 1, named, not appended."""
    data = _export(source)
    target = sqlite_url(tmp_path / "target.db")
    dump = tmp_path / "backup.jsonl"
    dump.write_bytes(data)
    assert run_cli("import", str(dump), "--eventlog", target).status == 0
    events = _lines(data)
    changed = next(e for e in events if e["stream_id"] == "work" and e["seq"] == 2)
    changed["data"] = {"key": "plan", "value": "something else"}
    altered = tmp_path / "altered.jsonl"
    altered.write_text(
        "\n".join(json.dumps(e, ensure_ascii=False) for e in events) + "\n", encoding="utf-8"
    )
    result = run_cli("import", str(altered), "--eventlog", target)
    assert result.status == 1
    assert "conflict  stream=work seq=2" in result.err and "data differ" in result.err
    assert _export(target) == data  # nothing changed


async def test_import_reports_a_gap_in_the_file(tmp_path):
    """A file that skips a seq imports what precedes the gap and names the missing seq."""
    lines = [
        {"stream_id": "s", "seq": seq, "type": "app.x", "data": {"n": seq}}
        | {"created_at": "2025-01-01T00:00:00.000Z", "command_id": f"c{seq}", "version": 1}
        for seq in (1, 2, 4)
    ]
    log = MemoryEventLog()
    report = import_events(log, [json.dumps(line) for line in lines])
    assert not report.ok and report.appended == 2 and report.not_imported == 1
    assert (report.conflicts[0].stream_id, report.conflicts[0].seq) == ("s", 3)


async def test_a_commands_events_are_never_split_across_appends(tmp_path, monkeypatch):
    """With tiny batches, a three-event command still imports whole and in place."""
    log = MemoryEventLog()
    log.append("s", [NewEvent("app.a", {"i": 0}, "one")], 0)
    log.append("s", [NewEvent("app.b", {"i": i}, "three") for i in range(3)], 1)
    log.append("s", [NewEvent("app.c", {"i": 9}, None), NewEvent("app.c", {"i": 10})], 4)
    out = io.StringIO()
    export_events(log, out)
    monkeypatch.setattr(export_import, "BATCH", 1)
    target = MemoryEventLog()
    report = import_events(target, io.StringIO(out.getvalue()))
    assert report.ok and report.appended == 6, report
    again = io.StringIO()
    export_events(target, again)
    assert again.getvalue() == out.getvalue()


async def test_export_of_one_session(source):
    """``export --session S`` writes that stream's events only, in seq order."""
    events = _lines(_export(source, "--session", "work"))
    assert {e["stream_id"] for e in events} == {"work"}
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    missing = run_cli("export", "--eventlog", source, "--session", "nope")
    assert missing.status == 1 and "no events" in missing.err


def test_a_bad_line_is_named(tmp_path):
    """A line that is not an export line stops the import with its line number."""
    dump = tmp_path / "bad.jsonl"
    dump.write_text('{"stream_id": "s"}\n')
    result = run_cli("import", str(dump), "--eventlog", sqlite_url(tmp_path / "t.db"))
    assert result.status == 1 and "line 1: missing seq" in result.err
