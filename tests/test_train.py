"""`josh train sft|kto|dpo`: a few steps of each TRL trainer on a tiny random Llama (built here, nothing is
downloaded) with real exports of a dry-run harvest; the adapter, resuming, continuing an adapter, the recorded
config, the command line's errors and YAML configs, `accelerate launch` with two CPU processes, fitting long
examples to --max-length (--truncation, and the README's CPU example), what is checked before the model loads,
a failed run, and the lock on OUT."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from josh.errors import JoshError

pytest.importorskip("trl")
pytest.importorskip("peft")

pytestmark = pytest.mark.data  # the dry-run harvest runs real ToolWOZ tasks

SRC = Path(__file__).resolve().parents[1] / "src"
# Small and fast: a few steps of a rank-4 LoRA, no gradient checkpointing, one example per optimiser step.
FAST: dict[str, Any] = {
    "max_steps": 2,
    "lora_r": 4,
    "lora_alpha": 8,
    "grad_accum": 1,
    "gradient_checkpointing": False,
    "learning_rate": 1e-3,
    "logging_steps": 1,
    "max_length": 2048,
}
SYSTEM_PROMPT_CHARS = 300


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from josh.train.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """sft, kto and dpo folders exported from a 3-task dry-run harvest (`josh harvest toolwoz --limit 3`).

    The ReAct system prompt is cut to its first 300 characters: the tiny model's 512-token vocabulary makes
    the whole prompt 11,000 tokens, and every step would take seconds."""
    from josh.export import export_examples, read_trees, write_export

    folder = tmp_path_factory.mktemp("train-data")
    trees = folder / "trees.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "josh.cli.main", "harvest", "toolwoz", "--limit", "3", "--out", str(trees)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    found = read_trees([trees]).trees
    out = {}
    for kind in ("sft", "kto", "dpo"):
        path = write_export(folder / kind, export_examples(kind, found), {}, force=False)  # type: ignore[arg-type]
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        for row in rows:
            for column in ("messages", "prompt"):
                if row.get(column) and row[column][0]["role"] == "system":
                    row[column][0]["content"] = row[column][0]["content"][:SYSTEM_PROMPT_CHARS]
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
        out[kind] = folder / kind
    labels = {json.loads(line)["label"] for line in (out["kto"] / "train.jsonl").read_text().splitlines()}
    assert labels == {True, False}
    out["trees"] = trees
    return out


def config(kind: str, exports: dict[str, Path], model: Path, out: Path, **options: Any) -> Any:
    from josh.train.config import TrainConfig

    return TrainConfig(kind=kind, data=exports[kind], model=str(model), out=out, **{**FAST, **options})


def lora_weights(adapter: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(adapter / "adapter_model.safetensors"))


@pytest.fixture(scope="session")
def trained(exports: dict[str, Path], tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Each kind trained for two steps, once."""
    from josh.train.trainer import train

    results = {}
    for kind in ("sft", "kto", "dpo"):
        seen: list[Any] = []
        result = train(config(kind, exports, tiny_model, tmp_path_factory.mktemp(f"out-{kind}")),
                       on_progress=seen.append)  # fmt: skip
        results[kind] = (result, seen)
    return results


@pytest.mark.parametrize("kind", ["sft", "kto", "dpo"])
def test_each_kind_trains_an_adapter_that_reloads_onto_the_base_model(
    trained: dict[str, Any], tiny_model: Path, kind: str
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    result, seen = trained[kind]
    assert result.global_step == 2 and result.resumed_from is None and not result.already_done
    assert result.losses and all(math.isfinite(loss) for loss in result.losses)
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in result.adapter_dir.iterdir()}
    assert (result.adapter_dir.parent / "checkpoints").is_dir()
    # LoRA B starts at zero: after training it is not
    weights = lora_weights(result.adapter_dir)
    b = [w for name, w in weights.items() if "lora_B" in name]
    assert b and any(w.abs().sum() > 0 for w in b)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), str(result.adapter_dir))
    loaded = dict(model.named_parameters())
    name = next(n for n in weights if "lora_B" in n)
    assert any(n.endswith(name.replace(".weight", ".default.weight")) for n in loaded)
    # progress: every step reported, with the loss once logged
    assert [event.step for event in seen][-1] == 2 and seen[-1].total_steps == 2 and seen[-1].loss is not None


