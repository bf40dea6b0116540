"""`josh loop` end to end on CPU: a tiny random Llama evaluated, trained with KTO twice and evaluated again.

The harvest uses the scripted mock's oracle (`harvest: {model: scripted}`), which makes mistakes at the
mock's rate: a random model's own trees would hold no success, and KTO needs both labels."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("trl")
pytest.importorskip("matplotlib")

from josh.train.tiny_model import build_tiny_model  # noqa: E402

LOOP = """
model: {model}
method: kto
rounds: 2
common: {{agent: fc, user: replay, concurrency: 3}}
eval: {{limit: 3, max-turns: 2, max-tokens: 8}}
harvest: {{model: scripted, limit: 4, mock-mistake-rate: 0.5}}
train: {{max-steps: 2, logging-steps: 1}}
"""


def _loop(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "josh.cli.main", "loop", str(config)],
        capture_output=True,
        text=True,
        timeout=600,
    )


def _lora_weights(adapter: Path) -> dict[str, list[float]]:
    from safetensors.torch import load_file

    return {k: v.flatten().tolist() for k, v in load_file(adapter / "adapter_model.safetensors").items()}


def test_loop_runs_every_stage_then_resumes_with_nothing_to_do(tmp_path: Path) -> None:
    model = build_tiny_model(tmp_path / "tiny")
    config = tmp_path / "loop.yaml"
    config.write_text(LOOP.format(model=model))
    proc = _loop(config)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    out = tmp_path / "loop"
    # every stage printed its command and wrote its output
    for stage in (
        "round 0: evaluate the base model: josh eval toolwoz",
        "round 2: train (kto, LoRA): josh train kto",
    ):
        assert stage in proc.stderr
    for round_ in (1, 2):
        where = out / f"round-{round_}"
        trained = json.loads((where / "train" / "train_config.json").read_text())["recorded"]
        assert trained["status"] == "finished" and trained["global_step"] == 2
        assert trained["losses"] and all(math.isfinite(x) for x in trained["losses"])
        assert (where / "data" / "train.jsonl").stat().st_size > 0
    # round 2 continued round 1's adapter and changed it; round 1's is LoRA from scratch (B starts at 0)
    first, second = _lora_weights(out / "round-1/train/adapter"), _lora_weights(out / "round-2/train/adapter")
    assert first.keys() == second.keys()
    assert any(any(x != 0 for x in v) for k, v in first.items() if "lora_B" in k)
    assert any(first[k] != second[k] for k in first)
    train_args = (out / "round-2" / "train.yaml").read_text()
    assert "max-steps: 2" in train_args
    # each round's model was evaluated: base, then base + that round's adapter
    models = [json.loads((out / f"round-{r}" / "eval.config.json").read_text())["model"] for r in range(3)]
    assert models == [
        f"hf:{model}",
        f"hf:{model}+{out}/round-1/train/adapter",
        f"hf:{model}+{out}/round-2/train/adapter",
    ]
    report = json.loads((out / "report.json").read_text())
    assert [r["round"] for r in report["rounds"]] == [0, 1, 2]
    assert report["rounds"][0]["metrics"]["all"]["tasks"] == 3
    assert set(report["compared_with_base"]) == {"1", "2"}
    assert (out / "report.png").read_bytes().startswith(b"\x89PNG")
    assert "round-2/eval.html" in (out / "report.html").read_text()
    assert "| all | 3 |" in (out / "report.md").read_text()

    again = _loop(config)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count("done, skipped") == 9
    assert "josh eval toolwoz --config" not in again.stderr  # nothing ran again
