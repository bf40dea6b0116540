"""`--ray ADDRESS`: a run spread over a Ray cluster, here a local one of two worker slots on CPU (one per module:
Ray starts in seconds), against the dry run's mock endpoint on the driver. A worker killed mid-run costs
nothing: Ray runs its tree again, and every tree is recorded once."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from josh.benchmarks.ray_jobs import StoppedBy
from josh.cli.main import app
from josh.llm.base import EndpointDownError, EndpointError
from josh.runner.ray_cluster import RAY_INSTALL
from tests.test_cli_data import run_josh
from tests.test_eval_cli import records
from tests.test_eval_robustness import free_port, serve_mock


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A local Ray cluster of two worker slots; its address, for `--ray` (each run joins it as a driver)."""
    ray = pytest.importorskip("ray")
    context = ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        yield context.address_info["gcs_address"]
    finally:
        ray.shutdown()


def _busy_workers() -> list[int]:
    """The pids of the Ray workers running a job now (Ray titles a worker by the task it runs)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if title.startswith(b"ray::run_share"):
                pids.append(int(entry.name))
    return pids


def _kill_a_busy_worker(killed: list[int], stop: threading.Event) -> None:
    while not stop.is_set():
        busy = _busy_workers()
        if busy:
            os.kill(busy[0], signal.SIGKILL)
            killed.append(busy[0])
            return
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.data
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds Ray's workers in /proc")
def test_a_harvest_survives_a_killed_worker_with_every_tree_once(cluster: str, tmp_path: Path) -> None:
    out = tmp_path / "trees.jsonl"
    killed: list[int] = []
    stop = threading.Event()
    killer = threading.Thread(target=_kill_a_busy_worker, args=(killed, stop), daemon=True)
    killer.start()
    try:
        run = run_josh(
            "harvest", "toolwoz", "--limit", "6", "--concurrency", "4", "--mock-latency", "0.05",
            "--ray", cluster, "--out", str(out), timeout=180,
        )  # fmt: skip
    finally:
        stop.set()
        killer.join()
    assert run.returncode == 0, run.stderr
    assert killed, "no worker was running a tree to kill"
    assert "Ray: connected to" in run.stderr and "2 worker slots on 1 node" in run.stderr
    trees = records(out)
    assert Counter((t["task_id"], t["trial"]) for t in trees) == Counter(
        {key: 1 for key in {(t["task_id"], t["trial"]) for t in trees}}
    )
    assert len(trees) == 6 and all(t["status"] == "success" and t["nodes"] for t in trees)


@pytest.mark.slow
@pytest.mark.data
def test_an_eval_over_ray_resumes_a_local_run(cluster: str, tmp_path: Path) -> None:
    out = tmp_path / "run.jsonl"
    assert run_josh("eval", "toolwoz", "--limit", "2", "--out", str(out)).returncode == 0
    more = run_josh("eval", "toolwoz", "--limit", "4", "--ray", cluster, "--out", str(out), "--resume")
    assert more.returncode == 0, more.stderr
    assert "4 conversations (4 tasks x 1 trial), 2 already done" in more.stderr
    runs = records(out)
    assert len(runs) == len({(r["task_id"], r["trial"]) for r in runs}) == 4
    assert all(r["status"] == "success" and r["reward"] is not None and r["messages"] for r in runs)


@pytest.mark.slow
@pytest.mark.data
def test_workers_route_over_several_endpoints_and_the_summary_counts_their_calls(
    cluster: str, tmp_path: Path
) -> None:
    """`--ray` with two `--base-url`: each worker's tree goes to a server, and the driver's summary counts the
    calls the workers made on each (not the driver's own, which made none)."""
    ports = [free_port(), free_port()]
    servers = [serve_mock(port) for port in ports]
    urls = [f"http://127.0.0.1:{port}/v1" for port in ports]
    out = tmp_path / "trees.jsonl"
    try:
        run = run_josh(
            "harvest", "toolwoz", "--model", "josh-mock-agent", "--base-url", urls[0], "--base-url", urls[1],
            "--user", "replay", "--limit", "4", "--ray", cluster, "--out", str(out), timeout=180,
        )  # fmt: skip
    finally:
        for server in servers:
            server.kill()
            server.wait()
    assert run.returncode == 0, run.stderr
    trees = records(out)
    calls = json.loads((tmp_path / "trees.summary.json").read_text())["calls_per_endpoint"]["agent"]
    assert set(calls) == set(urls)
    assert sum(calls.values()) == sum(c["role"] == "agent" for t in trees for c in t["model_calls"]) > 0


def test_without_ray_the_flag_is_one_line_naming_the_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError, as when not installed
    out = tmp_path / "run.jsonl"
    result = CliRunner().invoke(app, ["harvest", "toolwoz", "--limit", "1", "--ray", "local", "--out", str(out)])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and RAY_INSTALL in lines[0] and "--ray" in lines[0]
    assert not out.exists()


def test_a_worker_stopped_by_its_endpoint_stops_the_run_with_that_error() -> None:
    assert type(StoppedBy("EndpointDownError", "down for 300 s").exception()) is EndpointDownError
    assert type(StoppedBy("NotAnError", "?").exception()) is EndpointError


@pytest.mark.parametrize("address", ["127.0.0.1:1", "ray://127.0.0.1:1", "no-port-here"])
def test_an_address_nothing_listens_on_is_one_line_at_once(tmp_path: Path, address: str) -> None:
    pytest.importorskip("ray")
    out = tmp_path / "run.jsonl"
    started = time.monotonic()
    result = CliRunner().invoke(app, ["harvest", "toolwoz", "--limit", "1", "--ray", address, "--out", str(out)])
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and address in lines[0], lines
    assert time.monotonic() - started < 30  # Ray alone retries for minutes
    assert not out.exists()