def test_the_config_file_records_every_default_and_what_was_used(trained: dict[str, Any]) -> None:
    from josh.train.config import RECIPES

    for kind in ("sft", "kto", "dpo"):
        result, _ = trained[kind]
        saved = json.loads(result.config_path.read_text())
        assert saved["kind"] == kind and saved["lora-r"] == 4  # typed
        assert saved["lora-dropout"] == RECIPES[kind]["lora_dropout"] == 0.05  # defaults, filled in
        assert saved["lr-scheduler"] == RECIPES[kind]["lr_scheduler"]
        assert saved["beta"] == RECIPES[kind]["beta"]
        assert saved["target-modules"] == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                           "down_proj"]  # fmt: skip
        recorded = saved["recorded"]
        assert recorded["status"] == "finished" and recorded["global_step"] == 2
        assert recorded["optim"] == "adamw_torch" and recorded["precision"] == "fp32"  # CPU, no bitsandbytes
        assert {"torch", "transformers", "trl", "peft"} <= set(recorded["versions"])
    assert RECIPES["kto"]["beta"] == 0.03 and RECIPES["kto"]["desirable_weight"] == 2.05
    assert RECIPES["sft"]["learning_rate"] == 2e-5 and RECIPES["sft"]["epochs"] == 3
    assert RECIPES["dpo"]["beta"] == 0.1


def test_a_rerun_resumes_from_the_last_checkpoint_and_a_finished_run_is_left_alone(
    exports: dict[str, Path], tiny_model: Path, tmp_path: Path
) -> None:
    from josh.train.trainer import train

    first = train(config("sft", exports, tiny_model, tmp_path, max_steps=2, save_steps=2))
    assert first.global_step == 2 and (tmp_path / "checkpoints" / "checkpoint-2").is_dir()
    more = train(config("sft", exports, tiny_model, tmp_path, max_steps=4, save_steps=2))
    assert more.resumed_from == tmp_path / "checkpoints" / "checkpoint-2" and more.global_step == 4
    assert len(more.losses) == 4  # the first run's two logged losses, and two more
    again = train(config("sft", exports, tiny_model, tmp_path, max_steps=4, save_steps=2))
    assert again.already_done and again.global_step == 4
    with pytest.raises(JoshError, match="--lora-r"):
        train(config("sft", exports, tiny_model, tmp_path, max_steps=4, save_steps=2, lora_r=8))
    fresh = train(config("sft", exports, tiny_model, tmp_path, max_steps=1, save_steps=2), force=True)
    assert fresh.global_step == 1 and fresh.resumed_from is None
    assert not (tmp_path / "checkpoints" / "checkpoint-4").exists()


def test_init_adapter_continues_an_existing_adapter(
    trained: dict[str, Any], exports: dict[str, Path], tiny_model: Path, tmp_path: Path
) -> None:
    """KTO from the KTO adapter: TRL adds a frozen "ref" copy as the reference; only "default" is saved."""
    from josh.train.trainer import train

    start = trained["kto"][0].adapter_dir
    result = train(config("kto", exports, tiny_model, tmp_path, init_adapter=start, max_steps=1,
                          learning_rate=1e-12, lora_r=16))  # fmt: skip
    before, after = lora_weights(start), lora_weights(result.adapter_dir)
    assert before.keys() == after.keys()  # the init adapter's shape (rank 4), not --lora-r 16
    for name, weight in before.items():
        assert (after[name] - weight).abs().max() < 1e-6, name
    assert not (result.adapter_dir / "ref").exists()
    with pytest.raises(JoshError, match="not a LoRA adapter folder"):
        train(config("kto", exports, tiny_model, tmp_path / "x", init_adapter=tmp_path / "nothing"))


# -- the command line --------------------------------------------------------------------------------------


def josh(*args: str) -> Any:
    from typer.testing import CliRunner

    from josh.cli.main import app

    return CliRunner().invoke(app, list(args))


def one_line_error(result: Any) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    return lines[0]


