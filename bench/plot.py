"""Plot ``peers.py --json`` output: appends/s and load latency per store, as one PNG.

Runs with matplotlib from the bench venv (never the project's):

    ~/.cache/sessionhub-bench-venv/bin/python bench/plot.py /tmp/peers.json bench/peers.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

SHORT = {
    "sessionhub-facade": "sessionhub\nfacade",
    "sessionhub-facade-ctx": "sessionhub\ncontext_set",
    "sessionhub-http": "sessionhub\nHTTP",
    "openai-agents": "openai-agents\nSQLiteSession",
    "adk": "ADK\nDatabaseSession",
    "langgraph": "LangGraph\nSqliteSaver",
    "raw-fsync": "raw sqlite3\ncommit/insert",
    "raw-batch100": "raw sqlite3\ncommit/100*",
}


def color(store: str) -> str:
    if store.startswith("sessionhub"):
        return "#1f77b4"
    if store.startswith("raw"):
        return "#9e9e9e"
    return "#ff7f0e"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("json_file")
    p.add_argument("png", nargs="?", default=str(Path(__file__).with_name("peers.png")))
    args = p.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    doc = json.loads(Path(args.json_file).read_text())
    rows = doc["rows"]
    params = doc["meta"]["params"]
    names = [SHORT.get(r["store"], r["store"]) for r in rows]
    colors = [color(r["store"]) for r in rows]
    x = range(len(rows))

    fig, axes = plt.subplots(1, 3, figsize=(15, 5.2), dpi=80)
    ax = axes[0]
    seq = [r["seq_appends_per_s"] for r in rows]
    conc = [r["conc_appends_per_s"] for r in rows]
    w = 0.4
    ax.bar([i - w / 2 for i in x], seq, w, color=colors, alpha=0.55, label="sequential")
    ax.bar([i + w / 2 for i in x], conc, w, color=colors, label=f"{params['concurrency']} writers")
    ax.set_yscale("log")
    ax.set_title("appends/s (one message per call, log scale)")
    ax.legend(fontsize=8)

    ax = axes[1]
    p50 = [r["live_load_p50_ms"] for r in rows]
    p99 = [r["live_load_p99_ms"] for r in rows]
    ax.bar([i - w / 2 for i in x], p50, w, color=colors, alpha=0.55, label="p50")
    ax.bar([i + w / 2 for i in x], p99, w, color=colors, label="p99")
    ax.set_yscale("log")
    ax.set_title(f"live full-history load, <= {params['messages']} msgs (ms, log)")
    ax.legend(fontsize=8)

    ax = axes[2]
    cold50 = [r["cold_load_p50_ms"] for r in rows]
    cold99 = [r["cold_load_p99_ms"] for r in rows]
    ax.bar([i - w / 2 for i in x], cold50, w, color=colors, alpha=0.55, label="p50")
    ax.bar([i + w / 2 for i in x], cold99, w, color=colors, label="p99")
    ax.set_yscale("log")
    ax.set_title("cold load, fresh process (ms, log)")
    ax.legend(fontsize=8)

    for ax in axes:
        ax.set_xticks(list(x))
        ax.set_xticklabels(names, rotation=60, ha="right", fontsize=7)
        ax.grid(axis="y", alpha=0.3)
    m = doc["meta"]["machine"]
    fig.suptitle(
        f"{params['sessions']} sessions x {params['messages']} messages of 200 B; median of "
        f"{params['reps']} reps; {m['nproc']} cores, Python {m['python']}, SQLite {m['sqlite']}"
        "  (* not durable per call)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(args.png, dpi=80)
    print(f"wrote {args.png} ({Path(args.png).stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
