"""``python -m bench.report RESULTS.json``: results as Markdown tables (docs/benchmarks.md)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def markdown(data: dict[str, Any]) -> str:
    out = [
        "| row | payload | idempotence | msgs/s (median) | ratio to reference | CPU µs/msg "
        "| enqueue p50 / p99 / max µs | peak RSS MB | verified by consuming |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in data["rows"]:
        if r["msgs_per_s"] != r["msgs_per_s"]:
            out.append(f"| {r['row']} | {r['payload']} | | error: {r['errors'][:1]} | | | | | |")
            continue
        ratio = f"{r['ratio']:.2f}× {r['reference']}" if "ratio" in r else ""
        lat = f"{r['p50_us']:.2f} / {r['p99_us']:.2f} / {r['max_us']:,.0f}" if r["p50_us"] else "—"
        out.append(
            f"| {r['row']} | {r['payload']} | {'on' if r['idempotence'] else 'off'} "
            f"| {r['msgs_per_s']:,.0f} | {ratio} | {r['cpu_us_per_msg']:.2f} | {lat} "
            f"| {r['peak_rss_mb']:.0f} | {r['verified']:,.0f} of {r['sent']:,.0f} sent |"
        )
    o = data.get("outage")
    if o:
        out += ["", "| outage scenario | value |", "|---|---|"]
        out += [f"| {k} | {v} |" for k, v in o.items() if k != "stats"]
    so = data.get("spool_outage")
    if so:
        out += ["", "| spool outage scenario | value |", "|---|---|"]
        out += [f"| {k} | {v} |" for k, v in so.items()]
    return "\n".join(out)


if __name__ == "__main__":
    print(markdown(json.loads(Path(sys.argv[1]).read_text())))