def test_bad_input_is_one_line_naming_the_fix(
    exports: dict[str, Path], tiny_model: Path, tmp_path: Path
) -> None:
    base = ["--model", str(tiny_model), "--out", str(tmp_path / "out")]
    line = one_line_error(josh("train", "sft", "--data", str(tmp_path / "missing"), *base))
    assert "no training data at" in line and "josh export sft" in line
    (tmp_path / "empty.jsonl").write_text("")
    assert "holds no examples" in one_line_error(josh("train", "kto", "--data", str(tmp_path / "empty.jsonl"), *base))
    line = one_line_error(josh("train", "sft", "--data", str(exports["kto"]), *base))
    assert "needs the columns messages" in line and "found completion, label, prompt, tools" in line
    assert "josh train kto" in line
    rows = [json.loads(x) for x in (exports["kto"] / "train.jsonl").read_text().splitlines()]
    only_true = tmp_path / "true.jsonl"
    only_true.write_text("".join(json.dumps(r) + "\n" for r in rows if r["label"]))
    line = one_line_error(josh("train", "kto", "--data", str(only_true), *base))
    assert "only desirable (true)" in line and "KTO needs both" in line
    line = one_line_error(josh("train", "kto", "--data", str(exports["kto"]), "--out", str(tmp_path)))
    assert "missing --model" in line
    line = one_line_error(josh("train", "kto", "--data", str(exports["kto"]), *base, "--batch-size", "1"))
    assert "--batch-size must be 2 or more for KTO" in line
    line = one_line_error(josh("train", "sft", "--data", str(exports["sft"]), *base, "--qlora"))
    assert "--qlora" in line and "CUDA GPU" in line
    assert "No such option: --beta" in josh("train", "sft", "--beta", "0.1").output  # not an SFT option
    # SFT's assistant-only loss needs the chat template's generation markers
    plain = tmp_path / "plain-model"
    shutil.copytree(tiny_model, plain)
    template = plain / "chat_template.jinja"
    text = template.read_text().replace("{% generation %}", "").replace("{% endgeneration %}", "")
    template.write_text(text)
    line = one_line_error(josh("train", "sft", "--data", str(exports["sft"]), "--model", str(plain),
                               "--out", str(tmp_path / "plain-out")))  # fmt: skip
    assert "no {% generation %} markers" in line and "--no-assistant-only-loss" in line


def test_without_the_train_extra_the_command_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "trl" else real(name, *a))
    line = one_line_error(josh("train", "sft", "--data", str(tmp_path), "--model", "m", "--out", str(tmp_path)))
    assert "pip install 'josh-toolkit[train]'" in line and "trl" in line


def test_a_yaml_config_gives_the_options_and_flags_override_it(
    exports: dict[str, Path], tiny_model: Path, tmp_path: Path
) -> None:
    options = tmp_path / "train.yaml"
    options.write_text(
        f"data: {exports['sft']}\nmodel: {tiny_model}\nlora-r: 2\nlora-alpha: 4\nmax-steps: 3\n"
        "gradient-checkpointing: false\nmax-length: 2048\nsave-steps: 5\n"
    )
    out = tmp_path / "out"
    result = josh("train", "sft", "--config", str(options), "--out", str(out), "--max-steps", "1")
    assert result.exit_code == 0, result.output
    assert re.search(r"trained sft for 1 step[,:]", result.output)
    saved = json.loads((out / "train_config.json").read_text())
    assert saved["lora-r"] == 2 and saved["max-steps"] == 1 and saved["weight-decay"] == 0.01
    # the written config feeds back: this very run, finished, so nothing to do
    result = josh("train", "sft", "--config", str(out / "train_config.json"))
    assert result.exit_code == 0 and "nothing to do" in result.output, result.output
    assert "is a sft config" in one_line_error(josh("train", "kto", "--config", str(out / "train_config.json")))
    options.write_text("lora-rank: 4\n")
    assert "did you mean 'lora-r'" in one_line_error(josh("train", "sft", "--config", str(options)))


def test_josh_help_imports_no_torch() -> None:
    code = "import sys, josh.cli.main; assert 'torch' not in sys.modules, 'torch imported'"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(SRC)})  # fmt: skip
    assert proc.returncode == 0, proc.stderr


def test_accelerate_launch_trains_with_two_cpu_processes(
    exports: dict[str, Path], tiny_model: Path, tmp_path: Path
) -> None:
    """`accelerate launch --multi_gpu --num_processes 2 -m josh.cli.main train ...` on a machine without a GPU:
    DDP of two CPU processes over gloo (accelerate's `--cpu` launcher would start one process only); one
    config and one adapter, written by the main process."""
    out = tmp_path / "out"
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "-m", "josh.cli.main", "train", "sft", "--data", str(exports["sft"]), "--model", str(tiny_model),
        "--out", str(out), "--max-steps", "2", "--seed", "7", "--lora-r", "4", "--grad-accum", "1", "--max-length", "2048",
        "--no-gradient-checkpointing", "--logging-steps", "1",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    # OUT taken by another run: the main process finds it so and tells the other, and both stop (no hang)
    from josh.runner.lock import RunLock

    out.mkdir()
    with RunLock.acquire(out / "train_config.json", command="train sft (another)"):
        proc = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode != 0 and not (out / "train_config.json").exists()
    assert proc.stderr.count("is being written by another josh run") == 2, proc.stderr[-3000:]
    assert proc.stderr.count("`train sft (another)`") == 2
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    saved = json.loads((out / "train_config.json").read_text())
    assert saved["recorded"]["processes"] == 2 and saved["recorded"]["status"] == "finished"
    assert (out / "adapter" / "adapter_model.safetensors").exists()
    assert proc.stderr.count("trained sft for 2 steps") == 1  # the main process alone reports


