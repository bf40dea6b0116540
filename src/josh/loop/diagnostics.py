"""What each round of the loop did, read back from its stages' outputs, so the report can answer "did training
do anything?": the harvest's yield, the examples exported, the training loss curve, how far the adapter moved,
and each stage's wall time, tokens and cost.

Everything is read from files the stages wrote (`trees.summary.json`, `data/summary.json`,
`train/train_config.json`, `train/adapter/`, `eval.summary.json`) and from `timings.json`, where the loop adds
each stage's wall time as it runs; a stage that has not run gives None, never an error.

How far the adapter moved: a LoRA adapter changes each adapted weight matrix W by dW = (alpha / r) B A. The
size of the whole update is the Frobenius norm over all adapted matrices, sqrt(sum ||dW||^2), computed from the
small factors alone (||B A||^2 = trace((B^T B)(A A^T)), r x r matrices), so it costs little even for an 8B
model. A round that continues the previous round's adapter also reports the norm of the difference between
the two updates: what this round's training added.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from josh.export import protocol_error
from josh.rollout.record import RolloutRecord
from josh.runner.summary import latest_by_key
from josh.types import AssistantMessage

TIMINGS = "timings.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# -- wall times ----------------------------------------------------------------------------------------------


def add_stage_time(out: Path, stage: str, seconds: float) -> None:
    """Add `seconds` to `stage`'s wall time in OUT/timings.json (a resumed stage adds up), written atomically."""
    timings = _read_json(out / TIMINGS) or {}
    timings[stage] = round(float(timings.get(stage, 0.0)) + seconds, 3)
    out.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".timings-", dir=out)
    with os.fdopen(handle, "w", encoding="utf-8") as fh:
        json.dump(timings, fh, indent=2)
    os.replace(temporary, out / TIMINGS)


def stage_times(out: Path) -> dict[str, float]:
    """Each stage's wall time in seconds (over every run of it), by the stage's name."""
    timings = _read_json(out / TIMINGS) or {}
    return {str(k): float(v) for k, v in timings.items() if isinstance(v, int | float)}


# -- the adapter ---------------------------------------------------------------------------------------------


def _lora_factors(adapter: Path) -> tuple[dict[str, tuple[Any, Any]], float] | None:
    """Each adapted module's (A, B) factors and the adapter's scale alpha / r; None without an adapter."""
    config = _read_json(adapter / "adapter_config.json")
    weights = adapter / ADAPTER_WEIGHTS
    if config is None or not weights.is_file():
        return None
    from safetensors.torch import load_file

    tensors = load_file(str(weights))
    pairs: dict[str, tuple[Any, Any]] = {}
    for name, tensor in tensors.items():
        if ".lora_A." in name:
            module = name.split(".lora_A.")[0]
            partner = tensors.get(name.replace(".lora_A.", ".lora_B."))
            if partner is not None:
                pairs[module] = (tensor.double(), partner.double())
    rank, alpha = config.get("r") or 1, config.get("lora_alpha") or 1
    scale = alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank
    return pairs, float(scale)


def _inner(one: tuple[Any, Any], other: tuple[Any, Any]) -> float:
    """<B1 A1, B2 A2> (Frobenius) from the factors: trace((B1^T B2)(A2 A1^T))."""
    (a1, b1), (a2, b2) = one, other
    return float(((b1.T @ b2) * (a1 @ a2.T)).sum())


def adapter_movement(adapter: Path, previous: Path | None = None) -> dict[str, Any] | None:
    """How far `adapter` moves the base model: `update_norm`, the Frobenius norm of its whole update; with
    `previous` (the adapter it continued), `moved`, the norm of the difference between the two updates.
    None when there is no adapter."""
    found = _lora_factors(adapter)
    if found is None:
        return None
    pairs, scale = found
    squared = sum(_inner(p, p) for p in pairs.values()) * scale**2
    result: dict[str, Any] = {"modules": len(pairs), "update_norm": math.sqrt(max(squared, 0.0))}
    before = _lora_factors(previous) if previous is not None else None
    if before is not None:
        old_pairs, old_scale = before
        shared = set(pairs) & set(old_pairs)
        difference = squared + sum(_inner(p, p) for p in old_pairs.values()) * old_scale**2
        difference -= 2 * scale * old_scale * sum(_inner(pairs[m], old_pairs[m]) for m in shared)
        result["moved"] = math.sqrt(max(difference, 0.0))
    return result


# -- the agent's protocol -------------------------------------------------------------------------------------


def protocol_following(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """How many of the agent's replies in an evaluation follow its protocol: each assistant message of the
    agent's own view that is no protocol error as `josh export` judges one (no ReAct command found, a
    malformed call, an error stand-in...; `josh.export.protocol_error`). A small model's first gain from
    training is often here, long before its reward moves."""
    replies = following = 0
    for data in latest_by_key(records):
        try:
            internal = RolloutRecord.model_validate(data).internal
        except ValidationError:
            continue
        for index, message in enumerate(internal):
            if isinstance(message, AssistantMessage):
                replies += 1
                following += protocol_error(internal, index) is None
    return {"replies": replies, "following": following, "share": following / replies if replies else None}


# -- one round -----------------------------------------------------------------------------------------------


def _run_costs(summary: dict[str, Any] | None) -> dict[str, Any] | None:
    if summary is None:
        return None
    tokens = summary.get("tokens") or {}
    return {
        "tokens": sum(int(side.get(k, 0)) for side in tokens.values() for k in ("prompt", "completion")),
        "cost_usd": (summary.get("cost_usd") or {}).get("total"),
        "model_calls": sum((summary.get("model_calls") or {}).values()),
    }


def harvest_yield(summary: dict[str, Any] | None) -> dict[str, Any] | None:
    """Trees, trees with a golden path, trees at reward 1.0 and the average tree reward of a harvest."""
    if summary is None:
        return None
    trees = summary.get("trees") or {}
    return {
        "trees": trees.get("trees", summary.get("records", 0)),
        "with_golden_path": trees.get("with_golden_path", 0),
        "perfect": summary.get("perfect", 0),
        "average_tree_reward": summary.get("average_reward"),
        **(_run_costs(summary) or {}),
    }


def round_details(folder: Path, round_: int, previous_adapter: Path | None) -> dict[str, Any]:
    """What round `round_` did, from its folder (`round-N/`): harvest, export, train, adapter and eval."""
    details: dict[str, Any] = {"round": round_}
    if round_ > 0:
        details["harvest"] = harvest_yield(_read_json(folder / "trees.summary.json"))
        export = _read_json(folder / "data" / "summary.json")
        details["export"] = (
            None if export is None
            else {"kind": export.get("kind"), "examples": export.get("examples", 0), "counts": export.get("counts", {})}
        )  # fmt: skip
        train = _read_json(folder / "train" / "train_config.json")
        recorded = (train or {}).get("recorded") or {}
        losses = [float(x) for x in recorded.get("losses", []) if isinstance(x, int | float)]
        details["train"] = (
            None if train is None
            else {"status": recorded.get("status"), "steps": recorded.get("global_step"), "losses": losses,
                  **{k: recorded[k] for k in ("truncated", "dropped") if k in recorded}}
        )  # fmt: skip
        details["adapter"] = adapter_movement(folder / "train" / "adapter", previous_adapter)
    details["eval"] = _run_costs(_read_json(folder / "eval.summary.json"))
    return details
