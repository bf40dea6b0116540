"""The loop report's answer to "did training do anything?": what each round did, read from its stages' files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from josh.loop.diagnostics import adapter_movement, add_stage_time, harvest_yield, round_details, stage_times
from josh.loop.report import RoundRun, build_report, markdown, training_rows, verdict

torch = pytest.importorskip("torch")
peft = pytest.importorskip("peft")


def _adapter(base: Path, out: Path, seed: int, *, start: Path | None = None) -> Path:
    """A LoRA adapter of the tiny model with non-zero random factors (or `start`'s, then perturbed)."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base)
    if start is None:
        config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
        tuned = peft.get_peft_model(model, config)
    else:
        tuned = peft.PeftModel.from_pretrained(model, start, is_trainable=True)
        with torch.no_grad():
            for name, parameter in tuned.named_parameters():
                if "lora_B" in name:
                    parameter.add_(0.01 * torch.randn_like(parameter))
    tuned.save_pretrained(out)
    return out


def _explicit_updates(adapter: Path, base: Path) -> dict[str, torch.Tensor]:
    """Each adapted weight's update, computed the slow way: merged weights minus the base's."""
    from transformers import AutoModelForCausalLM

    plain = AutoModelForCausalLM.from_pretrained(base)
    merged = peft.PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), adapter).merge_and_unload()
    before = dict(plain.named_parameters())
    return {
        name: (weight - before[name]).double()
        for name, weight in merged.named_parameters()
        if not torch.equal(weight, before[name])
    }


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from josh.train.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("diag") / "tiny")


def test_adapter_movement_equals_the_merged_weights_difference(tiny: Path, tmp_path: Path) -> None:
    first = _adapter(tiny, tmp_path / "r1", seed=1)
    second = _adapter(tiny, tmp_path / "r2", seed=2, start=first)
    one, two = _explicit_updates(first, tiny), _explicit_updates(second, tiny)
    norm = torch.sqrt(sum((u**2).sum() for u in two.values())).item()
    moved = torch.sqrt(sum(((two[k] - one[k]) ** 2).sum() for k in two)).item()
    measured = adapter_movement(second, first)
    assert measured is not None and measured["modules"] == len(two) == 4  # q and v of 2 layers
    assert measured["update_norm"] == pytest.approx(norm, rel=1e-4)
    assert measured["moved"] == pytest.approx(moved, rel=1e-3)
    assert adapter_movement(first)["update_norm"] > 0 and "moved" not in adapter_movement(first)
    assert adapter_movement(tmp_path / "nowhere") is None


def test_stage_times_add_up_over_resumes(tmp_path: Path) -> None:
    add_stage_time(tmp_path, "round 1: train", 12.5)
    add_stage_time(tmp_path, "round 1: train", 2.5)
    add_stage_time(tmp_path, "round 0: eval", 3)
    assert stage_times(tmp_path) == {"round 1: train": 15.0, "round 0: eval": 3.0}
    assert stage_times(tmp_path / "missing") == {}


def _round_folder(folder: Path, losses: list[float]) -> None:
    (folder / "data").mkdir(parents=True)
    (folder / "train").mkdir()
    summary = {"records": 4, "perfect": 1, "average_reward": 0.625, "trees": {"trees": 4, "with_golden_path": 3},
               "tokens": {"agent": {"prompt": 900, "completion": 100}, "user": {"prompt": 50, "completion": 5}},
               "cost_usd": {"total": 0.25}, "model_calls": {"agent": 9, "user": 4}}  # fmt: skip
    (folder / "trees.summary.json").write_text(json.dumps(summary))
    (folder / "data" / "summary.json").write_text(
        json.dumps({"kind": "kto", "examples": 30, "counts": {"label true": 20, "label false": 10}})
    )
    recorded = {"status": "finished", "global_step": len(losses), "losses": losses}
    (folder / "train" / "train_config.json").write_text(json.dumps({"recorded": recorded}))


def test_round_details_and_the_report_say_what_each_round_did(tiny: Path, tmp_path: Path) -> None:
    folder = tmp_path / "round-1"
    _round_folder(folder, [0.69, 0.61, 0.52])
    _adapter(tiny, folder / "train" / "adapter", seed=3)
    details = round_details(folder, 1, None)
    assert details["harvest"] == {
        "trees": 4, "with_golden_path": 3, "perfect": 1, "average_tree_reward": 0.625,
        "tokens": 1055, "cost_usd": 0.25, "model_calls": 13,
    }  # fmt: skip
    assert details["export"]["counts"] == {"label true": 20, "label false": 10}
    assert details["train"]["losses"] == [0.69, 0.61, 0.52] and details["train"]["steps"] == 3
    assert details["adapter"]["update_norm"] > 0
    assert details["eval"] is None  # not evaluated yet
    base = [{"task_id": f"t{i}", "status": "success", "reward": 0.0, "goal_calls": ["book_hotel"]} for i in range(6)]
    same = RoundRun(1, "hf:m+a", base, "r1"), RoundRun(0, "hf:m", base, "r0")
    report = build_report("m", "kto", [same[1], same[0]], [{"round": 0}, details], {"round 1: train": 42.0})
    assert report["verdict"].startswith("Nothing changed significantly")
    assert "loss went from 0.69 to 0.52" in report["verdict"] and "Frobenius norm" in report["verdict"]
    header, [row] = training_rows(report)
    assert row[header.index("loss first -> last")] == "0.69 -> 0.52"
    assert row[header.index("wall s (harvest / export / train / eval)")] == "n/a / n/a / 42 / n/a"
    assert "## What each round did" in markdown(report)
    better = [{**r, "reward": 1.0} for r in base]
    changed = build_report("m", "kto", [same[1], RoundRun(1, "hf:m+a", better, "r1")])
    assert changed["verdict"].startswith("Significant changes against the base model")
    assert "round 1, all: average reward +1.000" in verdict(changed)


def test_harvest_yield_of_a_missing_summary_is_none() -> None:
    assert harvest_yield(None) is None


def test_protocol_following_counts_the_agents_replies_that_keep_its_protocol() -> None:
    """SmolLM2 under the paper's ReAct prompt: its replies had no command (the agent's stand-in `ERROR: NO
    COMMAND FOUND` takes their place); a trained model's PLAN/SPEAK replies follow the protocol."""
    from josh.loop.diagnostics import protocol_following

    def record(task: str, *replies: str) -> dict:
        internal = [{"role": "user", "content": "I need a guesthouse."}]
        internal += [{"role": "assistant", "content": text} for text in replies]
        return {"task_id": task, "status": "success", "termination": "max_turns", "reward": 0.0, "internal": internal}

    base = [record("a", "ERROR: NO COMMAND FOUND", "ERROR: NO COMMAND FOUND"), record("b", "ERROR: NO COMMAND FOUND")]
    trained = [record("a", "PLAN ask for the area <COMMAND_END> SPEAK Which area? <COMMAND_END>"), base[1]]
    assert protocol_following(base) == {"replies": 3, "following": 0, "share": 0.0}
    assert protocol_following(trained) == {"replies": 2, "following": 1, "share": 0.5}
    assert protocol_following([])["share"] is None
    runs = [RoundRun(0, "hf:m", base, "r0"), RoundRun(1, "hf:m+a", trained, "r1")]
    report = build_report("m", "sft", runs)
    assert "Agent replies that follow the protocol: 0.0% of 3 in round 0, 50.0% of 2 in round 1." in report["verdict"]
    assert "| 1 | hf:m+a | 2 |" in markdown(report) and "50.0% (1 of 2)" in markdown(report)