# -- fitting examples to --max-length (--truncation) -------------------------------------------------------


def rows_of(folder: Path) -> list[dict[str, Any]]:
    """The export's rows as `to_dataset` hands them to TRL (tools as JSON text)."""
    rows = [json.loads(line) for line in (folder / "train.jsonl").read_text().splitlines()]
    return [{**row, "tools": json.dumps(row["tools"]) if row.get("tools") else None} for row in rows]


def trl_ids(tokenizer: Any, messages: list[dict[str, Any]], tools: Any) -> list[int]:
    """What TRL's trainers tokenize (its own function: the oracle, not josh's copy of it)."""
    from trl.data_utils import _tokenize

    return _tokenize(tokenizer, messages, tools=json.loads(tools) if tools else None)["input_ids"]


@pytest.fixture(scope="module")
def tokenizer(tiny_model: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


MAX = 300  # the exports' system prompts are 300 characters: with tools and turns most examples exceed this


def test_keep_end_cuts_the_prompts_start_and_keeps_every_completion_whole(
    exports: dict[str, Path], tokenizer: Any
) -> None:
    from josh.train.truncation import fit_examples

    for kind, tails in (("kto", ("completion",)), ("dpo", ("chosen", "rejected"))):
        rows = rows_of(exports[kind])
        kept, report = fit_examples(rows, kind, tokenizer, MAX, "keep-end")
        assert report.truncated > 0 and report.kept == len(kept) > 0 and report.tokens_cut > 0
        record = report.record()
        assert record["truncated"] == report.truncated and record["dropped"] == len(rows) - len(kept)
        assert sum(record["dropped_why"].values()) == record["dropped"]
        for original in rows:
            fitted, _ = fit_examples([original], kind, tokenizer, MAX, "keep-end")
            if not fitted:
                continue
            row = fitted[0]
            for tail in tails:
                assert row[tail] == original[tail]  # the completions are whole
                ids = trl_ids(tokenizer, row["prompt"] + row[tail], row["tools"])
                whole = trl_ids(tokenizer, original["prompt"] + original[tail], row["tools"])
                assert len(ids) <= MAX  # TRL will neither cut nor drop it
                assert ids[-50:] == whole[-50:]  # the end survives: the completion and the prompt's last tokens
            # the prompt lost its start: its system message is still there, cut from the left
            assert row["prompt"][0]["role"] == original["prompt"][0]["role"] == "system"
            assert original["prompt"][0]["content"].endswith(row["prompt"][0]["content"])
            last, was = row["prompt"][-1], original["prompt"][-1]
            assert last == was or (last["role"] == was["role"] and was["content"].endswith(last["content"]))


def test_keep_end_keeps_the_last_replies_of_an_sft_conversation_whole(
    exports: dict[str, Path], tokenizer: Any
) -> None:
    from josh.train.truncation import fit_examples

    rows = rows_of(exports["sft"])
    limit = max(len(trl_ids(tokenizer, row["messages"], row["tools"])) for row in rows) // 2
    truncated = 0
    for original in rows:
        fitted, report = fit_examples([original], "sft", tokenizer, limit, "keep-end")
        truncated += report.truncated
        if not fitted:
            assert list(report.dropped_why) == [
                "its last reply alone, with the template's framing and tools, is longer than --max-length"
            ]
            continue
        row = fitted[0]
        assert len(trl_ids(tokenizer, row["messages"], row["tools"])) <= limit
        replies = [m for m in row["messages"] if m["role"] == "assistant"]
        every = [m for m in original["messages"] if m["role"] == "assistant"]
        assert replies and replies == every[len(every) - len(replies) :]  # the last ones, each whole
    assert truncated > 0


def test_drop_and_keep_start_leave_the_examples_as_they_are_and_count_what_they_leave_out(
    exports: dict[str, Path], tokenizer: Any
) -> None:
    from josh.train.truncation import fit_examples

    rows = rows_of(exports["kto"])
    lengths = [len(trl_ids(tokenizer, row["prompt"] + row["completion"], row["tools"])) for row in rows]
    kept, report = fit_examples(rows, "kto", tokenizer, MAX, "drop")
    assert kept == [row for row, n in zip(rows, lengths, strict=True) if n <= MAX]
    assert report.dropped_why == {"longer than --max-length": sum(n > MAX for n in lengths)} and not report.truncated
    assert report.longest == max(lengths)
    # TRL's own: the data unchanged; what TRL would drop (the prompt alone fills --max-length) is counted here
    kept, report = fit_examples(rows, "kto", tokenizer, MAX, "keep-start")
    assert all(row in rows for row in kept) and report.dropped + len(kept) == len(rows)
    assert report.truncated == sum(n > MAX for n in lengths) - report.dropped
    # an example that cannot fit at all is dropped, with the reason
    kept, report = fit_examples(rows, "kto", tokenizer, 16, "keep-end")
    assert not kept and list(report.dropped_why) == [
        "its completion alone, with the template's framing and tools, is longer than --max-length"
    ]


def test_the_readme_cpu_example_trains_kto_on_the_default_harvest(
    exports: dict[str, Path], tiny_model: Path, tmp_path: Path
) -> None:
    """`josh harvest toolwoz` (ReAct: a 16,000-character system prompt, over 11,000 tokens with the tiny
    model's vocabulary), `josh export kto`, then `josh train kto` on the tiny model with the default
    --max-length 5256: every example is longer, so every one is truncated, and it trains."""
    data = tmp_path / "kto"
    result = josh("export", "kto", str(exports["trees"]), "-o", str(data))
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    result = josh("train", "kto", "--data", str(data), "--model", str(tiny_model), "--out", str(out),
                  "--max-steps", "1", "--grad-accum", "1")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert re.search(r"trained kto for 1 step[,:]", result.output)
    examples = len((data / "train.jsonl").read_text().splitlines())
    assert f"data: {examples} kto examples" in result.output and "--truncation keep-end" in result.output
    recorded = json.loads((out / "train_config.json").read_text())["recorded"]
    assert recorded["status"] == "finished"
    assert recorded["data"]["truncation"] == "keep-end" and recorded["data"]["max_length"] == 5256
    assert recorded["data"]["truncated"] == recorded["data"]["examples"] == examples
    assert recorded["data"]["dropped"] == 0 and recorded["data"]["longest_tokens"] > 10_000
    assert "dropped_by_trl" not in recorded["data"]
    from transformers import AutoConfig

    assert AutoConfig.from_pretrained(tiny_model).max_position_embeddings >= 5256  # the default fits its context


# -- what is checked before the model loads ----------------------------------------------------------------


@pytest.fixture
def no_model_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    from josh.train import trainer

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(trainer, "_load_model", refuse)


def test_data_too_long_for_max_length_is_refused_before_the_model_loads(
    exports: dict[str, Path], tiny_model: Path, tmp_path: Path, no_model_loads: None
) -> None:
    base = ["--model", str(tiny_model), "--out", str(tmp_path / "out")]
    line = one_line_error(josh("train", "dpo", "--data", str(exports["dpo"]), *base, "--max-length", "16"))
    assert "fits in --max-length 16 tokens" in line and "its completion alone" in line
    line = one_line_error(josh("train", "kto", "--data", str(exports["kto"]), *base, "--max-length", "200",
                               "--truncation", "drop"))  # fmt: skip
    assert "fits in --max-length 200" in line and "longer than --max-length" in line
    assert "--truncation keep-end" in line


def test_a_run_file_or_trees_file_given_as_data_says_to_export_it(
    exports: dict[str, Path], tiny_model: Path, tmp_path: Path
) -> None:
    run = tmp_path / "eval.jsonl"
    proc = subprocess.run([sys.executable, "-m", "josh.cli.main", "eval", "toolwoz", "--limit", "1", "--out", str(run)],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    base = ["--model", str(tiny_model), "--out", str(tmp_path / "out")]
    line = one_line_error(josh("train", "kto", "--data", str(run), *base))
    assert "is a run file of `josh eval toolwoz`" in line and "josh export kto" in line and "josh harvest" in line
    line = one_line_error(josh("train", "sft", "--data", str(exports["trees"]), *base))
    assert "is a trees file of `josh harvest toolwoz`" in line
    assert f"josh export sft {exports['trees']} -o DIR" in line


def test_a_model_path_that_does_not_exist_is_no_such_folder(exports: dict[str, Path], tmp_path: Path) -> None:
    for missing in (str(tmp_path / "nothing"), "./models/nothing", "~/no/such/model", "models/org/name"):
        line = one_line_error(josh("train", "kto", "--data", str(exports["kto"]), "--model", missing,
                                   "--out", str(tmp_path / "out")))  # fmt: skip
        assert "no such folder: " in line and "Repo id" not in line, line
    from josh.train.trainer import looks_like_a_path

    assert not any(map(looks_like_a_path, ("meta-llama/Meta-Llama-3-8B-Instruct", "gpt2")))
    assert not (tmp_path / "out").exists()  # refused before anything was written
    line = one_line_error(josh("train", "kto", "--data", str(exports["kto"]), "--model", "m",
                               "--out", str(tmp_path / "out"), "--init-adapter", str(tmp_path)))  # fmt: skip
    assert "not a LoRA adapter folder" in line


def test_a_run_that_failed_before_training_is_recorded_and_does_not_block_a_rerun(
    exports: dict[str, Path], tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from josh.train import trainer

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("out of memory")

    with monkeypatch.context() as patch:
        patch.setattr(trainer, "_load_model", broken)
        with pytest.raises(RuntimeError):
            trainer.train(config("sft", exports, tiny_model, tmp_path))
    recorded = json.loads((tmp_path / "train_config.json").read_text())["recorded"]
    assert recorded["status"] == "failed" and recorded["error"] == "RuntimeError: out of memory"
    assert recorded["global_step"] == 0
    # other --data: nothing was trained there, so no --force is needed
    other = tmp_path.parent / f"{tmp_path.name}-data"
    shutil.copytree(exports["sft"], other)
    result = trainer.train(config("sft", {"sft": other}, tiny_model, tmp_path, max_steps=1))
    assert result.global_step == 1 and not result.already_done
    assert json.loads((tmp_path / "train_config.json").read_text())["recorded"]["status"] == "finished"


def test_a_second_trainer_on_the_same_out_is_refused_naming_the_first(
    exports: dict[str, Path], tiny_model: Path, tmp_path: Path
) -> None:
    from josh.runner.lock import RunLock

    out = tmp_path / "out"
    first = subprocess.Popen(
        [sys.executable, "-m", "josh.cli.main", "train", "sft", "--data", str(exports["sft"]),
         "--model", str(tiny_model), "--out", str(out), "--max-steps", "100000", "--save-steps", "100000",
         "--lora-r", "4", "--grad-accum", "1", "--max-length", "2048", "--no-gradient-checkpointing"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    try:
        lock_file = out / "train_config.json.lock"
        deadline = time.monotonic() + 240
        while not (lock_file.exists() and f'"pid": {first.pid}' in lock_file.read_text()):
            assert first.poll() is None, first.stderr.read() if first.stderr else ""
            assert time.monotonic() < deadline, "the first trainer never took the lock"
            time.sleep(0.2)
        line = one_line_error(josh("train", "sft", "--data", str(exports["sft"]), "--model", str(tiny_model),
                                   "--out", str(out)))  # fmt: skip
        assert "being written by another josh run" in line and f"pid {first.pid}" in line
        assert "`train sft`" in line and "since" in line
    finally:
        first.kill()  # the process this test started, by its own handle
        first.wait(timeout=60)
    RunLock.acquire(out / "train_config.json", command="test").release()  # the kernel dropped the lock


def test_a_short_run_logs_its_loss_often_enough_to_draw_a_curve() -> None:
    """`--logging-steps 10` on a 2-step run logged nothing (`recorded.losses` empty): short runs log more
    often, so that their curve has about 10 points (every step below 10 steps); long runs keep the option."""
    from josh.train.config import TrainConfig
    from josh.train.trainer import logging_steps

    def cfg(**options: object) -> TrainConfig:
        return TrainConfig.model_validate({"kind": "kto", "data": "d", "model": "m", "out": "o", **options})

    assert logging_steps(cfg(max_steps=2), examples=1000, processes=1) == 1
    assert logging_steps(cfg(max_steps=55), examples=1000, processes=1) == 5
    assert logging_steps(cfg(), examples=16_632, processes=1) == 10  # 2,079 steps: the paper's 10
    assert logging_steps(cfg(), examples=80, processes=1) == 1  # 10 steps of 2 x 4
    assert logging_steps(cfg(), examples=1_600, processes=2) == 10  # 100 steps on two processes
