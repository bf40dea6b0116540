"""Benchmark: a JOSH harvest spread over Ray (`josh harvest toolwoz --ray ADDRESS`) on a local cluster of 2
worker slots against 1, measured in one run and printed as a ratio.

Each run is the CLI itself (a separate driver process joining a local cluster started here with `num_cpus`
1, then 2), a dry run whose mock endpoint (on the driver) holds every model call `--latency` seconds, as a
served model would: a tree is then bound by its model calls, and a second worker slot grows a second tree at
the same time. The times are the run's own (`wall_s` of its status line: from the run file opened to closed,
the workers' start included), not the cluster's start. Needs the [ray] extra.

Usage: python bench/ray_scaleout.py [--trees 12] [--latency 0.05] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def harvest_on(slots: int, trees: int, latency: float, concurrency: int, folder: Path) -> float:
    """Seconds of one dry-run harvest of `trees` trees on a fresh local cluster of `slots` worker slots."""
    import ray

    context = ray.init(num_cpus=slots, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    try:
        out = folder / f"trees-{slots}.jsonl"
        command = [
            sys.executable, "-m", "josh.cli.main", "harvest", "toolwoz", "--limit", str(trees),
            "--mock-latency", str(latency), "--concurrency", str(concurrency),
            "--ray", context.address_info["gcs_address"], "--out", str(out),
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
        if done.returncode != 0:
            raise SystemExit(f"the harvest on {slots} slot(s) failed ({done.returncode}):\n{done.stderr}")
    finally:
        ray.shutdown()
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    recorded = sum(1 for line in lines if "task_id" in line)
    assert recorded == trees, (recorded, trees)
    return next(line["wall_s"] for line in reversed(lines) if line.get("type") == "status" and "wall_s" in line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trees", type=int, default=12)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds the mock holds each model call")
    parser.add_argument("--concurrency", type=int, default=8, help="trees in flight (Ray queues the rest)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        one = harvest_on(1, args.trees, args.latency, args.concurrency, Path(tmp))
        two = harvest_on(2, args.trees, args.latency, args.concurrency, Path(tmp))
    print(f"harvest of {args.trees} ToolWOZ trees over Ray, the mock holding each model call {args.latency * 1000:.0f} ms:")
    print(f"  1 local worker slot:  {one:6.2f} s ({args.trees / one:.2f} trees/s)")
    print(f"  2 local worker slots: {two:6.2f} s ({args.trees / two:.2f} trees/s)")
    print(f"Ray on 2 local workers vs 1: {one / two:.2f}x the throughput (wall-time ratio 2/1 = {two / one:.2f})")


if __name__ == "__main__":
    main()
