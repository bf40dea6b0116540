"""Benchmark: `josh harvest toolwoz` (the JOSH beam search) against the scripted mock endpoint, in one run.

Every model call goes over HTTP to the mock endpoint (in this process, in a thread), which answers it
`--latency` seconds after its bytes were read, its own work included (as a server's response time includes
its work), on a timer that fires to the microsecond (`event_loop.run(precise_timers=True)`); the mock's oracle
agent gets a goal call's argument wrong at `--mistake-rate`, so branches fail and the beam fills up.

Why the customer replays the original dialogue (`--user replay`, the default): the oracle makes two goal
calls a turn and says it is done once every goal call is made, right or wrong, and the mock customer then
hangs up. ToolWOZ tasks have at most 4 goal calls, so with the mock customer (`--user goal`) no tree runs
past 2 steps or 4 leaves, whatever the mistake rate. The replayed customer goes on for the whole original
dialogue, so trees run up to 15 steps and reach 8 leaves. Its turns call no model (no latency).

What it prints, all measured in one run:

- the trees: nodes, model calls, leaves a tree (pruned ones included), live leaves a step, and how many
  trees had `--beam` live leaves at some step (the beam was exercised);
- wall time of the harvest: leaves and trees concurrently, `--concurrency` trees at once;
- the critical-path bound: the time an orchestrator with no overhead at all would take. Defined from what
  the tree records hold (nodes with the messages each added; the tree's ledger of model calls):
    * The steps of a tree are synchronised by the algorithm itself: the reward check needs every live
      leaf's agent turn, and the customer turns come after it. So a tree's bound is the sum, over its
      phases (the customer's opening, then each step's agent phase and customer phase), of the slowest
      leaf's model latency in that phase. A leaf's model latency in a phase is its model calls in that
      turn (they are sequential) times `--latency`, the mock's answer time: the model's own time, without
      the HTTP round trip, the mock's queue or our work, which are overhead the ratio must show. A first call
      that siblings share through n-sampling counts once for each of them (each waits for it).
    * Read back from the records: an agent turn makes one model call per assistant message it added; a
      customer turn one with a model customer, none with the replay; a child's first turn is at the step
      after its parent's last. The reconstruction is checked against the ledger (the calls per leaf must
      sum to the summed `n` of the tree's agent calls, the steps to the tree's), or the script stops.
    * Trees run in a pool of `--concurrency` workers, each taking the next task when free: the run's bound
      is the makespan of that schedule with each tree taking its own bound (with `--concurrency` >=
      `--tasks`, the slowest tree's bound).
- the client's CPU per model call, with the mock endpoint in its own process (`josh serve-mock`, as a real
  server is): the model calls of a few in-process trees replayed, 16 at once, through `OpenAIChatModel`
  with the openai SDK's transport and with josh's own (`josh.llm.openai_compat.transport`); this process's
  CPU time / calls (target <= 1.5 ms);
- the harvest over HTTP with the mock in its own process (warmed by a 2-tree harvest, as a server is before
  use; the median of `--repeats` runs, with their range: one run's ratio moves by 0.1 on a shared machine):
  its critical-path ratio (below), this process's CPU per call (search, agents and client; the mock's work
  is the other process's), and how long a model call took on average as josh saw it;
- "critical-path ratio": wall time / bound (target <= 1.15). Also this process's CPU time during the
  harvest: one Python process (one GIL) drives every request and serves the mock, so when CPU time nears
  wall time the run is CPU-bound (the HTTP client's work per call, times the calls), not waiting on the
  critical path;
- the same, with the in-process scripted model (no HTTP) holding each call `--latency` seconds in asyncio:
  the orchestration without the HTTP stack (search, branches, agents, n-sampling, ledger, and the mock's
  policy, about half of its CPU), against its own bound (the same trees: the mock is deterministic);
- the same harvest with the leaves of a step run one after another (the reference's `JOSH.step`; it also
  turns n-sampling off, which needs the siblings at once), same trees at once, over HTTP and in-process:
  its wall time / ours, and the most the trees' shapes allow (the pool makespan of each tree's calls laid
  end to end / the bound). Then the reference's whole way, one tree at a time and one leaf at a time,
  over HTTP, unless `--no-fully-sequential` (most of the script's time): its wall time / ours is the
  "speed-up" the target (>= 6) refers to;
- prompt tokens (agent and customer) per golden conversation (a tree whose golden path reached reward
  1.0: what `josh export sft` keeps) and per tree, with n-sampling on and off (same tasks, same seed), on a
  dry run's own settings (mistake rate 0.3, the mock customer: trees that reach reward 1.0), in-process
  (the mock counts tokens the same way there); and, exact, what n-sampling saved in the run with it on:
  the prompt tokens of each n-choice call times n - 1;
- the peak memory of the largest tree (most nodes in the main run): Python allocations traced by
  `tracemalloc` while that tree is grown again in-process, from a fresh session to its finished record
  (ledger, forked sessions, agents and messages included); and that record's size as JSON;
- driven model calls per second with the zero-latency in-process scripted model (target >= 1,000 on 2
  cores): calls made (a call with n choices once) / wall time of the harvest, the mock's policy included;
  the best of 3.

Usage: python bench/josh_orchestration.py [--tasks 20] [--latency 0.05] [--beam 8] [--mistake-rate 0.8]
       [--concurrency 20] [--user replay|goal] [--repeats 3] [--mock-processes 1] [--no-fully-sequential]
       [--client-only]
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import os
import re
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from josh.benchmarks.endpoints import Endpoints, open_endpoints
from josh.benchmarks.toolwoz.config import ToolWOZHarvestConfig
from josh.benchmarks.toolwoz.harvest import harvest, harvest_tree
from josh.envs.toolwoz import ToolWOZEnvironment
from josh.llm import OpenAIChatModel, event_loop
from josh.llm.base import ChatModel
from josh.mock.policies import MODEL_NAMES
from josh.runner import open_run, read_run
from josh.search import SearchConfig
from josh.types import AssistantMessage, Message

DRY_RUN_MISTAKE_RATE = 0.3  # `josh harvest toolwoz`'s own, with no --model


@dataclass
class Harvest:
    """One harvest: wall and CPU seconds, and the records (in the order the trees finished)."""

    seconds: float
    cpu_seconds: float
    records: list[dict[str, Any]]
    mock_cpu_seconds: float | None = None  # the mock's, when it runs in its own process

    @property
    def calls(self) -> int:
        return sum(len(r["model_calls"]) for r in self.records)


class HeldModel:
    """A chat model that holds every call `latency` seconds (in asyncio) before asking `model`."""

    def __init__(self, model: ChatModel, latency: float) -> None:
        self.model, self.latency, self.name = model, latency, model.name

    async def chat(self, messages: Sequence[Message], **options: Any) -> list[AssistantMessage]:
        await asyncio.sleep(self.latency)
        return await self.model.chat(messages, **options)

    async def aclose(self) -> None:
        await self.model.aclose()


class RecordingModel:
    """A chat model that notes every call (its messages and options) before asking `model`."""

    def __init__(self, model: ChatModel, calls: list[tuple[Sequence[Message], dict[str, Any]]]) -> None:
        self.model, self.calls, self.name = model, calls, model.name

    async def chat(self, messages: Sequence[Message], **options: Any) -> list[AssistantMessage]:
        self.calls.append((list(messages), dict(options)))
        return await self.model.chat(messages, **options)

    async def aclose(self) -> None:
        await self.model.aclose()


class MockProcess:
    """`josh serve-mock` in its own process (as a real server is), on a free port."""

    def __init__(self, latency: float, mistake_rate: float) -> None:
        command = [sys.executable, "-m", "josh.cli.main", "serve-mock", "--port", "0",
                   "--mock-latency", str(latency), "--mock-mistake-rate", str(mistake_rate)]  # fmt: skip
        self.process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        assert self.process.stderr is not None
        found = None
        while found is None:
            line = self.process.stderr.readline()
            if not line:
                raise SystemExit("josh serve-mock did not start")
            found = re.search(r"http://127\.0\.0\.1:\d+/v1", line)
        self.base_url = found.group(0)

    def cpu_seconds(self) -> float | None:
        """The mock process's CPU time so far (Linux's /proc), None where it cannot be read."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def __enter__(self) -> MockProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait()


