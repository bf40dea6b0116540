"""Benchmark: `josh eval` orchestration against the scripted mock endpoint, measured in one run.

The reference runs conversations one after another by default (max_concurrency=1). With a model whose
every call takes `--latency` seconds, this prints conversations per second at concurrency 1 (that
baseline) and at `--concurrency N`, and their ratio; plus the overhead per model call with no latency
(HTTP round trip, prompt building, tool execution, recording).

Usage: python bench/eval_orchestration.py [--tasks 48] [--latency 0.05] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from josh.benchmarks.endpoints import open_endpoints
from josh.benchmarks.toolwoz.benchmark import evaluate
from josh.benchmarks.toolwoz.config import ToolWOZEvalConfig
from josh.envs.toolwoz import ToolWOZEnvironment
from josh.runner import open_run, read_run


def run(env: ToolWOZEnvironment, tasks: int, latency: float, concurrency: int) -> tuple[float, int, int]:
    """Seconds, conversations and model calls of one dry-run eval."""
    config = ToolWOZEvalConfig.model_validate(
        {"limit": tasks, "concurrency": concurrency, "mock_latency": latency}
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "run.jsonl"
        writer = open_run(path, config={}, config_hash="bench", seed=0, resume=False, command="bench")
        endpoints = open_endpoints(config, env)

        async def go() -> None:
            try:
                await evaluate(config, env, endpoints, writer)
            finally:
                await endpoints.aclose()

        started = time.perf_counter()
        asyncio.run(go())
        seconds = time.perf_counter() - started
        writer.close("success")
        records = read_run(path).records
    assert len(records) == tasks and all(r["status"] == "success" for r in records)
    calls = sum(r["agent_model_calls"] + r["user_model_calls"] for r in records)
    return seconds, len(records), calls


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=48)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per mock model call")
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    env = ToolWOZEnvironment.load(print)
    run(env, 4, 0.0, 4)  # warm up

    seq_s, n, calls = run(env, args.tasks, args.latency, 1)
    par_s, _, _ = run(env, args.tasks, args.latency, args.concurrency)
    free_s, _, free_calls = run(env, args.tasks, 0.0, 1)

    print(
        f"\njosh eval orchestration ({n} conversations, {calls} model calls, {args.latency * 1000:.0f} ms a call)"
    )
    print(f"  concurrency 1 (the reference's default) {n / seq_s:7.2f} conversations/s")
    print(
        f"  concurrency {args.concurrency:<3}                         {n / par_s:7.2f} conversations/s   "
        f"ratio {seq_s / par_s:5.1f}x"
    )
    print(
        f"  overhead per model call at 0 latency     {free_s / free_calls * 1000:7.2f} ms "
        "(HTTP round trip, prompts, tools, records)"
    )


if __name__ == "__main__":
    main()
