# ruff: noqa: E402
"""HTTP throughput and latency of sessionhub next to a bare aiohttp handler, in one run.

Starts, on loopback, a bare aiohttp app (one JSON handler: the machine's HTTP limit
for this stack) and ``sessionhub serve`` on a fresh SQLite file, creates the sessions,
then drives each endpoint with wrk (64 connections by default) in alternating
repetitions: ``GET /sessions/{id}``, ``PUT /sessions/{id}/context/{key}`` (a durable
append) and ``POST /sessions/{id}/run`` with the echo agent. Prints requests/s and
p50/p99 (medians over repetitions) and the ratio to the bare handler: the median of the
ratios taken within each repetition, with their range.

Needs ``wrk`` (Debian: ``apt-get install wrk``). Usage::

    .venv/bin/python bench/http.py [--connections 64] [--duration 5] [--reps 5]
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file is named http.py: run as a script, its folder comes first on sys.path and
# would shadow the standard library's http package that urllib imports.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request

from sessionhub.cli import GC_YOUNG_THRESHOLD

ROOT = Path(__file__).resolve().parent.parent
SESSIONHUB = str(Path(sys.executable).parent / "sessionhub")

BARE_APP = """
import gc
import sys
from aiohttp import web

# The collector setting of sessionhub serve, so the two servers differ only in what they
# do per request (measured: no change to this one).
gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])

async def get(request):
    return web.json_response({"session_id": request.match_info["sid"], "status": "active"})

async def put(request):
    value = await request.json()
    return web.json_response({"key": request.match_info["key"], "value": value, "version": 1})

app = web.Application()
app.router.add_get("/sessions/{sid}", get)
app.router.add_put("/sessions/{sid}/context/{key}", put)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""

LUA = """
local ids = {%(ids)s}
local method = "%(method)s"
local suffix = "%(suffix)s"
local body = '%(body)s'
local n = 0
request = function()
  n = n + 1
  local path = "/sessions/" .. ids[(n %% #ids) + 1] .. suffix
  if method == "GET" then return wrk.format("GET", path) end
  return wrk.format(method, path, {["Content-Type"] = "application/json"}, body)
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer in {timeout} s")


def call(url: str, method: str, body: object | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    assert m, text
    return float(m.group(1)) * _UNITS[m.group(2)]


def run_wrk(base: str, script: Path, connections: int, duration: float) -> dict[str, float]:
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{max(1, round(duration))}s",
            "--latency",
            "-s",
            str(script),
            base,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    total = int(re.search(r"(\d+) requests in", out).group(1))
    bad = int(errors.group(1)) if errors else 0
    return {"rps": rps * (total - bad) / max(total, 1), "p50": p50, "p99": p99, "errors": bad}


def script(tmp: Path, name: str, ids: list[str], method: str, suffix: str, body: str) -> Path:
    path = tmp / f"{name}.lua"
    quoted = ", ".join(f'"{i}"' for i in ids)
    path.write_text(LUA % {"ids": quoted, "method": method, "suffix": suffix, "body": body})
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--reps", type=int, default=5, help="alternating repetitions")
    parser.add_argument("--sessions", type=int, default=64)
    parser.add_argument("--sync", choices=("full", "normal"), default="full")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed (Debian: apt-get install wrk)", file=sys.stderr)
        return 2

    tmp = Path(tempfile.mkdtemp(prefix="sessionhub-bench-http-"))
    procs: list[subprocess.Popen] = []
    try:
        bare_port, hub_port = free_port(), free_port()
        bare_file = tmp / "bare.py"
        bare_file.write_text(BARE_APP.replace("GC_YOUNG_THRESHOLD", str(GC_YOUNG_THRESHOLD)))
        procs.append(subprocess.Popen([sys.executable, str(bare_file), str(bare_port)]))
        env = {**os.environ, "SESSIONHUB_LOG_LEVEL": "warning"}
        url = f"sqlite:///{tmp}/events.db" + ("?sync=normal" if args.sync == "normal" else "")
        procs.append(
            subprocess.Popen(
                [
                    str(Path(sys.executable).parent / "sessionhub"),
                    "serve",
                    "--port",
                    str(hub_port),
                    "--eventlog",
                    url,
                ],
                env=env,
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
            )
        )
        bare, hub = f"http://127.0.0.1:{bare_port}", f"http://127.0.0.1:{hub_port}"
        wait_http(f"{bare}/sessions/x")
        wait_http(f"{hub}/health")
        ids = [
            call(f"{hub}/sessions", "POST", {"user_id": "bench"})["session_id"]
            for _ in range(args.sessions)
        ]
        value = json.dumps({"text": "x" * 150})
        runs = {
            "bare GET": (bare, script(tmp, "bare_get", ids, "GET", "", "")),
            "bare PUT": (bare, script(tmp, "bare_put", ids, "PUT", "/context/k", value)),
            "GET /sessions/{id}": (hub, script(tmp, "get", ids, "GET", "", "")),
            "PUT context": (hub, script(tmp, "put", ids, "PUT", "/context/k", value)),
            "POST run (echo)": (
                hub,
                script(
                    tmp, "run", ids, "POST", "/run", '{"message": "hi", "multitask": "enqueue"}'
                ),
            ),
        }
        results: dict[str, list[dict[str, float]]] = {name: [] for name in runs}
        for _ in range(args.reps):
            for name, (base, lua) in runs.items():
                results[name].append(run_wrk(base, lua, args.connections, args.duration))
        med = {
            name: {k: statistics.median(r[k] for r in rs) for k in ("rps", "p50", "p99", "errors")}
            for name, rs in results.items()
        }
        # Each repetition runs the bare handler and sessionhub a few seconds apart, so
        # the machine's drift (other load, the disk) mostly cancels in their ratio.
        ratios = {
            name: [
                r["rps"] / results["bare PUT" if kind == "PUT" else "bare GET"][i]["rps"]
                for i, r in enumerate(results[name])
            ]
            for name, kind in (
                ("GET /sessions/{id}", "GET"),
                ("PUT context", "PUT"),
                ("POST run (echo)", "PUT"),
            )
        }
        print(
            f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}; wrk -t2 -c{args.connections} "
            f"-d{args.duration:g}s, medians of {args.reps} alternating runs; SQLite "
            f"synchronous={args.sync.upper()}; client and servers share the machine"
        )
        print()
        print(
            "| endpoint | requests/s (2xx) | p50 ms | p99 ms | errors "
            "| vs bare handler (range over repetitions) |"
        )
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        for name, m in med.items():
            rel = ""
            if name in ratios:
                rs = ratios[name]
                rel = f"{statistics.median(rs):.0%} ({min(rs):.0%}-{max(rs):.0%})"
            print(
                f"| {name} | {m['rps']:,.0f} | {m['p50']:.2f} | {m['p99']:.2f} "
                f"| {m['errors']:.0f} | {rel} |"
            )
        ratio = statistics.median(ratios["PUT context"])
        print()
        print(
            f"target: PUT context >= 40% of the bare handler (median of per-repetition "
            f"ratios): {ratio:.0%} ({'met' if ratio >= 0.4 else 'MISSED'})"
        )
        return 0
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
