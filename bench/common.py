"""Helpers shared by the benches: statistics, the machine, the bench venv, servers, py-spy.

Standard library only: ``peers.py`` imports this module both in the project's venv and in
the separate bench venv that holds the peers (which has no sessionhub installed).
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import platform
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
PEERS_REQUIREMENTS = BENCH_DIR / "requirements-peers.txt"
#: Where the peers' venv lives: outside the repository, so nothing large lands in git.
VENV_ENV = "SESSIONHUB_BENCH_VENV"
DEFAULT_VENV = Path.home() / ".cache" / "sessionhub-bench-venv"

#: One chat message as the workload stores it: ``{"role": "user", "content": TEXT}``
#: serialises to exactly 200 bytes of compact JSON.
_PREFIX = len(json.dumps({"role": "user", "content": ""}, separators=(",", ":")))
MESSAGE_TEXT = ("The quick brown fox jumps over the lazy dog. " * 5)[: 200 - _PREFIX]
MESSAGE = {"role": "user", "content": MESSAGE_TEXT}
assert len(json.dumps(MESSAGE, separators=(",", ":"))) == 200


# -- statistics ---------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation; NaN for no values."""
    if not values:
        return float("nan")
    data = sorted(values)
    k = (len(data) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (k - lo)


def latency_ms(samples_s: Sequence[float]) -> dict[str, float]:
    """p50 / p99 / max in milliseconds of latencies given in seconds."""
    return {
        "p50_ms": percentile(samples_s, 50) * 1000,
        "p99_ms": percentile(samples_s, 99) * 1000,
        "max_ms": max(samples_s) * 1000 if samples_s else float("nan"),
    }


def median(values: Sequence[float]) -> float:
    """Median ignoring missing values; NaN when nothing was measured."""
    kept = [v for v in values if v is not None and v == v]
    return statistics.median(kept) if kept else float("nan")


# -- the machine --------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    mem_kb = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "ram_gib": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "kernel": platform.release(),
    }


def fs_type(path: Path) -> str:
    """The file system type holding ``path`` (fsync costs nothing on tmpfs: say so)."""
    best, kind = "", "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            mount = parts[1]
            if str(path.resolve()).startswith(mount) and len(mount) > len(best):
                best, kind = mount, parts[2]
    return kind


def dir_bytes(path: Path) -> int:
    """Bytes of every file under ``path`` (database, WAL, shared memory, journals)."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def rss_kb(pid: int) -> int:
    """Resident set size of a process in KiB (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def sqlite_pragmas(conn: Any) -> dict[str, Any]:
    """``journal_mode`` and ``synchronous`` as a DB-API connection sees them."""
    names = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
    journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
    sync = conn.execute("PRAGMA synchronous").fetchone()[0]
    return {"journal_mode": str(journal).upper(), "synchronous": names.get(sync, str(sync))}


def durability(pragmas: dict[str, Any], fsync_per_commit: bool = True) -> str:
    """A row's durability statement from its observed pragmas."""
    journal = pragmas.get("journal_mode", "?")
    sync = pragmas.get("synchronous", "?")
    # WAL + FULL syncs the WAL on every commit; rollback journals sync with NORMAL too.
    synced = sync in ("FULL", "EXTRA") or (journal != "WAL" and sync == "NORMAL")
    if not synced:
        return f"no fsync per commit ({journal}, synchronous={sync})"
    what = "fsync per commit" if fsync_per_commit else "fsync per group commit"
    return f"{what} ({journal}, synchronous={sync})"


# -- the bench venv (peers live there, never in the project's venv) -----------------------


def venv_dir() -> Path:
    return Path(os.environ.get(VENV_ENV) or DEFAULT_VENV)


def venv_python(create: bool = True) -> Path | None:
    """The bench venv's python, created from ``requirements-peers.txt`` on first use."""
    root = venv_dir()
    python = root / "bin" / "python"
    if python.exists():
        return python
    if not create:
        return None
    print(f"creating the bench venv at {root} (peers pinned in {PEERS_REQUIREMENTS.name})")
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "-r", str(PEERS_REQUIREMENTS)], check=True
    )
    return python


def venv_tool(name: str) -> Path | None:
    """A console script of the bench venv (``py-spy``), if it is installed there."""
    python = venv_python(create=False)
    if python is None:
        return None
    tool = python.parent / name
    return tool if tool.exists() else None


