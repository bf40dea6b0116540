"""The loop's stages: what each one runs, where its output goes, and whether it is done.

Every stage is one josh command run as a child process (printed, so it can be rerun by hand), with its
options in a YAML file beside its output. A child process per stage also gives each stage the whole GPU:
an evaluation's model is gone before training starts. A stage whose output is complete is skipped, so a
crashed or interrupted loop resumes where it stopped (eval and harvest with `--resume`, training from its
last checkpoint).

Layout of the loop folder (round 0 is the model before training):

    round-0/eval.yaml, eval.jsonl             the base model on the eval split
    round-1/harvest.yaml, trees.jsonl         JOSH trees of the newest model (round 0's) on the train split
                                              (method rft: N conversations a task, beam 1; `josh.loop.rft`)
    round-1/data/train.jsonl                  the training data exported from them
    round-1/train.yaml, train/adapter/        the LoRA adapter trained on it
    round-1/eval.yaml, eval.jsonl             the trained model on the eval split
    round-2/...                               with `rounds: 2`, the same again from round 1's model
    report.json, report.md, report.png, report.html
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from josh.errors import JoshError, did_you_mean
from josh.loop.child_process import PARENT_PID_ENV
from josh.loop.config import LoopConfig
from josh.loop.rft import rft_budget
from josh.runner import UnstartedRunError, read_run

CONTINUE_EXIT_CODES = (0, 3)  # 3: some conversations ended in an error; they count as reward 0


@dataclass
class Stage:
    """One step of the loop: a josh command, its options file and its output."""

    name: str  # e.g. "round 1: harvest"
    kind: str  # eval | harvest | export | train
    round: int
    output: Path
    args: list[str]
    options: dict[str, Any] = field(default_factory=dict)  # written to `options_file` before running
    options_file: Path | None = None

    def done(self) -> bool:
        """Whether the stage's output is complete (then the stage is skipped)."""
        if self.kind in ("eval", "harvest"):
            return run_finished(self.output)
        if self.kind == "export":
            return (self.output / "train.jsonl").exists() and (self.output / "summary.json").exists()
        return (self.output / "adapter" / "adapter_config.json").exists()

    def command(self) -> str:
        """The command line, as a user would type it."""
        return shlex.join(["josh", *self.args])


def run_finished(path: Path) -> bool:
    """A run file whose last run ended on its own (not interrupted, not stopped by its endpoint)."""
    if not path.exists():
        return False
    try:
        contents = read_run(path)
    except UnstartedRunError:  # empty, or a torn header: its stage starts it over (with --resume)
        return False
    if not contents.statuses:
        return False
    last = contents.statuses[-1]
    return last.get("status") in ("success", "error") and not last.get("stopped")


def round_dir(config: LoopConfig, round_: int) -> Path:
    assert config.out is not None
    return config.out / f"round-{round_}"


def adapter_of(config: LoopConfig, round_: int) -> Path | None:
    """The adapter trained in round `round_` (None for round 0, the base model)."""
    return round_dir(config, round_) / "train" / "adapter" if round_ > 0 else None


def model_spec(config: LoopConfig, round_: int) -> str:
    """The `--model` of round `round_`'s model: hf:BASE, then hf:BASE+ADAPTER."""
    adapter = adapter_of(config, round_)
    return f"hf:{config.model}" if adapter is None else f"hf:{config.model}+{adapter}"


def _eval_stage(config: LoopConfig, round_: int) -> Stage:
    where = round_dir(config, round_)
    options = {**config.section("eval"), "model": model_spec(config, round_)}
    output = where / "eval.jsonl"
    return Stage(
        f"round {round_}: evaluate {'the base model' if round_ == 0 else 'the trained model'}",
        "eval",
        round_,
        output,
        ["eval", "toolwoz", "--config", str(where / "eval.yaml"), "--out", str(output), "--resume"],
        options,
        where / "eval.yaml",
    )


def plan(config: LoopConfig) -> list[Stage]:
    """Every stage of the loop, in order."""
    stages = [_eval_stage(config, 0)]
    for round_ in range(1, config.rounds + 1):
        where = round_dir(config, round_)
        harvest = {"model": model_spec(config, round_ - 1), **config.section("harvest")}
        name = f"round {round_}: harvest JOSH trees"
        if config.method == "rft":
            samples = rft_budget(harvest).samples
            harvest = {**harvest, "beam": 1, "trials": samples * int(harvest.get("trials", 1))}
            name = f"round {round_}: sample {samples} conversations a task (rft: harvest with beam 1)"
        trees, data, trained = where / "trees.jsonl", where / "data", where / "train"
        kind = config.trained_kind
        stages.append(Stage(
            name, "harvest", round_, trees,
            ["harvest", "toolwoz", "--config", str(where / "harvest.yaml"), "--out", str(trees), "--resume"],
            harvest, where / "harvest.yaml",
        ))  # fmt: skip
        export = ["export", kind, str(trees), "-o", str(data), "--force"]
        if config.export.get("reference_selection"):
            export.append("--reference-selection")
        stages.append(Stage(f"round {round_}: export {kind} data", "export", round_, data, export))
        train = ["train", kind, "--data", str(data), "--model", config.model, "--out", str(trained)]
        previous = adapter_of(config, round_ - 1)
        if previous is not None:
            train += ["--init-adapter", str(previous)]
        train += ["--config", str(where / "train.yaml")]
        stages.append(Stage(
            f"round {round_}: train ({kind}, LoRA)", "train", round_, trained, train,
            dict(config.train), where / "train.yaml",
        ))  # fmt: skip
        stages.append(_eval_stage(config, round_))
    return stages