def make_config(args: argparse.Namespace, **options: Any) -> ToolWOZHarvestConfig:
    settings = {
        "limit": args.tasks,
        "beam": args.beam,
        "concurrency": args.concurrency,
        "mock_latency": args.latency,
        "mock_mistake_rate": args.mistake_rate,
        "user": args.user,
    }
    settings.update(options)
    if settings.get("model") == "scripted":
        settings.pop("mock_latency")  # in-process: no HTTP to hold
    if settings.get("base_url"):  # a mock in its own process: its options are its own
        settings.pop("mock_latency")
        settings.pop("mock_mistake_rate")
    return ToolWOZHarvestConfig.model_validate(settings)


def external(args: argparse.Namespace, base_urls: list[str], **options: Any) -> ToolWOZHarvestConfig:
    """The harvest over HTTP against the mock endpoint in its own process(es) at `base_urls` (several: josh
    spreads the trees over them, as over several servers of a model)."""
    agent, user = MODEL_NAMES
    return make_config(
        args, model=agent, base_url=base_urls, user_model=user, user_base_url=base_urls, **options
    )


def record_calls(env: ToolWOZEnvironment, config: ToolWOZHarvestConfig) -> list[tuple[Any, dict[str, Any]]]:
    """The model calls (messages, options) of an in-process harvest (`config.model` is "scripted")."""
    calls: list[tuple[Any, dict[str, Any]]] = []
    endpoints = open_endpoints(config, env)
    recording = RecordingModel(endpoints.agent, calls)
    endpoints = Endpoints(recording, recording if endpoints.user is not None else None)
    with tempfile.TemporaryDirectory() as tmp:
        writer = open_run(
            Path(tmp) / "t.jsonl", config={}, config_hash="bench", seed=0, resume=False, command="b"
        )

        async def go() -> None:
            try:
                await harvest(config, env, endpoints, writer)
            finally:
                await endpoints.aclose()

        event_loop.run(go())
        writer.close("success")
    return calls