# -- servers --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def sessionhub_cli() -> Path | None:
    """The ``sessionhub`` console script next to the running python, if installed."""
    exe = Path(sys.executable).parent / "sessionhub"
    return exe if exe.exists() else None


class Server:
    """A ``sessionhub serve`` subprocess on a free loopback port.

    ``start()`` returns the seconds from spawn to the first ``/health`` answering 200.
    Raises ``RuntimeError`` with the server's output when it cannot start.
    """

    def __init__(self, eventlog_url: str, *extra: str, log_level: str = "warning") -> None:
        self.url_eventlog = eventlog_url
        self.extra = list(extra)
        self.log_level = log_level
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 120.0, log_path: Path | None = None) -> float:
        cli = sessionhub_cli()
        if cli is None:
            raise RuntimeError("no `sessionhub` console script in this venv")
        self.port = free_port()
        cmd = [
            str(cli),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--eventlog",
            self.url_eventlog,
            "--log-level",
            self.log_level,
            "--log-format",
            "json",
            *self.extra,
        ]
        self.log_path = log_path
        out = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115
        start = time.perf_counter()
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        deadline = start + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self._tail()}")
            try:
                status, _ = http_get(self.base + "/health", timeout=1.0)
                if status == 200:
                    return time.perf_counter() - start
            except (OSError, ValueError):
                pass
            time.sleep(0.005)
        self.stop()
        raise RuntimeError(f"server not ready after {timeout:.0f} s: {self._tail()}")

    def _tail(self) -> str:
        if self.log_path and self.log_path.exists():
            return self.log_path.read_text(errors="replace")[-2000:]
        return "(no log)"

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- profiling with py-spy (from the bench venv) -----------------------------------------------


@contextlib.contextmanager
def py_spy(pid: int, out: Path | None, rate: int = 250, gil: bool = True) -> Iterator[None]:
    """Record ``pid`` with py-spy (collapsed stacks) while the block runs; no-op if no out."""
    tool = venv_tool("py-spy") if out is not None else None
    if out is None or tool is None:
        if out is not None:
            print("  (py-spy not found in the bench venv: no profile)", file=sys.stderr)
        yield
        return
    cmd = [str(tool), "record", "--pid", str(pid), "--format", "raw", "--rate", str(rate)]
    cmd += ["--output", str(out), "--threads"]
    if gil:
        cmd.append("--gil")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.5)  # let py-spy attach before the measured work starts
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _frame_name(frame: str) -> str:
    """``func (path/to/file.py:12)`` -> ``func (file.py)`` (one entry per function)."""
    name, _, where = frame.partition(" (")
    file = where.rsplit(":", 1)[0].rstrip(")")
    parts = Path(file).parts
    short = "/".join(parts[-2:]) if len(parts) > 1 else file
    return f"{name} ({short})" if where else name


def summarise_profile(path: Path, top: int = 12) -> dict[str, Any]:
    """Self and inclusive time per function, and samples per thread, from py-spy raw output."""
    self_t: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        thread, frames = (
            (frames[0], frames[1:]) if frames[0].startswith("thread") else ("?", frames)
        )
        threads[thread] += n
        names = [_frame_name(f) for f in frames]
        if names:
            self_t[names[-1]] += n
        for name in set(names):
            incl[name] += n

    def pct(counter: collections.Counter[str]) -> list[tuple[str, float]]:
        return [(k, round(100 * v / total, 1)) for k, v in counter.most_common(top)]

    return {
        "samples": total,
        "self": pct(self_t),
        "inclusive": pct(incl),
        "threads": [(k, round(100 * v / total, 1)) for k, v in threads.most_common(8)],
    }


def format_profile(title: str, summary: dict[str, Any]) -> str:
    lines = [f"{title}: {summary['samples']} samples"]
    lines.append("  self time:")
    lines += [f"    {p:5.1f}%  {name}" for name, p in summary["self"]]
    lines.append("  inclusive:")
    lines += [f"    {p:5.1f}%  {name}" for name, p in summary["inclusive"]]
    return "\n".join(lines)


# -- tables -------------------------------------------------------------------------------------


def fmt(value: Any, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    out = ["| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |"]
    out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells:
        out.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
    return "\n".join(out)
