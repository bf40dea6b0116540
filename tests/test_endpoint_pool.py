"""Several endpoints of one model (`--base-url` repeated): a session stays on one server, new sessions go to the
least loaded, a dead server's work moves to the live ones, and the run stops only when all are down."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from josh.benchmarks.toolwoz.config import ToolWOZEvalConfig
from josh.llm import EndpointBreaker, EndpointDownError, EndpointPool, OpenAIChatModel, RetryPolicy
from josh.types import UserMessage
from tests.test_eval_robustness import free_port, serve_mock, wait_for_records
from tests.test_llm_openai import FakeOpenAI, text

FAST = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.02)


def pool_over(*servers: FakeOpenAI, max_outage: float = 60.0) -> EndpointPool:
    return EndpointPool(
        [
            OpenAIChatModel(
                "m",
                base_url=server.base_url,
                timeout=2.0,
                retry=FAST,
                breaker=EndpointBreaker(threshold=2, max_outage_s=max_outage, probe_base_delay=0.05),
            )
            for server in servers
        ]
    )


def session(task: str) -> dict[str, str]:
    return {"task_id": task, "trial": "0", "role": "agent"}


@pytest.fixture
def two() -> Any:
    servers = (FakeOpenAI(), FakeOpenAI())
    yield servers
    for server in servers:
        server.close()


def test_each_session_stays_on_one_server_and_sessions_spread(two: tuple[FakeOpenAI, FakeOpenAI]) -> None:
    async def run() -> EndpointPool:
        pool = pool_over(*two)
        async with asyncio.TaskGroup() as group:
            for task in ("A", "B", "C", "D"):
                group.create_task(turns(pool, task, 3))
        await pool.aclose()
        return pool

    async def turns(pool: EndpointPool, task: str, count: int) -> None:
        for turn in range(count):
            await pool.chat([UserMessage(content=f"{task}{turn}")], metadata=session(task))

    pool = asyncio.run(run())
    where: dict[str, set[int]] = defaultdict(set)
    for index, server in enumerate(two):
        for seen in server.requests:
            where[seen.headers["x-josh-task-id"]].add(index)
            assert seen.headers["x-session-id"] == f"{seen.headers['x-josh-task-id']}/0"
            assert seen.headers["x-smg-routing-key"] == seen.headers["x-session-id"]
    assert all(len(servers) == 1 for servers in where.values()), where
    assert len(two[0].requests) == len(two[1].requests) == 6
    assert pool.calls == {two[0].base_url: 6, two[1].base_url: 6}


def test_a_new_session_goes_to_the_least_loaded_server(two: tuple[FakeOpenAI, FakeOpenAI]) -> None:
    first, second = two
    first.queue(text(delay=0.6))  # session A's call holds the first server

    async def run() -> None:
        pool = pool_over(*two)
        held = asyncio.create_task(pool.chat([UserMessage(content="a")], metadata=session("A")))
        await asyncio.sleep(0.2)
        await pool.chat([UserMessage(content="b")], metadata=session("B"))  # the second: nothing in flight
        await pool.chat([UserMessage(content="c")], metadata=session("C"))  # still the second: A in flight
        await held
        await pool.aclose()

    asyncio.run(run())
    assert [seen.headers["x-josh-task-id"] for seen in first.requests] == ["A"]
    assert [seen.headers["x-josh-task-id"] for seen in second.requests] == ["B", "C"]


def test_a_dead_servers_sessions_move_to_the_live_one(two: tuple[FakeOpenAI, FakeOpenAI]) -> None:
    first, second = two

    async def run() -> EndpointPool:
        pool = pool_over(*two)
        for task in ("A", "B"):
            await pool.chat([UserMessage(content="1")], metadata=session(task))
        first.close()  # A's server dies
        for task in ("A", "B"):
            replies = await pool.chat([UserMessage(content="2")], metadata=session(task))
            assert replies[0].content == "hello"
        await pool.aclose()
        return pool

    pool = asyncio.run(run())
    assert [seen.headers["x-josh-task-id"] for seen in second.requests] == ["B", "A", "B"]
    assert pool.moved == 1


def test_the_run_stops_only_when_every_server_is_down(two: tuple[FakeOpenAI, FakeOpenAI]) -> None:
    async def run() -> None:
        pool = pool_over(*two, max_outage=0.3)
        await pool.chat([UserMessage(content="1")], metadata=session("A"))
        for server in two:
            server.close()
        try:
            await pool.chat([UserMessage(content="2")], metadata=session("A"))
        finally:
            await pool.aclose()

    with pytest.raises(EndpointDownError, match="all 2 endpoints of m are down"):
        asyncio.run(run())


def test_base_url_is_repeatable_and_one_url_keeps_its_hash() -> None:
    one = ToolWOZEvalConfig(model="m", base_url="http://a/v1")
    assert one.base_url == ["http://a/v1"]
    two = ToolWOZEvalConfig(model="m", base_url=["http://a/v1", "http://b/v1"])
    assert one.config_hash() == two.config_hash()  # adding servers keeps --resume going
    assert one.model_dump(mode="json")["base_url"] == "http://a/v1"  # run files keep the old form
    with pytest.raises(ValueError, match="the same URL is given twice"):
        ToolWOZEvalConfig(model="m", base_url=["http://a/v1", "http://a/v1"])
    with pytest.raises(ValueError, match="the same URL is given twice"):  # a trailing / names it again
        ToolWOZEvalConfig(model="m", base_url=["http://a/v1", "http://a/v1/"])


def josh_over(urls: list[str], command: str, *options: str) -> subprocess.Popen[str]:
    """`josh COMMAND toolwoz` in its own process, its agent and customer the mock on every URL of `urls`."""
    endpoints = [flag for url in urls for flag in ("--base-url", url)]
    endpoints += [flag for url in urls for flag in ("--user-base-url", url)]
    args = [command, "toolwoz", "--model", "josh-mock-agent", "--user-model", "josh-mock-user", *endpoints]
    return subprocess.Popen(
        [sys.executable, "-m", "josh.cli.main", *args, *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
@pytest.mark.data
def test_a_harvest_over_two_endpoints_finishes_after_one_is_killed(tmp_path: Path) -> None:
    """The issue's acceptance test: 12/12 trees, exit 0, with one of two endpoints killed mid-run."""
    ports = [free_port(), free_port()]
    servers = [serve_mock(port, "--mock-latency", "0.02", "--mock-mistake-rate", "0.5") for port in ports]
    urls = [f"http://127.0.0.1:{port}/v1" for port in ports]
    out = tmp_path / "trees.jsonl"
    proc = josh_over(urls, "harvest", "--limit", "12", "--concurrency", "4", "--max-outage", "3", "--out", str(out))
    try:
        wait_for_records(out, 3, proc)
        servers[0].kill()
        servers[0].wait()
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        for server in servers:
            server.kill()
            server.wait()
    assert proc.returncode == 0, stderr
    trees = [json.loads(line) for line in out.read_text().splitlines() if '"task_id"' in line]
    assert len(trees) == 12 and all(tree["status"] == "success" for tree in trees)
    assert len({tree["task_id"] for tree in trees}) == 12
    calls = json.loads((tmp_path / "trees.summary.json").read_text())["calls_per_endpoint"]
    assert set(calls["agent"]) == set(urls) and all(count > 0 for count in calls["agent"].values())
    assert "agent calls per endpoint" in stderr


@pytest.mark.slow
@pytest.mark.data
def test_an_eval_over_two_endpoints_stops_with_4_when_both_die(tmp_path: Path) -> None:
    ports = [free_port(), free_port()]
    servers = [serve_mock(port, "--mock-latency", "0.05") for port in ports]
    urls = [f"http://127.0.0.1:{port}/v1" for port in ports]
    out = tmp_path / "run.jsonl"
    proc = josh_over(urls, "eval", "--limit", "30", "--concurrency", "2", "--max-outage", "2", "--out", str(out))
    try:
        wait_for_records(out, 2, proc)
    finally:
        for server in servers:
            server.kill()
            server.wait()
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 4, stderr
    assert "all 2 endpoints of josh-mock-" in stderr and "--resume" in stderr
    rows = [json.loads(line) for line in out.read_text().splitlines() if '"task_id"' in line]
    assert rows and all(row["status"] == "success" for row in rows)  # no error records for what did not run
