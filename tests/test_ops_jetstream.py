"""Operator tools on a JetStream log: SQLite -> JetStream -> export is the same file."""

from __future__ import annotations

import json
import uuid

from tests.nats_fixtures import nats_server  # noqa: F401  (fixture)
from tests.test_ops_common import populated_sqlite, run_cli, sqlite_url


def _export(url: str) -> str:
    result = run_cli("export", "--eventlog", url)
    assert result.status == 0, result
    return result.out


async def test_sqlite_to_jetstream_and_back_is_identical(nats_server, tmp_path):  # noqa: F811
    """Export from SQLite, import into JetStream, export again: identical; re-import is a
    no-op; JetStream back into a fresh SQLite exports the same again."""
    source = await populated_sqlite(tmp_path / "source.db")
    first = _export(source)
    assert first.count("\n") > 10
    dump = tmp_path / "backup.jsonl"
    dump.write_text(first)

    js = f"{nats_server.url.replace('nats://', 'jetstream://')}?prefix=ops{uuid.uuid4().hex[:8]}"
    result = run_cli("import", str(dump), "--eventlog", js, "--json")
    assert result.status == 0, result
    assert json.loads(result.out)["appended"] == first.count("\n")
    assert _export(js) == first

    again = run_cli("import", str(dump), "--eventlog", js, "--json")
    assert again.status == 0, again
    report = json.loads(again.out)
    assert report["appended"] == 0, report
    assert _export(js) == first

    (tmp_path / "from_js.jsonl").write_text(_export(js))
    back = sqlite_url(tmp_path / "back.db")
    result = run_cli("import", str(tmp_path / "from_js.jsonl"), "--eventlog", back)
    assert result.status == 0, result
    assert _export(back) == first

    verify = run_cli("verify", "--eventlog", js)
    assert verify.status == 0, verify
