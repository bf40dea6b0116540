"""`josh eval toolwoz`, `josh report` and `josh serve-mock` end to end, over real HTTP to the mock endpoint."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from josh.envs.toolwoz import ToolWOZEnvironment
from josh.mock import MockConfig, MockServer
from tests.test_cli_data import run_josh

pytestmark = pytest.mark.data


def records(path: Path) -> list[dict]:
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0]["type"] == "header"
    return [line for line in lines[1:] if line.get("type") != "status"]


def test_dry_run_is_the_embedded_default(tmp_path: Path) -> None:
    out = tmp_path / "run.jsonl"
    proc = run_josh("eval", "toolwoz", "--limit", "3", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert (
        "DRY RUN" in proc.stderr and "scripted mock endpoint" in proc.stderr and "--model NAME" in proc.stderr
    )
    header = json.loads(out.read_text().splitlines()[0])
    assert {"format_version", "josh_version", "git_commit", "dirty", "config_hash", "seed", "status"} <= set(
        header
    )
    rows = records(out)
    assert [r["task_id"] for r in sorted(rows, key=lambda r: r["task_id"])] == [
        "MUL0003",
        "MUL0004",
        "MUL0014",
    ]
    assert all(r["status"] == "success" and r["termination"] == "user_ended" for r in rows)
    mul0003 = next(r for r in rows if r["task_id"] == "MUL0003")
    assert mul0003["reward"] == 0.75 and mul0003["failed_goals"] == ["search_restaurant"]
    assert mul0003["messages"][0]["role"] == "user" and any(
        m["content"].startswith("APIRETURN") for m in mul0003["internal"]
    )
    assert mul0003["calls"][0]["name"] == "search_hotel" and mul0003["agent_usage"]["prompt_tokens"] > 0
    summary = json.loads((tmp_path / "run.summary.json").read_text())
    assert summary["scored"] == 3 and summary["average_reward"] == pytest.approx(11 / 12)
    assert {
        "pass_hat_k",
        "average_reward_ci95",
        "per_domain",
        "per_api",
        "tokens",
        "cost_usd",
        "wall_s",
    } <= set(summary)
    config = json.loads((tmp_path / "run.config.json").read_text())
    assert config["agent"] == "react" and config["max-turns"] == 15 and config["strict-errors"] is True
    assert "average reward" in proc.stdout and "per API" in proc.stdout


@pytest.mark.slow
@pytest.mark.parametrize(("agent", "user"), [("react", "goal"), ("fc", "guide")])
def test_oracle_reproduces_the_benchmark_ceiling(tmp_path: Path, agent: str, user: str) -> None:
    """Mistake rate 0, goal calls made through the real tools over HTTP: 422 of 450 at 1.0, average 0.980."""
    out = tmp_path / "run.jsonl"
    proc = run_josh(
        "eval", "toolwoz", "--agent", agent, "--user", user, "--concurrency", "16", "--out", str(out)
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "run.summary.json").read_text())
    assert summary["records"] == 450 and summary["errors"] == 0
    assert summary["perfect"] == 422 and round(summary["average_reward"], 3) == 0.980


def test_mistakes_lower_the_reward(tmp_path: Path) -> None:
    out = tmp_path / "run.jsonl"
    proc = run_josh("eval", "toolwoz", "--limit", "40", "--mock-mistake-rate", "0.5", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "run.summary.json").read_text())
    assert summary["average_reward"] < 0.8 and summary["errors"] == 0


@pytest.mark.slow
def test_faults_never_lose_a_task(tmp_path: Path) -> None:
    """10% HTTP 500, 5% hangs past the timeout, 5% malformed tool calls: all 50 tasks accounted for."""
    out = tmp_path / "run.jsonl"
    proc = run_josh(
        "eval", "toolwoz", "--limit", "50", "--concurrency", "16", "--timeout", "1", "--max-retries", "2",
        "--mock-error-rate", "0.1", "--mock-hang-rate", "0.05", "--mock-malformed-rate", "0.05",
        "--mock-hang-seconds", "3", "--agent", "fc", "--lenient-errors", "--out", str(out),
    )  # fmt: skip
    rows = records(out)
    errors = sum(r["status"] == "error" for r in rows)
    assert proc.returncode == (3 if errors else 0), proc.stderr
    keys = Counter((r["task_id"], r["trial"]) for r in rows)
    assert len(keys) == 50 and max(keys.values()) == 1
    assert all(r["status"] in ("success", "error") for r in rows)
    assert all(r["reward"] is not None or r["error"] for r in rows)
    notes = [n for r in rows for n in r.get("notes", [])]
    assert any("malformed" in n for n in notes)  # bad tool-call JSON was fed back, not a crash


@pytest.mark.slow
def test_killed_run_resumes_without_duplicates_or_gaps(tmp_path: Path) -> None:
    out = tmp_path / "run.jsonl"
    args = [
        "eval",
        "toolwoz",
        "--limit",
        "50",
        "--concurrency",
        "4",
        "--mock-latency",
        "0.02",
        "--out",
        str(out),
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "josh.cli.main", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if out.exists() and out.read_text().count('"task_id"') >= 10:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    complete = out.read_text().split("\n")[:-1]  # a kill may leave the last line torn
    done_before = sum('"task_id"' in line for line in complete)
    assert 10 <= done_before < 50
    resumed = run_josh(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    rows = records(out)
    keys = Counter(r["task_id"] for r in rows)
    assert len(rows) == 50 and len(keys) == 50 and set(keys.values()) == {1}
    expected = run_josh("data", "tasks", "--split", "test").stdout.splitlines()[:50]
    assert set(keys) == {json.loads(line)["task_id"] for line in expected}


def test_unreachable_endpoint_fails_fast(tmp_path: Path) -> None:
    started = time.monotonic()
    proc = run_josh("eval", "toolwoz", "--model", "m", "--base-url", "http://127.0.0.1:9/v1", "--user", "replay",
                    "--out", str(tmp_path / "x.jsonl"))  # fmt: skip
    assert proc.returncode == 1 and time.monotonic() - started < 30
    assert "cannot reach http://127.0.0.1:9/v1" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "x.jsonl").exists()  # nothing half-started to clean up


def answering(status: int, body: bytes) -> ThreadingHTTPServer:
    """A server on 127.0.0.1 (started in a thread) that answers every GET and POST with `status` and `body`."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_POST = do_GET

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_bad_api_key_fails_fast_and_is_never_shown(tmp_path: Path) -> None:
    server = answering(
        401, b'{"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}'
    )
    secret = "sk-test-SECRET-4242"
    try:
        proc = run_josh(
            "eval", "toolwoz", "--model", "gpt-4o", "--base-url", f"http://127.0.0.1:{server.server_port}/v1",
            "--out", str(tmp_path / "x.jsonl"), env={"OPENAI_API_KEY": secret},
        )  # fmt: skip
    finally:
        server.shutdown()
    assert proc.returncode == 1
    assert "API key" in proc.stderr and "401" in proc.stderr and "Traceback" not in proc.stderr
    assert secret not in proc.stderr + proc.stdout


