"""josh through a router in front of a fleet (the `[router]` extra: vllm-router): the session key josh sends keeps
each conversation on one server, whatever the router's other traffic."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from josh.llm import OpenAIChatModel, RetryPolicy
from josh.types import UserMessage
from tests.test_eval_robustness import free_port
from tests.test_llm_openai import FakeOpenAI


class Worker(FakeOpenAI):
    """A model server with the health route routers poll."""

    def handle_get(self, handler: Any) -> None:
        if handler.path.rstrip("/") == "/health":
            self.send(handler, 200, {"status": "ok"})
        else:
            super().handle_get(handler)


def router_binary() -> str | None:
    beside = Path(sys.executable).parent / "vllm-router"
    return str(beside) if beside.exists() else shutil.which("vllm-router")


@pytest.fixture
def routed() -> Iterator[tuple[str, list[Worker]]]:
    binary = router_binary()
    if binary is None:
        pytest.skip("vllm-router is not installed (pip install -e '.[router]')")
    workers = [Worker(), Worker()]
    port = free_port()
    roots = [worker.base_url.removesuffix("/v1") for worker in workers]
    router = subprocess.Popen(
        [binary, "--host", "127.0.0.1", "--port", str(port), "--policy", "consistent_hash", "--worker-urls", *roots],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:  # it listens once every worker is healthy
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or router.poll() is not None:
                raise AssertionError("vllm-router did not start")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/v1", workers
    finally:
        router.terminate()
        router.wait()
        for worker in workers:
            worker.close()


@pytest.mark.slow
def test_vllm_router_keeps_each_session_on_one_server(routed: tuple[str, list[Worker]]) -> None:
    url, workers = routed
    tasks = [f"MUL{i:04d}" for i in range(8)]

    async def run() -> None:
        async with OpenAIChatModel("m", base_url=url, retry=RetryPolicy(max_attempts=2)) as model:
            for turn in range(3):
                for task in tasks:
                    metadata = {"task_id": task, "trial": "0", "role": "agent"}
                    await model.chat([UserMessage(content=f"{task} turn {turn}")], metadata=metadata)

    asyncio.run(run())
    served: dict[str, set[int]] = {}
    for index, worker in enumerate(workers):
        for seen in worker.requests:
            if seen.body:
                task = seen.body["messages"][0]["content"].split()[0]
                served.setdefault(task, set()).add(index)
    assert set(served) == set(tasks)
    assert all(len(indexes) == 1 for indexes in served.values()), served  # each session on one server
    assert {index for indexes in served.values() for index in indexes} == {0, 1}  # and both servers used
