"""`josh loop`: its config, its stages and their resume, and its report (numbers worked by hand)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from josh.errors import JoshError
from josh.loop import run as loop_run
from josh.loop.config import load_loop_config
from josh.loop.report import (
    ALL,
    RoundRun,
    build_report,
    markdown,
    paired,
    plot_png,
    round_metrics,
    write_report,
)
from josh.loop.stages import check_export, model_spec, plan, run_finished
from josh.runner import open_run


def _record(task: str, reward: float | None, goals: list[str], trial: int = 0) -> dict[str, Any]:
    return {
        "task_id": task, "trial": trial, "status": "success" if reward is not None else "error",
        "reward": reward, "goal_calls": goals,
    }  # fmt: skip


BASE = [
    _record("h1", 0.0, ["book_hotel"]),
    _record("h2", 0.5, ["search_hotel", "book_hotel"]),
    _record("t1", 1.0, ["book_train"]),
    _record("ht", None, ["book_hotel", "book_train"]),  # an error: counts as 0
]
TRAINED = [
    _record("h1", 1.0, ["book_hotel"]),
    _record("h2", 1.0, ["search_hotel", "book_hotel"]),
    _record("t1", 1.0, ["book_train"]),
    _record("ht", 0.5, ["book_hotel", "book_train"]),
]


def test_round_metrics_by_hand() -> None:
    metrics = round_metrics(BASE)
    assert list(metrics) == [ALL, "hotel", "train"]
    assert metrics[ALL]["tasks"] == 4
    assert metrics[ALL]["average_reward"] == pytest.approx((0 + 0.5 + 1 + 0) / 4)
    assert metrics[ALL]["success_rate"] == pytest.approx(1 / 4)
    assert metrics["hotel"]["tasks"] == 3  # h1, h2 and the two-domain task ht
    assert metrics["hotel"]["average_reward"] == pytest.approx(0.5 / 3)
    assert metrics["hotel"]["success_rate"] == 0.0
    assert metrics["train"]["average_reward"] == pytest.approx(0.5)  # t1 1.0, ht 0 (error)
    low, high = metrics[ALL]["average_reward_ci95"]
    assert 0.0 <= low <= metrics[ALL]["average_reward"] <= high <= 1.0


def test_trials_are_averaged_per_task() -> None:
    records = [_record("a", 1.0, ["book_taxi"], 0), _record("a", 0.0, ["book_taxi"], 1)]
    metrics = round_metrics(records)
    assert metrics["taxi"] == metrics[ALL]
    assert metrics[ALL]["tasks"] == 1
    assert metrics[ALL]["average_reward"] == 0.5
    assert metrics[ALL]["success_rate"] == 0.5


def test_paired_differences_and_exact_p_values() -> None:
    result = paired(BASE, TRAINED)
    overall = result[ALL]
    assert overall["tasks"] == 4
    # differences 1, 0.5, 0, 0.5: three non-zero, all positive -> exact two-sided p = 2 / 2**3
    assert overall["average_reward_difference"] == pytest.approx(0.5)
    assert overall["average_reward_p_value"] == pytest.approx(0.25)
    # success: 1, 1, 0, 0 -> two non-zero -> p = 2 / 4
    assert overall["success_rate_difference"] == pytest.approx(0.5)
    assert overall["success_rate_p_value"] == pytest.approx(0.5)
    assert result["train"]["average_reward_difference"] == pytest.approx(0.25)  # t1 0, ht +0.5


def test_paired_uses_only_the_tasks_both_ran() -> None:
    result = paired(BASE, TRAINED[:2])
    assert result[ALL]["tasks"] == 2
    assert "train" not in result  # no train task in the second run


def test_report_files(tmp_path: Path) -> None:
    runs = [RoundRun(0, "hf:m", BASE, "r0.jsonl"), RoundRun(1, "hf:m+a1", TRAINED, "r1.jsonl")]
    report = build_report("m", "kto", runs)
    assert report["compared_with_base"]["1"][ALL]["average_reward_p_value"] == pytest.approx(0.25)
    text = markdown(report)
    assert "| all | 4 | 0.375 [" in text
    assert "+0.500 (p 0.25)" in text
    png = plot_png(report)
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    files = write_report(tmp_path, report, {0: "round-0/eval.html", 1: "round-1/eval.html"})
    assert sorted(f.name for f in files) == ["report.html", "report.json", "report.md", "report.png"]
    page = (tmp_path / "report.html").read_text()
    assert "data:image/png;base64," in page and "default-src 'none'" in page
    assert 'href="round-1/eval.html"' in page
    assert json.loads((tmp_path / "report.json").read_text())["rounds"][1]["model"] == "hf:m+a1"


def _write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "loop.yaml"
    path.write_text(text)
    return path


CONFIG = """
model: /models/base
method: kto
rounds: 2
common: {user: replay}
eval: {limit: 3, max-turns: 2}
harvest: {limit: 4}
train: {max-steps: 2}
"""


def test_plan_of_two_rounds(tmp_path: Path) -> None:
    config = load_loop_config(_write_config(tmp_path, CONFIG))
    assert config.out == (tmp_path / "loop").resolve()
    stages = plan(config)
    assert [s.name for s in stages] == [
        "round 0: evaluate the base model",
        "round 1: harvest JOSH trees", "round 1: export kto data", "round 1: train (kto, LoRA)",
        "round 1: evaluate the trained model",
        "round 2: harvest JOSH trees", "round 2: export kto data", "round 2: train (kto, LoRA)",
        "round 2: evaluate the trained model",
    ]  # fmt: skip
    adapter1 = tmp_path / "loop" / "round-1" / "train" / "adapter"
    assert model_spec(config, 0) == "hf:/models/base"
    assert model_spec(config, 1) == f"hf:/models/base+{adapter1}"
    assert stages[0].options == {"user": "replay", "limit": 3, "max_turns": 2, "model": "hf:/models/base"}
    assert stages[5].options["model"] == f"hf:/models/base+{adapter1}"  # round 2 harvests round 1's model
    assert "--init-adapter" not in stages[3].args
    assert stages[7].args[stages[7].args.index("--init-adapter") + 1] == str(adapter1)
    assert stages[7].args[stages[7].args.index("--model") + 1] == "/models/base"


def test_harvest_may_name_its_own_model(tmp_path: Path) -> None:
    config = load_loop_config(_write_config(tmp_path, "model: hf:/m\nharvest: {model: scripted}\n"))
    assert config.model == "/m"
    assert plan(config)[1].options["model"] == "scripted"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("method: kto\n", "'model': Field required"),
        ("model: m\nmethod: ppo\n", "'method': Input should be 'sft', 'kto', 'dpo' or 'rft'"),
        ("model: m\nrounds: 0\n", "'rounds': Input should be greater than or equal to 1"),
        ("model: m+adapter\n", "name the base model only"),
        ("model: m\neval: [1]\n", "'eval': must be a mapping"),
        ("model: m\ntrain: {data: x}\n", "'train' sets data, which the loop sets itself"),
        ("model: m\neval: {base-url: http://x}\n", "'eval' sets base-url"),
        ("model: m\nexport: {reference-trees: true}\n", "'export' sets reference-trees"),
        ("model: m\nexport: {beam: 8}\n", "'export' has unknown option 'beam'; its one option is"),
        ("model: m\nexport: {reference-selectio: x}\n", "'reference-selectio' (did you mean 'reference-selection'?)"),
        ("model: m\nrunds: 2\n", "'runds': not a key of the loop config (did you mean 'rounds'?)"),
        ("model: m\nmethd: kto\n", "'methd': not a key of the loop config (did you mean 'method'?)"),
        ("- a list\n", "must hold a mapping"),
        ("model: [unclosed\n", "cannot read the loop config"),
    ],
)
def test_config_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(JoshError, match="loop.yaml") as caught:
        load_loop_config(_write_config(tmp_path, text))
    assert message in str(caught.value)


def test_stage_options_are_checked_before_any_work(tmp_path: Path) -> None:
    config = load_loop_config(_write_config(tmp_path, "model: m\ncommon: {max-turns: 3}\n"))
    with pytest.raises(JoshError) as caught:
        loop_run.run_loop(config, lambda _: None, source=tmp_path / "loop.yaml")
    assert "harvest options (common + harvest): 'max-turns': not an option of `josh harvest toolwoz`" in str(
        caught.value
    )
    assert not (tmp_path / "loop").exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("common: {max-turn: 3}", "eval options (common + eval): 'max-turn': not an option of `josh eval toolwoz` "
         "(did you mean 'max-turns'?)"),
        ("eval: {max-turn: 3}", "(did you mean 'max-turns'?)"),
        ("harvest: {bem: 8}", "harvest options (common + harvest): 'bem': not an option of `josh harvest toolwoz` "
         "(did you mean 'beam'?)"),
        ("train: {lora-rr: 16}", "train options: 'lora-rr': not an option of `josh train kto` (did you mean 'lora-r'?)"),
        ("train: {learning-rate: -1}", "train options: 'learning-rate': Input should be greater than 0"),
        ("method: sft\ntrain: {beta: 0.1}", "train options: beta applies to kto and dpo only, not sft"),
        ("train: {batch-size: 1}", "--batch-size must be 2 or more for KTO"),
    ],
)  # fmt: skip
def test_misspelt_or_refused_stage_options_fail_before_any_stage_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, message: str
) -> None:
    """Every stage's options, the train stage's too, are checked against its command's own before the first
    stage runs (the eval of round 0 takes minutes): a misspelt key gets the closest option's name."""
    ran: list[str] = []
    monkeypatch.setattr(loop_run, "run_stage", lambda stage, say: ran.append(stage.kind))
    config = load_loop_config(_write_config(tmp_path, f"model: m\n{text}\n"))
    with pytest.raises(JoshError) as caught:
        loop_run.run_loop(config, lambda _: None, source=tmp_path / "loop.yaml")
    assert message in str(caught.value)
    assert ran == [] and not (tmp_path / "loop").exists()