def test_any_openai_compatible_url_and_the_key_never_leaks(
    tmp_path: Path, toolwoz_env: ToolWOZEnvironment
) -> None:
    secret = "sk-test-SECRET-987654"
    out = tmp_path / "run.jsonl"
    with MockServer(toolwoz_env, MockConfig()) as mock:
        assert mock._server.server_address[0] == "127.0.0.1"  # loopback only
        proc = run_josh(
            "eval", "toolwoz", "--model", "josh-mock-agent", "--base-url", mock.base_url,
            "--user-model", "josh-mock-user", "--user-base-url", mock.base_url,
            "--api-key-env", "JOSH_TEST_KEY", "--limit", "3", "--out", str(out), env={"JOSH_TEST_KEY": secret},
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "DRY RUN" not in proc.stderr
    assert len(records(out)) == 3
    for path in tmp_path.iterdir():
        assert secret not in path.read_text(), path
    assert secret not in proc.stdout + proc.stderr
    config = json.loads((tmp_path / "run.config.json").read_text())
    assert config["api-key-env"] == "JOSH_TEST_KEY" and config["base-url"] == mock.base_url


def test_report_one_run_and_a_comparison(tmp_path: Path) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    assert run_josh("eval", "toolwoz", "--limit", "10", "--out", str(a)).returncode == 0
    assert (
        run_josh("eval", "toolwoz", "--limit", "10", "--mock-mistake-rate", "0.6", "--out", str(b)).returncode
        == 0
    )
    one = run_josh("report", str(a))
    assert one.returncode == 0 and "average reward" in one.stdout and "per API" in one.stdout
    both = run_josh("report", str(a), str(b), "--json")
    data = json.loads(both.stdout)
    assert data["paired"]["common"] == 10 and data["paired"]["worse"] >= 1
    assert data["b"]["average_reward"] < data["a"]["average_reward"]
    assert data["paired"]["p_value"] < 0.05 and data["differing"] == []
    table = run_josh("report", str(a), str(b))
    assert "comparison" in table.stdout and "better on" in table.stdout
    assert "paired permutation test p" in table.stdout and "warning" not in table.stderr
    fc = tmp_path / "fc.jsonl"
    assert (
        run_josh(
            "eval", "toolwoz", "--limit", "4", "--agent", "fc", "--trials", "2", "--out", str(fc)
        ).returncode
        == 0
    )
    mixed = run_josh("report", str(a), str(fc), env={"COLUMNS": "200"})
    assert "the runs differ in agent, trials" in mixed.stderr
    assert re.search(r"pass\^2 +│ +n/a │ +0\.750 │ +n/a", mixed.stdout), mixed.stdout
    assert "nan" not in mixed.stdout
    empty = tmp_path / "empty.jsonl"
    empty.write_text(a.read_text().splitlines()[0] + "\n")  # a header and nothing else
    nothing = run_josh("report", str(empty))
    assert nothing.returncode == 0 and "holds no finished conversation yet" in nothing.stderr
    assert "0.000" not in nothing.stdout
    bad = tmp_path / "bad.jsonl"
    bad.write_text("hello\n")
    failed = run_josh("report", str(bad))
    assert failed.returncode == 1 and "not a josh run file" in failed.stderr


def test_bad_options_are_clear_errors(tmp_path: Path) -> None:
    proc = run_josh("eval", "toolwoz", "--agent", "telepathy", "--out", str(tmp_path / "x.jsonl"))
    assert proc.returncode == 2 and "--agent" in proc.stderr and "react" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = run_josh("eval", "toolwoz", "--temperature", "3", "--out", str(tmp_path / "x.jsonl"))
    assert proc.returncode == 1 and "--temperature: Input should be less than or equal to 2" in proc.stderr
    proc = run_josh("eval", "toolwoz", "--task", "NOPE1", "--out", str(tmp_path / "x.jsonl"))
    assert proc.returncode == 1 and "NOPE1" in proc.stderr


def test_serve_mock_serves_a_real_eval(tmp_path: Path) -> None:
    server = subprocess.Popen(
        [sys.executable, "-m", "josh.cli.main", "serve-mock", "--port", "0"],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    try:
        assert server.stderr is not None
        line = server.stderr.readline()
        while line and "http://127.0.0.1:" not in line:
            line = server.stderr.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/v1", line)
        assert match and "SCRIPTED" in line, line
        proc = run_josh("eval", "toolwoz", "--model", "josh-mock-agent", "--base-url", match.group(0), "--limit", "2",
                        "--user-model", "josh-mock-user", "--user-base-url", match.group(0),
                        "--agent", "fc", "--out", str(tmp_path / "run.jsonl"))  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert len(records(tmp_path / "run.jsonl")) == 2
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=10)


def test_resume_can_retry_the_tasks_that_failed(tmp_path: Path) -> None:
    out = tmp_path / "run.jsonl"
    flaky = ["eval", "toolwoz", "--limit", "12", "--max-retries", "0", "--out", str(out)]
    first = run_josh(*flaky, "--mock-error-rate", "0.06")
    failed = {r["task_id"] for r in records(out) if r["status"] == "error"}
    assert failed, "expected some conversations to fail at a 6% error rate without retries"
    assert first.returncode == 3, first.stderr  # finished, but not every conversation was scored
    last = first.stderr.strip().splitlines()[-1]
    assert (
        last.startswith(f"{len(failed)} of 12 conversations ended in an error") and "--retry-errors" in last
    )
    status = [json.loads(line) for line in out.read_text().splitlines() if '"status"' in line][-1]
    assert status["type"] == "status" and status["status"] == "error" and status["errors"] == len(failed)
    plain = run_josh(*flaky, "--resume")  # nothing left to run: says how many are errors, still exits 3
    assert plain.returncode == 3
    assert (
        f"12 already done ({len(failed)} of them ended in an error: --retry-errors runs them again)"
        in plain.stderr
    )
    summary = json.loads((tmp_path / "run.summary.json").read_text())
    assert summary["errors"] == len(failed)
    assert summary["average_reward"] < summary["average_reward_scored"]  # errors count as 0, as in the paper
    again = run_josh(*flaky, "--resume", "--retry-errors")
    assert again.returncode == 0, again.stderr
    latest = {r["task_id"]: r for r in records(out)}
    assert len(latest) == 12 and all(r["status"] == "success" for r in latest.values())
    assert len(records(out)) == 12 + len(failed)  # appended, never rewritten
    final = json.loads((tmp_path / "run.summary.json").read_text())
    assert final["errors"] == 0 and final["records"] == 12


def test_yaml_config_with_flag_overrides_and_the_replay_user(tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("agent: fc\nuser: replay\nlimit: 5\nmax-turns: 6\ntimeout: 30\n")
    out = tmp_path / "run.jsonl"
    proc = run_josh("eval", "toolwoz", "--config", str(config), "--limit", "2", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    saved = json.loads((tmp_path / "run.config.json").read_text())
    assert saved["agent"] == "fc" and saved["user"] == "replay" and saved["timeout"] == 30
    assert saved["limit"] == 2 and saved["max-turns"] == 6  # the flag wins over the file
    rows = records(out)
    assert len(rows) == 2 and all(r["user_model_calls"] == 0 for r in rows)
    assert all(
        len(r["messages"]) <= 7 for r in rows
    )  # the loop stops at max_turns messages (+ the last reply)
    broken = tmp_path / "broken.yaml"
    broken.write_text("limit: [unclosed\n")
    bad = run_josh("eval", "toolwoz", "--config", str(broken), "--out", str(tmp_path / "x.jsonl"))
    assert bad.returncode == 1 and "cannot read the config file" in bad.stderr
    typo = tmp_path / "typo.yaml"
    typo.write_text("max-turn: 6\ntemperature: 5\n")
    bad = run_josh("eval", "toolwoz", "--config", str(typo), "--out", str(tmp_path / "x.jsonl"))
    assert bad.returncode == 1 and "unknown option 'max-turn' (did you mean 'max-turns'?)" in bad.stderr
    typo.write_text("temperature: 5\n")
    bad = run_josh("eval", "toolwoz", "--config", str(typo), "--out", str(tmp_path / "x.jsonl"))
    assert bad.returncode == 1 and f"'temperature' in {typo}: Input should be less than" in bad.stderr
    again = run_josh(
        "eval", "toolwoz", "--config", str(tmp_path / "run.config.json"), "--out", str(tmp_path / "y.jsonl")
    )
    assert again.returncode == 0, again.stderr  # a saved config feeds back as is
    assert json.loads((tmp_path / "y.config.json").read_text()) == saved


def test_in_process_scripted_backend_matches_the_http_mock(tmp_path: Path) -> None:
    http, local = tmp_path / "http.jsonl", tmp_path / "local.jsonl"
    assert run_josh("eval", "toolwoz", "--limit", "6", "--agent", "fc", "--out", str(http)).returncode == 0
    proc = run_josh(
        "eval", "toolwoz", "--model", "scripted", "--limit", "6", "--agent", "fc", "--out", str(local)
    )
    assert proc.returncode == 0, proc.stderr
    assert "scripted policies" in proc.stderr
    rewards = {r["task_id"]: r["reward"] for r in records(http)}
    assert {r["task_id"]: r["reward"] for r in records(local)} == rewards


def test_missing_keys_and_bad_flags_stop_before_any_work(tmp_path: Path) -> None:
    out = tmp_path / "x.jsonl"
    no_key = {"OPENAI_API_KEY": "", "OPENAI_BASE_URL": ""}
    cases = [
        (["--model", "gpt-4o-mini"], "the agent model gpt-4o-mini is on OpenAI and needs a key: set OPENAI_API_KEY"),
        (["--model", "m", "--base-url", "http://127.0.0.1:9/v1"],
         "the customer model gpt-4o is on OpenAI and needs a key"),
        (["--model", "m", "--base-url", "http://127.0.0.1:9/v1", "--user", "replay", "--api-key-env", "JOSH_NOPE"],
         "--api-key-env names the environment variable JOSH_NOPE, which is not set"),
        (["--retry-errors"], "--retry-errors only applies with --resume"),
    ]  # fmt: skip
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    for bad_out, reason in [
        (a_file / "x" / "run.jsonl", f"{a_file} is a file, not a folder"),
        (tmp_path, "it is a folder"),
    ]:
        proc = run_josh("eval", "toolwoz", "--limit", "1", "--out", str(bad_out))
        assert proc.returncode == 1 and f"cannot write the run file {bad_out}: {reason}" in proc.stderr
        assert "Traceback" not in proc.stderr and "DRY RUN" not in proc.stderr  # before any work
    for args, expected in cases:
        proc = run_josh("eval", "toolwoz", *args, "--out", str(out), env=no_key)
        assert proc.returncode == 1 and expected in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr and not out.exists()
    port = run_josh("serve-mock", "--port", "70000")
    assert port.returncode == 1 and "--port: Input should be less than or equal to 65535" in port.stderr


def test_base_url_without_model_uses_the_endpoints_only_model(tmp_path: Path) -> None:
    from josh.benchmarks.endpoints import discover_models
    from josh.benchmarks.toolwoz.config import ToolWOZEvalConfig

    server = answering(
        200, b'{"object": "list", "data": [{"id": "/models/llama-3-8b.gguf", "object": "model"}]}'
    )
    url = f"http://127.0.0.1:{server.server_port}/v1"
    try:
        config = ToolWOZEvalConfig(base_url=url, user_base_url=url)
        found = asyncio.run(discover_models(config))
    finally:
        server.shutdown()
    assert found == {"model": "/models/llama-3-8b.gguf", "user_model": "/models/llama-3-8b.gguf"}
    with MockServer(ToolWOZEnvironment.load(), MockConfig()) as mock:  # lists two models
        proc = run_josh("eval", "toolwoz", "--base-url", mock.base_url, "--out", str(tmp_path / "x.jsonl"))
    assert proc.returncode == 1 and "DRY RUN" not in proc.stderr
    assert "serves 2 models (josh-mock-agent, josh-mock-user); choose one with --model" in proc.stderr


def test_an_unreachable_base_url_without_a_model_is_one_line_that_fails_at_once(tmp_path: Path) -> None:
    """Listing the models of a server that is not running said `(... (gave up after 3 attempts)); pass
    --model`: a refused connection fails at once, and naming a model would not help."""
    from tests.test_llm_openai import closed_port

    url = f"http://127.0.0.1:{closed_port()}/v1"
    proc = run_josh("eval", "toolwoz", "--base-url", url, "--user", "replay", "--limit", "1",
                    "--out", str(tmp_path / "r.jsonl"), env={"OPENAI_API_KEY": "x"})  # fmt: skip
    assert proc.returncode == 1
    [line] = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert "connection refused" in line and "is the server running" in line
    assert "gave up" not in proc.stderr and "pass --model" not in proc.stderr


def test_a_run_of_one_says_it_in_the_singular(tmp_path: Path) -> None:
    proc = run_josh("eval", "toolwoz", "--limit", "1", "--out", str(tmp_path / "run.jsonl"))
    assert proc.returncode == 0, proc.stderr
    assert "1 conversation (1 task x 1 trial), 0 already done;" in proc.stderr
