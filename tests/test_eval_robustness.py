"""`josh eval` when things go wrong around it: signals, an endpoint that dies, a flaky start, a cached rerun."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.test_cli_data import run_josh
from tests.test_eval_cli import records

pytestmark = pytest.mark.data


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def wait_for_records(path: Path, count: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if path.exists() and path.read_text().count('"task_id"') >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"the run did not record {count} conversations while running")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_mock(port: int, *args: str) -> subprocess.Popen:
    server = subprocess.Popen(
        [sys.executable, "-m", "josh.cli.main", "serve-mock", "--port", str(port), *args],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert server.stderr is not None
    line = server.stderr.readline()
    while line and "http://127.0.0.1:" not in line:
        line = server.stderr.readline()
    assert f"127.0.0.1:{port}" in line, line
    return server


def mock_flags(port: int) -> list[str]:
    url = f"http://127.0.0.1:{port}/v1"
    return ["--model", "josh-mock-agent", "--base-url", url, "--user-model", "josh-mock-user", "--user-base-url", url]


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_ctrl_c_stop_cleanly_and_resume(tmp_path: Path, sig: signal.Signals) -> None:
    out = tmp_path / "run.jsonl"
    args = ["eval", "toolwoz", "--limit", "30", "--concurrency", "2", "--mock-latency", "0.03", "--out", str(out)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "josh.cli.main", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    wait_for_records(out, 3, proc)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr + stdout  # nor from the in-process mock server's threads
    assert f"interrupted: continue with the same command plus --resume --out {out}" in stderr
    assert "average reward" in stdout  # the summary of what finished is still printed and written
    status = [line for line in lines(out) if line.get("type") == "status"][-1]
    assert status["status"] == "cancelled" and status["wall_s"] > 0
    done = len(records(out))
    assert 3 <= done < 30
    resumed = run_josh(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    keys = Counter(r["task_id"] for r in records(out))
    assert len(keys) == 30 and set(keys.values()) == {1}
    summary = json.loads((tmp_path / "run.summary.json").read_text())
    assert summary["wall_s"] >= status["wall_s"]  # wall time adds up over resumes


@pytest.mark.slow
def test_an_endpoint_that_dies_stops_the_run_without_fake_results(tmp_path: Path) -> None:
    port = free_port()
    out = tmp_path / "run.jsonl"
    server = serve_mock(port, "--mock-latency", "0.05")
    args = ["eval", "toolwoz", *mock_flags(port), "--limit", "30", "--concurrency", "4", "--max-outage", "3",
            "--out", str(out)]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "josh.cli.main", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for_records(out, 4, proc)
    finally:
        server.kill()
        server.wait()
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 4, stderr
    assert "stopped:" in stderr and "unavailable" in stderr and "--resume" in stderr
    assert "Traceback" not in stderr
    rows = records(out)
    assert rows and all(r["status"] == "success" for r in rows)  # no error records for what did not run
    status = [line for line in lines(out) if line.get("type") == "status"][-1]
    assert status["status"] == "error" and "unavailable" in status["stopped"]
    server = serve_mock(port)
    try:
        resumed = run_josh(*args, "--resume")
    finally:
        server.kill()
        server.wait()
    assert resumed.returncode == 0, resumed.stderr
    keys = Counter(r["task_id"] for r in records(out))
    assert len(keys) == 30 and set(keys.values()) == {1}


def test_a_transient_error_at_start_does_not_fail_the_run(tmp_path: Path) -> None:
    # With fault seed 1 the mock's first request is an HTTP 500: the preflight meets it and retries.
    proc = run_josh("eval", "toolwoz", "--limit", "1", "--mock-error-rate", "0.3", "--mock-seed", "1",
                    "--out", str(tmp_path / "run.jsonl"))  # fmt: skip
    assert proc.returncode in (0, 3), proc.stderr
    assert len(records(tmp_path / "run.jsonl")) == 1


def test_a_fully_cached_rerun_needs_no_endpoint(tmp_path: Path) -> None:
    port = free_port()
    cache = tmp_path / "cache"
    server = serve_mock(port)
    try:
        first = run_josh("eval", "toolwoz", *mock_flags(port), "--limit", "3", "--cache-dir", str(cache),
                         "--out", str(tmp_path / "first.jsonl"))  # fmt: skip
    finally:
        server.kill()
        server.wait()
    assert first.returncode == 0, first.stderr
    again = run_josh("eval", "toolwoz", *mock_flags(port), "--limit", "3", "--cache-dir", str(cache),
                     "--out", str(tmp_path / "again.jsonl"), "--max-outage", "2")  # fmt: skip
    assert again.returncode == 0, again.stderr
    before = {r["task_id"]: r["reward"] for r in records(tmp_path / "first.jsonl")}
    after = records(tmp_path / "again.jsonl")
    assert {r["task_id"]: r["reward"] for r in after} == before
    calls = [c for r in after for c in r["model_calls"]]
    assert calls and all(c["cached"] for c in calls)
    summary = json.loads((tmp_path / "again.summary.json").read_text())
    assert summary["cached_calls"]["agent"] == sum(c["role"] == "agent" for c in calls)
    assert re.search(r"model calls +│ agent \d+, \d+ from the cache", again.stdout)