def client_cpu_ms(
    base_url: str, calls: list[tuple[Any, dict[str, Any]]], transport: str, rounds: int
) -> float:
    """CPU milliseconds of this process per model call: `calls` replayed `rounds` times, 16 at once, against
    the mock in its own process, through `OpenAIChatModel` with `transport` (the client alone: no search, no
    agents, no mock)."""
    agent, user = MODEL_NAMES

    async def go() -> float:
        models = {
            role: OpenAIChatModel(name, base_url=base_url, transport=transport)  # type: ignore[arg-type]
            for role, name in (("agent", agent), ("user", user))
        }
        gate = asyncio.Semaphore(16)

        async def one(messages: Any, options: dict[str, Any]) -> None:
            role = "user" if (options.get("metadata") or {}).get("role") == "user" else "agent"
            async with gate:
                await models[role].chat(messages, **options)

        await asyncio.gather(*(one(m, o) for m, o in calls[:16]))  # warm: connections, caches
        cpu = time.process_time()
        for _ in range(rounds):
            await asyncio.gather(*(one(m, o) for m, o in calls))
        spent = time.process_time() - cpu
        for model in models.values():
            await model.aclose()
        return spent / (rounds * len(calls)) * 1000

    return event_loop.run(go())


def run_harvest(
    env: ToolWOZEnvironment,
    config: ToolWOZHarvestConfig,
    *,
    sequential: bool = False,
    hold: float | None = None,
) -> Harvest:
    """A harvest into a scratch run file. `sequential` steps the leaves one after another; `hold` wraps the
    in-process scripted model (`config.model` must be "scripted") in a `HeldModel`."""
    search = (
        SearchConfig(beam=config.beam, max_steps=config.max_steps, sequential=True) if sequential else None
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trees.jsonl"
        writer = open_run(
            path, config={}, config_hash="bench", seed=config.seed, resume=False, command="bench"
        )
        endpoints = open_endpoints(config, env)
        if hold is not None:
            held = HeldModel(endpoints.agent, hold)
            endpoints = Endpoints(held, held if endpoints.user is not None else None)

        async def go() -> None:
            try:
                await harvest(config, env, endpoints, writer, search=search)
            finally:
                await endpoints.aclose()

        cpu = time.process_time()
        started = time.perf_counter()
        event_loop.run(go(), precise_timers=hold is not None)  # a held call ends on time, as the mock's
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu
        writer.close("success")
        records = read_run(path).records
    bad = [r["task_id"] for r in records if r["status"] != "success"]
    if len(records) != config.limit or bad:
        raise SystemExit(f"the harvest did not finish cleanly: {len(records)} trees, failed: {bad}")
    return Harvest(seconds, cpu, records)


# -- the critical path, read back from the records ----------------------------------------------------


def _is_customer(message: Mapping[str, Any], agent: str) -> bool:
    """A customer message in the agent's view (ReAct's tool results are user messages too)."""
    if message["role"] != "user":
        return False
    return agent == "fc" or not str(message.get("content") or "").startswith("APIRETURN")


def _turns(messages: list[dict[str, Any]], agent: str) -> list[tuple[str, int]]:
    """A node's messages as turns, in order: ("agent", its model calls) or ("customer", 1)."""
    turns: list[tuple[str, int]] = []
    for message in messages:
        if _is_customer(message, agent):
            turns.append(("customer", 1))
            continue
        calls = 1 if message["role"] == "assistant" else 0
        if turns and turns[-1][0] == "agent":
            turns[-1] = ("agent", turns[-1][1] + calls)
        else:
            turns.append(("agent", calls))
    return turns


@dataclass
class TreeShape:
    """What the critical path needs of one tree, per step (1-based)."""

    agent_calls: dict[int, list[int]]  # step -> model calls of each live leaf's agent turn
    customer_turns: dict[int, int]  # step -> customer turns taken after the agent phase
    opening: bool  # the customer opened the conversation (the first root's first message)
    leaves: int  # leaves of the finished tree, pruned ones included

    def bound_calls(self, customer_calls: int) -> int:
        """Model calls on the tree's critical path: per phase, the slowest leaf's."""
        total = customer_calls if self.opening else 0
        for step, calls in self.agent_calls.items():
            total += max(calls)
            if self.customer_turns.get(step):
                total += customer_calls
        return total

    def serial_calls(self, customer_calls: int) -> int:
        """Model calls of the tree laid end to end (every leaf's, one after another)."""
        customers = sum(self.customer_turns.values()) + (1 if self.opening else 0)
        return sum(sum(calls) for calls in self.agent_calls.values()) + customers * customer_calls

    @property
    def widest(self) -> int:
        return max(len(calls) for calls in self.agent_calls.values())


def tree_shape(record: dict[str, Any]) -> TreeShape:
    """Rebuild which leaf took which turn at which step; stop if it disagrees with the tree's ledger."""
    agent, nodes = record["agent"], record["nodes"]
    start: dict[int, int] = {}
    agent_calls: dict[int, list[int]] = {}
    customer_turns: dict[int, int] = {}
    opening = False
    parents = {n["parent"] for n in nodes if n["parent"] is not None}
    for node in nodes:  # in creation order: a parent comes before its children
        turns = _turns(node["messages"], agent)
        if node["parent"] is None:
            start[node["id"]] = 1
            if turns and turns[0][0] == "customer":
                opening, turns = True, turns[1:]
        step = start[node["id"]]
        for kind, calls in turns:
            if kind == "agent":
                agent_calls.setdefault(step, []).append(calls)
            else:
                customer_turns[step] = customer_turns.get(step, 0) + 1
                step += 1
        for child in nodes:
            if child["parent"] == node["id"]:
                start[child["id"]] = step  # expanded after its customer turn: the children go on next step
    counted = sum(sum(calls) for calls in agent_calls.values())
    ledger = sum(call["n"] for call in record["model_calls"] if call["role"] == "agent")
    if counted != ledger or len(agent_calls) != record["steps"]:
        raise SystemExit(
            f"{record['task_id']}: its nodes give {counted} agent calls over {len(agent_calls)} steps, its "
            f"ledger {ledger} over {record['steps']}: the critical path cannot be read back"
        )
    leaves = sum(1 for n in nodes if n["id"] not in parents)
    return TreeShape(agent_calls, customer_turns, opening, leaves)


def pool_makespan(durations: list[float], workers: int) -> float:
    """When the last job ends, `workers` at a time, each taking the next job (in order) when free."""
    free = [0.0] * min(workers, len(durations))
    for duration in durations:
        heapq.heappush(free, heapq.heappop(free) + duration)
    return max(free)


def shapes_in_order(records: list[dict[str, Any]], task_order: list[str]) -> list[TreeShape]:
    by_task = {r["task_id"]: r for r in records}
    return [tree_shape(by_task[task]) for task in task_order]


def critical_path(shapes: list[TreeShape], latency: float, customer_calls: int, workers: int) -> float:
    """The run's critical-path bound in seconds (the trees in task order, as the pool takes them)."""
    return pool_makespan([s.bound_calls(customer_calls) * latency for s in shapes], workers)


# -- tokens, memory ------------------------------------------------------------------------------------


def prompt_tokens(records: list[dict[str, Any]]) -> tuple[int, int]:
    """Prompt tokens of all trees (agent and customer), and how many golden conversations they gave."""
    tokens = sum(r["agent_usage"]["prompt_tokens"] + r["user_usage"]["prompt_tokens"] for r in records)
    return tokens, sum(1 for r in records if r["reward"] == 1.0)


def n_saving(records: list[dict[str, Any]]) -> int:
    """Prompt tokens the n-choice calls did not pay again: each one's prompt tokens times n - 1."""
    return sum(c["prompt_tokens"] * (c["n"] - 1) for r in records for c in r["model_calls"])


def tree_memory(env: ToolWOZEnvironment, config: ToolWOZHarvestConfig, task_id: str) -> tuple[int, int, int]:
    """Peak traced bytes while one tree grows in-process, its node count and its record's JSON size."""
    endpoints = open_endpoints(config, env)  # `config.model` is "scripted": in-process, no mock thread

    async def grow() -> Any:
        return await harvest_tree(config, env, endpoints, task_id, 0)

    event_loop.run(grow())  # warm: prompts, caches, the task's data
    tracemalloc.start()
    try:
        record = event_loop.run(grow())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, len(record.nodes), len(record.model_dump_json())


def load_report() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min) {five:.2f} (5 min) on {os.cpu_count()} cores"