def test_run_finished_reads_the_status_line(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    assert not run_finished(path)
    writer = open_run(path, config={}, config_hash="h", seed=0, resume=False, command="eval toolwoz")
    writer.write(_record("a", 1.0, ["book_taxi"]))
    assert not run_finished(path)  # still running (or killed): no status line
    writer.close("cancelled")
    assert not run_finished(path)
    writer = open_run(path, config={}, config_hash="h", seed=0, resume=True, command="eval toolwoz")
    writer.close("error", stopped="the endpoint went down")
    assert not run_finished(path)
    writer = open_run(path, config={}, config_hash="h", seed=0, resume=True, command="eval toolwoz")
    writer.close("error")  # finished; some conversations ended in an error
    assert run_finished(path)
    path.write_bytes(path.read_bytes()[:30])  # a stage killed while writing its header: not finished
    assert not run_finished(path)


def test_check_export_names_what_is_missing(tmp_path: Path) -> None:
    stage = next(s for s in plan(load_loop_config(_write_config(tmp_path, "model: m\n"))) if s.kind == "export")
    stage.output.mkdir(parents=True)
    summary = stage.output / "summary.json"
    summary.write_text(json.dumps({"examples": 5, "counts": {"label true": 5, "label false": 0}}))
    with pytest.raises(JoshError, match="5 desirable and 0 undesirable KTO examples; KTO needs both"):
        check_export(stage, "kto")
    summary.write_text(json.dumps({"examples": 0, "counts": {"examples": 0}}))
    with pytest.raises(JoshError, match="no sft example \\(no tree reached reward 1.0\\)"):
        check_export(stage, "sft")
    summary.write_text(json.dumps({"examples": 3, "counts": {"label true": 2, "label false": 1}}))
    check_export(stage, "kto")


def test_a_failed_stage_stops_the_loop_and_a_rerun_skips_what_is_done(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stages stand in for the commands here (each writes its output); the real ones run in
    test_loop_end_to_end."""
    config = load_loop_config(_write_config(tmp_path, "model: m\ncommon: {user: replay}\n"))
    ran: list[str] = []
    fail_at = {"train"}

    def fake_stage(stage: Any, say: Any) -> None:
        ran.append(stage.kind)
        if stage.kind in fail_at:
            raise loop_run.StageFailed(stage, 1)
        if stage.kind in ("eval", "harvest"):
            writer = open_run(stage.output, config={}, config_hash="h", seed=0, resume=False, command=f"{stage.kind} toolwoz")
            writer.write(_record("a", 1.0 if stage.round else 0.0, ["book_taxi"]))
            writer.close("success")
        elif stage.kind == "export":
            stage.output.mkdir(parents=True)
            (stage.output / "train.jsonl").write_text("{}\n")
            (stage.output / "summary.json").write_text(json.dumps({"counts": {"label true": 1, "label false": 1}}))
        else:
            (stage.output / "adapter").mkdir(parents=True)
            (stage.output / "adapter" / "adapter_config.json").write_text("{}")

    monkeypatch.setattr(loop_run, "run_stage", fake_stage)
    with pytest.raises(loop_run.StageFailed) as caught:
        loop_run.run_loop(config, lambda _: None, source=tmp_path / "loop.yaml")
    assert caught.value.code == 1 and "round 1: train (kto, LoRA) failed (exit 1)" in str(caught.value)
    assert ran == ["eval", "harvest", "export", "train"]
    ran.clear()
    fail_at.clear()
    said: list[str] = []
    files = loop_run.run_loop(config, said.append, source=tmp_path / "loop.yaml")
    assert ran == ["train", "eval"]
    assert any("round 0: evaluate the base model: done, skipped" in line for line in said)
    report = json.loads((tmp_path / "loop" / "report.json").read_text())
    assert report["compared_with_base"]["1"][ALL]["average_reward_difference"] == 1.0
    assert {f.name for f in files} >= {"report.png", "report.html"}
    assert (tmp_path / "loop" / "round-1" / "eval.html").exists()  # the conversations' viewer
    # every stage that ran has its wall time, the failed train's first run and its rerun added together
    assert set(report["wall_s"]) == {f"round {r}: {k}" for r, k in [(0, "eval"), (1, "harvest"), (1, "export"),
                                                                  (1, "train"), (1, "eval")]}
    assert [d["round"] for d in report["training"]] == [0, 1] and "verdict" in report


def test_the_papers_loop_config_is_valid() -> None:
    """examples/loop-paper.yaml (the README's GPU recipe) loads, and every stage's options are accepted."""
    from josh.loop.stages import check_options

    path = Path(__file__).parent.parent / "examples" / "loop-paper.yaml"
    config = load_loop_config(path)
    assert (config.model, config.method, config.rounds) == ("meta-llama/Meta-Llama-3-8B-Instruct", "kto", 1)
    stages = plan(config)
    check_options(stages, path)
    harvest = next(s for s in stages if s.kind == "harvest")
    assert harvest.options["beam"] == 8 and harvest.options["agent"] == "react"
    assert harvest.options["model"] == "hf:meta-llama/Meta-Llama-3-8B-Instruct"


def test_the_papers_loop_plan_shows_the_papers_recipe(capsys: pytest.CaptureFixture[str]) -> None:
    """`josh loop examples/loop-paper.yaml --plan` is the paper's experiment, every setting shown: its 926
    harvest tasks, beam 8, per-turn crediting, the paper's prompts and customer, its inference (4-bit, adapter
    not merged, no generation prompt), the reference's KTO selection and `finetune_agent.py`'s recipe on a
    4-bit base with the paper's truncation."""
    path = Path(__file__).parent.parent / "examples" / "loop-paper.yaml"
    said: list[str] = []
    loop_run.run_loop(load_loop_config(path), said.append, source=path, only_plan=True)
    text = "\n".join(said)
    for setting in [
        "split: paper_train", "beam: 8", "crediting: turn", "temperature: 1.0", "agent: react", "prompts: paper",
        "strict-errors: true", "user-model: gpt-4o", "hf-4bit: true", "hf-merge-adapter: false",
        "hf-generation-prompt: false", "--reference-selection", "qlora: true", "truncation: keep-end",
        "lora-r: 64", "lora-alpha: 64", "learning-rate: 5e-07", "beta: 0.03", "desirable-weight: 2.05",
        "undesirable-weight: 1.0", "max-length: 5256", "epochs: 1.0", "split: test", "max-turns: 15",
    ]:  # fmt: skip
        assert setting in text, setting


def test_the_readmes_cpu_loops_are_valid_configs(tmp_path: Path) -> None:
    """The README's two CPU loops (SmolLM2 from its GGUF file, the tiny random model) load, and every stage's
    options are accepted, so that the commands run as written."""
    import re

    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    gguf = tmp_path / "SmolLM2.gguf"
    gguf.write_bytes(b"GGUF")
    (tmp_path / "tiny-model").mkdir()
    for name in ("smol-loop", "tiny-loop"):
        [body] = re.findall(rf"cat > {name}\.yaml <<'?YAML'?\n(.*?)\nYAML\n", readme, re.S)
        path = tmp_path / f"{name}.yaml"
        path.write_text(body.replace("$(python scripts/llama_server.py --model-path)", str(gguf)))
        said: list[str] = []
        loop_run.run_loop(load_loop_config(path), said.append, source=path, only_plan=True)
        assert len([line for line in said if re.match(r"\d+\. round", line)]) == (5 if name == "smol-loop" else 9)
