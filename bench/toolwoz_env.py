"""Benchmark: the ToolWOZ environment against the reference implementation, measured in one run.

Prints, for the same call sequences on the same machine:
  - tool-call time ratio (reference time per call / ours; target >= 100x),
  - session set-up ratio (reference `Conversation(...)` / our `env.session(...)` on an uncached task),
  - full build time (ours, all 7,849 tasks including the 280 MB JSON parse; target < 15 s) next to the
    reference's `create_dbs() + create_apis()`.

Usage: python bench/toolwoz_env.py [--tasks 200] [--skip-reference-build]
Needs the dev extra (pandas) to run the reference.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from josh.envs.toolwoz import ToolWOZEnvironment, paths  # noqa: E402
from josh.envs.toolwoz.store import _write_database  # noqa: E402
from tests.conformance.conftest import ReferenceOracle  # noqa: E402


def call_sequences(env: ToolWOZEnvironment, n_tasks: int) -> list[tuple[str, list[tuple[str, dict]]]]:
    """Per task: the exact goal calls, then partial searches (decoys) and a wrong booking."""
    out = []
    for task in list(env.tasks("test"))[:n_tasks]:
        calls: list[tuple[str, dict]] = []
        for goal in task.goal_calls:
            args = goal.arguments
            if goal.action == "search":
                first = dict(list(args.items())[:1])
                calls.append((goal.name, first))
                calls.append((goal.name, {}))
            else:
                calls.append((goal.name, {**args, "people": "99"}))
            calls.append((goal.name, args))
        out.append((task.task_id, calls))
    return out


def time_ours(env: ToolWOZEnvironment, sequences) -> tuple[int, float]:
    calls = 0
    started = time.perf_counter()
    for task_id, sequence in sequences:
        session = env.session(task_id)
        for name, arguments in sequence:
            session.call(name, arguments)
            calls += 1
    return calls, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=200, help="test tasks whose call sequences are timed")
    parser.add_argument(
        "--skip-reference-build", action="store_true", help="skip the reference's ~40 s build"
    )
    args = parser.parse_args()

    env = ToolWOZEnvironment.load(print)
    sequences = call_sequences(env, args.tasks)
    time_ours(env, sequences)  # warm the statement cache and the task cache
    runs = [time_ours(env, sequences) for _ in range(5)]
    n_calls = runs[0][0]
    ours_call = statistics.median(t for _, t in runs) / n_calls

    setup_ids = env.task_ids("val")[:200]
    fresh = ToolWOZEnvironment(env.store)
    started = time.perf_counter()
    for task_id in setup_ids:
        fresh.session(task_id)
    ours_setup = (time.perf_counter() - started) / len(setup_ids)

    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        _write_database(Path(tmp) / "bench.sqlite", paths.wheel_path(), None)
        ours_build = time.perf_counter() - started

    workdir = Path(tempfile.gettempdir()) / "josh-bench-reference"
    oracle = ReferenceOracle(workdir)
    try:
        ref = oracle._ask(
            {
                "op": "bench",
                "sequences": [[f"{k}.json", [list(c) for c in calls]] for k, calls in sequences],
                "setup_tasks": [f"{k}.json" for k in setup_ids[:20]],
            }
        )
        ref_build = None if args.skip_reference_build else oracle._ask({"op": "build"})["build_seconds"]
    finally:
        oracle.close()
    ref_call = ref["call_seconds"] / ref["calls"]
    assert ref["calls"] == n_calls

    print(f"\nToolWOZ environment benchmark ({n_calls:,} calls over {len(sequences)} test tasks)")
    print(
        f"  tool call      ours {ours_call * 1e6:9.1f} us   reference {ref_call * 1e3:8.2f} ms   "
        f"ratio {ref_call / ours_call:8.1f}x  (target >= 100x)"
    )
    print(
        f"  session set-up ours {ours_setup * 1e6:9.1f} us   reference {ref['setup_seconds'] * 1e3:8.2f} ms   "
        f"ratio {ref['setup_seconds'] / ours_setup:8.1f}x"
    )
    ref_build_text = f"reference {ref_build:8.1f} s" if ref_build is not None else "reference (skipped)"
    print(f"  full build     ours {ours_build:9.1f} s    {ref_build_text}   (target < 15 s, all 7,849 tasks)")


if __name__ == "__main__":
    main()