def print_client(
    args: argparse.Namespace,
    calls: list[Any],
    cpu_sdk: float,
    cpu_direct: float,
    apart_runs: list[Harvest],
    bound: float,
    machine: str | None = None,
) -> None:
    if machine is not None:
        print(f"\njosh's client, {args.latency * 1000:.0f} ms a model call; machine: {machine}")
    print(
        f"  client CPU per model call, the mock in its own process ({len(calls)} calls of {min(args.tasks, 5)} "
        f"trees replayed): openai SDK {cpu_sdk:.2f} ms, josh's client {cpu_direct:.2f} ms "
        f"({cpu_sdk / cpu_direct:.1f}x less; target <= 1.5 ms)"
    )
    ratios = sorted(run.seconds / bound for run in apart_runs)
    apart = sorted(apart_runs, key=lambda run: run.seconds)[len(apart_runs) // 2]
    latencies = [c["latency_s"] for r in apart.records for c in r["model_calls"] if c.get("latency_s")]
    print(
        f"  HTTP, the mock in {args.mock_processes} process(es) of its own (warmed; the median of "
        f"{len(apart_runs)} runs): wall {apart.seconds:.2f} s, bound {bound:.2f} s, critical-path ratio "
        f"{apart.seconds / bound:.2f} (target <= 1.15; {ratios[0]:.2f} to {ratios[-1]:.2f} over the runs); "
        f"this process's CPU {apart.cpu_seconds:.2f} s, {apart.cpu_seconds / apart.calls * 1000:.2f} ms a call "
        "(search, agents, client)"
        + (
            f"; the mock's processes {apart.mock_cpu_seconds / apart.calls * 1000:.2f} ms a call"
            if apart.mock_cpu_seconds is not None
            else ""
        )
    )
    if latencies:
        print(
            f"    a model call took {sum(latencies) / len(latencies) * 1000:.1f} ms on average as josh saw it "
            f"({args.latency * 1000:.0f} ms the mock's answer time): the rest is both processes' CPU queues "
            "when a step's leaves call at once"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=20, help="the first N tasks of the train split")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds the mock holds each call")
    parser.add_argument("--beam", type=int, default=8)
    parser.add_argument("--mistake-rate", type=float, default=0.8, help="the oracle's wrong goal calls")
    parser.add_argument("--concurrency", type=int, default=20, help="trees at once")
    parser.add_argument("--user", choices=["replay", "goal"], default="replay", help="the customer")
    parser.add_argument(
        "--mock-processes",
        type=int,
        default=1,
        help="mock endpoints in their own processes for the harvest over HTTP (josh spreads the trees over "
        "them as over several servers)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="runs of the harvest over HTTP with the mock in its own process (the median is shown: a shared "
        "machine's noise moves one run's ratio by 0.1 or more)",
    )
    parser.add_argument(
        "--client-only",
        action="store_true",
        help="only the client's CPU per call and the harvest with the mock in its own process (and, to "
        "compare, in-process), about 30 s",
    )
    parser.add_argument(
        "--no-fully-sequential",
        dest="fully_sequential",
        action="store_false",
        help="skip the reference's whole way (one tree, one leaf at a time: most of the run's time)",
    )
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    env = ToolWOZEnvironment.load(print)
    before = load_report()
    tasks = env.task_ids("train")[: args.tasks]
    customer_calls = 0 if args.user == "replay" else 1
    over_http, in_process = make_config(args), make_config(args, model="scripted")

    def bound_of(run: Harvest) -> float:
        return critical_path(
            shapes_in_order(run.records, tasks), args.latency, customer_calls, args.concurrency
        )

    run_harvest(env, make_config(args, limit=2, mock_latency=0.0))  # warm up
    calls = record_calls(env, make_config(args, model="scripted", limit=min(args.tasks, 5)))
    with MockProcess(0.0, args.mistake_rate) as fast:
        cpu_sdk = min(client_cpu_ms(fast.base_url, calls, "sdk", 2) for _ in range(2))
        cpu_direct = min(client_cpu_ms(fast.base_url, calls, "direct", 2) for _ in range(2))
    mocks = [MockProcess(args.latency, args.mistake_rate) for _ in range(args.mock_processes)]
    apart_runs = []
    try:
        urls = [mock.base_url for mock in mocks]
        run_harvest(env, external(args, urls, limit=2))  # warm: the mocks' first requests load their data
        for _ in range(args.repeats):
            mock_cpu = [mock.cpu_seconds() for mock in mocks]
            run = run_harvest(env, external(args, urls))
            after_cpu = [mock.cpu_seconds() for mock in mocks]
            if None not in mock_cpu and None not in after_cpu:
                run.mock_cpu_seconds = sum(after_cpu) - sum(mock_cpu)  # type: ignore[arg-type]
            apart_runs.append(run)
    finally:
        for mock in mocks:
            mock.__exit__()
    apart = sorted(apart_runs, key=lambda run: run.seconds)[len(apart_runs) // 2]  # the median run
    held = run_harvest(env, in_process, hold=args.latency)
    if args.client_only:
        print_client(args, calls, cpu_sdk, cpu_direct, apart_runs, bound_of(apart), load_report())
        print(
            f"  in-process model held as long (no HTTP): critical-path ratio "
            f"{held.seconds / bound_of(held):.2f}, CPU {held.cpu_seconds / held.calls * 1000:.2f} ms a call"
        )
        return
    ours = run_harvest(env, over_http)
    leaf_seq = run_harvest(env, over_http, sequential=True)
    held_leaf_seq = run_harvest(env, in_process, sequential=True, hold=args.latency)
    full_seq = None
    if args.fully_sequential:
        full_seq = run_harvest(env, make_config(args, concurrency=1), sequential=True)
    dry = {"mock_mistake_rate": DRY_RUN_MISTAKE_RATE, "user": "goal"}
    with_n = run_harvest(env, make_config(args, model="scripted", **dry))
    without_n = run_harvest(env, make_config(args, model="scripted", use_n=False, **dry))
    largest = max(ours.records, key=lambda r: len(r["nodes"]))
    peak, peak_nodes, record_bytes = tree_memory(env, in_process, largest["task_id"])
    free = min((run_harvest(env, in_process) for _ in range(3)), key=lambda h: h.seconds)
    after = load_report()

    shapes = shapes_in_order(ours.records, tasks)
    bound, held_bound, apart_bound = bound_of(ours), bound_of(held), bound_of(apart)
    ceiling = pool_makespan(
        [s.serial_calls(customer_calls) for s in shapes], args.concurrency
    ) / pool_makespan([s.bound_calls(customer_calls) for s in shapes], args.concurrency)
    leaves = [s.leaves for s in shapes]
    widths = [len(calls) for s in shapes for calls in s.agent_calls.values()]
    full_beam = sum(1 for s in shapes if s.widest >= args.beam)
    print(
        f"\njosh harvest orchestration: {args.tasks} train tasks, beam {args.beam}, mistake rate "
        f"{args.mistake_rate}, {args.user} customer, {args.latency * 1000:.0f} ms a model call, "
        f"{args.concurrency} trees at once"
    )
    print(f"  machine: {before} before, {after} after")
    print(
        f"  trees: {sum(len(r['nodes']) for r in ours.records)} nodes, {ours.calls} model calls; leaves a "
        f"tree {sum(leaves) / len(leaves):.1f} on average, {max(leaves)} at most; live leaves a step "
        f"{sum(widths) / len(widths):.1f} on average; {full_beam} of {len(shapes)} trees reached "
        f"{args.beam} live leaves"
    )
    print_client(args, calls, cpu_sdk, cpu_direct, apart_runs, apart_bound)
    print("                                           HTTP mock   in-process model held as long")
    print(f"  wall time                               {ours.seconds:7.2f} s   {held.seconds:7.2f} s")
    print(f"  critical-path bound                     {bound:7.2f} s   {held_bound:7.2f} s")
    print(
        f"  critical-path ratio (target <= 1.15)    {ours.seconds / bound:7.2f}     "
        f"{held.seconds / held_bound:7.2f}"
    )
    print(
        f"  CPU time of this process                {ours.cpu_seconds:7.2f} s   {held.cpu_seconds:7.2f} s   "
        f"(one GIL; HTTP: {ours.cpu_seconds / ours.calls * 1000:.1f} ms a call, client and mock)"
    )
    print(
        f"  leaves one after another, same trees at once {leaf_seq.seconds:6.2f} s   {held_leaf_seq.seconds:7.2f} s"
    )
    print(
        f"    ratio to ours                         {leaf_seq.seconds / ours.seconds:7.1f}     "
        f"{held_leaf_seq.seconds / held.seconds:7.1f}     (the trees' shapes allow at most {ceiling:.1f})"
    )
    if full_seq is not None:
        print(
            f"  one tree, one leaf at a time (reference) {full_seq.seconds:6.2f} s   speed-up of ours "
            f"{full_seq.seconds / ours.seconds:.1f} (target >= 6)"
        )
    for label, run in (("n-sampling on ", with_n), ("n-sampling off", without_n)):
        tokens, golden = prompt_tokens(run.records)
        per_golden = f"{tokens / golden:8.0f}" if golden else "     n/a"
        print(
            f"  prompt tokens, {label} {per_golden} per golden conversation ({golden} of "
            f"{len(run.records)} trees), {tokens / len(run.records):7.0f} per tree (dry-run settings: mistake "
            f"rate {DRY_RUN_MISTAKE_RATE}, mock customer)"
        )
    saved = n_saving(with_n.records)
    spent, _ = prompt_tokens(with_n.records)
    print(
        f"    n-sampling saved {saved} prompt tokens there, {saved / (saved + spent):.0%} of what one call "
        "per sibling would have sent with the same trees"
    )
    print(
        f"  peak memory of the largest tree ({largest['task_id']}, {peak_nodes} nodes): "
        f"{peak / 2**20:.2f} MiB traced while it grew; its record {record_bytes / 1024:.0f} KiB as JSON"
    )
    print(
        f"  driven model calls at 0 latency (in-process scripted model): {free.calls / free.seconds:6.0f} "
        f"calls/s ({free.calls} calls in {free.seconds:.2f} s; target >= 1,000 on 2 cores)"
    )


if __name__ == "__main__":
    main()