def check_options(stages: Sequence[Stage], where: Path) -> None:
    """Fail before any work on an option a stage's command would refuse: eval and harvest (common + own
    section) and train, each against its command's own config, a misspelt key with the closest name."""
    from pydantic import BaseModel, ValidationError

    from josh.benchmarks.toolwoz.config import ToolWOZEvalConfig, ToolWOZHarvestConfig
    from josh.train.config import TrainConfig

    configs: dict[str, type[BaseModel]] = {
        "eval": ToolWOZEvalConfig, "harvest": ToolWOZHarvestConfig, "train": TrainConfig,
    }  # fmt: skip
    for stage in stages:
        if stage.kind not in configs:
            continue
        config = configs[stage.kind]
        command = f"josh {' '.join(stage.args[:2])}"
        sections = f" (common + {stage.kind})" if stage.kind in ("eval", "harvest") else ""
        problems = [  # misspelt keys first: a validator may otherwise stop at another problem
            f"'{key.replace('_', '-')}': not an option of `{command}`" + did_you_mean(key, config.model_fields)
            for key in sorted(set(stage.options) - set(config.model_fields))
        ]
        if not problems:
            try:
                config.model_validate({**stage.options, **_set_by_loop(stage)})
            except ValidationError as exc:
                for error in exc.errors():
                    key = ".".join(str(p).replace("_", "-") for p in error["loc"])
                    message = error["msg"].removeprefix("Value error, ")
                    problems.append(f"'{key}': {message}" if key else message)
        if problems:
            raise JoshError(f"{where}: {stage.kind} options{sections}: " + "; ".join(problems))


def _set_by_loop(stage: Stage) -> dict[str, Any]:
    """The options a train stage gets on its command line (its kind, --data, --model, --out, ...), so that
    its options are checked as `josh train` will check them."""
    if stage.kind != "train":
        return {}
    flags = dict(zip(stage.args[2::2], stage.args[3::2], strict=True))
    flags.pop("--config", None)
    return {"kind": stage.args[1], **{flag[2:].replace("-", "_"): value for flag, value in flags.items()}}


# What a train stage's plan line leaves out: the loop's own wiring (shown on the command line) and the run's
# housekeeping; everything else is the training recipe.
_NOT_RECIPE = {"kind", "data", "model", "out", "init_adapter", "force", "config", "save_steps"}


def resolved_options(stage: Stage) -> dict[str, Any]:
    """What a stage runs with, for `josh loop --plan`: the options of an eval or harvest stage (common + its
    own section) and, for training, the whole recipe with the defaults of its kind filled in (exactly what
    `josh train` will use). Export takes its options on its command line: none here."""
    if stage.kind != "train":
        return {key.replace("_", "-"): value for key, value in stage.options.items()}
    from josh.train.config import TrainConfig

    config = TrainConfig.model_validate({**stage.options, **_set_by_loop(stage)})
    values = config.model_dump(mode="json", exclude=_NOT_RECIPE)
    return {key.replace("_", "-"): value for key, value in values.items() if value is not None}


def write_options(stage: Stage) -> None:
    """The stage's options file, in its command's vocabulary (flag names as keys)."""
    if stage.options_file is None:
        return
    stage.options_file.parent.mkdir(parents=True, exist_ok=True)
    data = {key.replace("_", "-"): value for key, value in stage.options.items()}
    stage.options_file.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def check_export(stage: Stage, method: str) -> None:
    """Training cannot start on data it cannot use: say why, and what to change."""
    summary = json.loads((stage.output / "summary.json").read_text(encoding="utf-8"))
    counts = summary.get("counts", {})
    if method == "kto":
        true, false = int(counts.get("label true", 0)), int(counts.get("label false", 0))
        if not true or not false:
            raise JoshError(
                f"{stage.name}: the trees gave {true} desirable and {false} undesirable KTO examples; KTO "
                "needs both: harvest more tasks (harvest: limit) or a model that sometimes succeeds"
            )
    elif not int(summary.get("examples", 0)):
        why = {
            "sft": "no tree reached reward 1.0",
            "rft": "no sampled conversation reached reward 1.0",
        }.get(method, "no sibling replies split success and failure")
        raise JoshError(
            f"{stage.name}: no {method} example ({why}): harvest more tasks (harvest: limit), or use "
            "method: kto"
        )


def josh_command(args: Sequence[str]) -> list[str]:
    """The child process running `josh ARGS` with this interpreter (the josh the loop itself runs)."""
    return [sys.executable, "-m", "josh.cli.main", *args]


def child_env() -> dict[str, str]:
    """The stage's environment: this one, unbuffered, naming the loop so that the child dies with it."""
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env[PARENT_PID_ENV] = str(os.getpid())
    return env
