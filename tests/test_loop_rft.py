"""`josh loop` with `method: rft`: rejection-sampling fine-tuning with JOSH's budget, one config line apart, and
`josh report` on two loop folders (the rounds side by side)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from typer.testing import CliRunner

from josh.cli.main import app
from josh.loop import run as loop_run
from josh.loop.config import load_loop_config
from josh.loop.rft import josh_leaves, rft_budget
from josh.loop.stages import plan
from josh.runner import open_run
from tests.test_cli_data import run_josh

EXAMPLES = Path(__file__).parent.parent / "examples"


def test_n_matches_the_most_agent_turns_a_josh_tree_takes() -> None:
    # beam 8, 15 steps (the defaults): 2, 4, 8, then 8 a step: 110 turns; 110 / 15 rounded up: 8 conversations
    assert josh_leaves(8, 15) == [2, 4] + [8] * 13
    paper = rft_budget({})
    assert (paper.beam, paper.max_steps, paper.josh_turns, paper.samples, paper.rft_turns) == (
        8,
        15,
        110,
        8,
        120,
    )
    assert "2 + 4 + 8 x 13" in paper.line()
    # beam 6 stops doubling at 4 (8 > 6): 2 + 4 + 4 = 10 turns in 3 steps, N = 4; beam 1 never branches: N = 1
    small = rft_budget({"beam": 6, "max_steps": 3})
    assert (small.josh_turns, small.samples) == (10, 4)
    assert rft_budget({"beam": 1, "max_steps": 5}).samples == 1


def _config_lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def test_the_rft_example_is_the_papers_loop_with_one_line_changed() -> None:
    josh, rft = _config_lines(EXAMPLES / "loop-paper.yaml"), _config_lines(EXAMPLES / "loop-rft.yaml")
    assert len(josh) == len(rft)
    assert [(a, b) for a, b in zip(josh, rft, strict=True) if a != b] == [("method: kto", "method: rft")]


def test_the_rft_plan_samples_n_conversations_a_task_and_trains_sft(
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = EXAMPLES / "loop-rft.yaml"
    config = load_loop_config(path)
    stages = plan(config)
    assert [s.name for s in stages] == [
        "round 0: evaluate the base model",
        "round 1: sample 8 conversations a task (rft: harvest with beam 1)",
        "round 1: export sft data", "round 1: train (sft, LoRA)", "round 1: evaluate the trained model",
    ]  # fmt: skip
    harvest = stages[1].options
    assert (harvest["beam"], harvest["trials"], harvest["max_steps"], harvest["split"]) == (
        1,
        8,
        15,
        "paper_train",
    )
    assert stages[2].args[:2] == ["export", "sft"] and "--reference-selection" in stages[2].args
    assert stages[3].args[:2] == ["train", "sft"]
    said: list[str] = []
    loop_run.run_loop(config, said.append, source=path, only_plan=True)
    assert said[0].startswith("rft: 8 conversations a task") and "110" in said[0] and "120" in said[0]


LOOP = """
model: /models/tiny
method: {method}
common: {{agent: fc, user: replay, concurrency: 4}}
eval: {{limit: 2, max-turns: 2}}
harvest: {{model: scripted, limit: 4, mock-mistake-rate: 0.5, max-steps: 4}}
"""


def josh(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def _run_without_training(config_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The loop with its harvest and export stages run for real (the scripted mock harvests) and its eval and
    train stages standing in (an eval run whose rewards are the round number's, an adapter folder): what RFT
    adds is the sampling and its export, which training does not change."""
    ran: list[str] = []

    def stage(stage: Any, say: Any) -> None:
        ran.append(stage.name)
        if stage.kind in ("harvest", "export"):
            loop_run.write_options(stage)
            result = josh(*stage.args)  # in-process: a child process per stage costs seconds of start-up
            assert result.exit_code == 0, result.output
        elif stage.kind == "eval":
            writer = open_run(
                stage.output, config={}, config_hash="h", seed=0, resume=False, command="eval toolwoz"
            )
            for task in ("a", "b"):
                reward = min(stage.round, 1) * 1.0
                record = {"task_id": task, "trial": 0, "status": "success", "reward": reward}
                writer.write({**record, "goal_calls": ["book_taxi"], "termination": "user_ended"})
            writer.close("success")
        else:
            (stage.output / "adapter").mkdir(parents=True)
            (stage.output / "adapter" / "adapter_config.json").write_text("{}")

    monkeypatch.setattr(loop_run, "run_stage", stage)
    config = load_loop_config(config_path)
    loop_run.run_loop(config, lambda _: None, source=config_path)
    assert config.out is not None
    return {"ran": ran, "out": config.out}


@pytest.mark.data
@pytest.mark.slow
def test_an_rft_round_beside_a_josh_round_and_the_two_loops_side_by_side(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folders = {}
    for method in ("sft", "rft"):
        path = tmp_path / f"loop-{method}.yaml"
        path.write_text(LOOP.format(method=method))
        folders[method] = _run_without_training(path, monkeypatch)["out"]
    rft = folders["rft"] / "round-1"
    budget = rft_budget({"max_steps": 4})  # beam 8, 4 steps: 2 + 4 + 8 + 8 = 22 turns, N = 6
    assert budget.samples == 6
    trees = [json.loads(line) for line in (rft / "trees.jsonl").read_text().splitlines()[1:]]
    trees = [t for t in trees if "nodes" in t]
    assert len(trees) == 4 * budget.samples and all(len(t["nodes"]) == 1 for t in trees)
    perfect = sum(1 for t in trees if t["reward"] == 1.0)
    assert 0 < perfect < len(trees)  # the mock's mistakes: some samples fail, and only the successes train
    data = json.loads((rft / "data" / "summary.json").read_text())
    assert data["kind"] == "sft" and data["examples"] == perfect
    # each sample's agent turns stay within max-steps: at most N x max-steps a task, JOSH's budget rounded up
    assert all(t["steps"] <= 4 for t in trees)
    report = json.loads((folders["rft"] / "report.json").read_text())
    assert report["method"] == "rft" and report["training"][1]["export"]["examples"] == perfect

    proc = run_josh("report", str(folders["sft"]), str(folders["rft"]))
    assert proc.returncode == 0, proc.stderr
    assert "loop-sft (sft)" in proc.stdout and "loop-rft (rft)" in proc.stdout
    assert "harvest trees at reward 1.0" in proc.stdout and "training examples" in proc.stdout
    assert "paired permutation test" in proc.stdout
    shown = json.loads(josh("report", str(folders["sft"]), str(folders["rft"]), "--json").stdout)
    row = next(r for r in shown["rows"] if r[:2] == ["1", "harvest trees at reward 1.0"])
    assert row[3] == str(perfect)
    lonely = josh("report", str(folders["sft"]), str(rft / "trees.jsonl"))
    assert lonely.exit_code == 1 and "two loop folders or two run files" in lonely.output
    empty = josh("report", str(tmp_path), str(folders["rft"]))
    assert (
        empty.exit_code == 1 and "without a loop report" in empty.output and "Traceback" not in empty.output
    )


def test_a_loop_folder_alone_shows_its_rounds(tmp_path: Path) -> None:
    report = {
        "method": "rft",
        "rounds": [{"round": 0, "metrics": {"all": {"average_reward": 0.5, "success_rate": 0.25}}}],
    }
    (tmp_path / "report.json").write_text(json.dumps(report))
    result = josh("report", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "0.500" in result.output and "0.250" in result.output
