"""`josh train sft|kto|dpo --data DIR --model M --out OUT`: a LoRA adapter trained with TRL on exported data.

The options come from `josh.train.config.TrainConfig` (one declaration: flags, YAML keys, help and the
kind's defaults); the training stack is imported only when a command runs, so `josh --help` stays fast.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from josh.cli.console import counted, err, user_errors
from josh.cli.options import load_config_file, resolve, with_options
from josh.errors import JoshError
from josh.llm.hf.spec import TRAIN_INSTALL
from josh.train.config import KINDS, SOURCES, Kind, TrainConfig, options_for

NEEDS_TRAIN = f"Needs the \\[train] extra: {escape(TRAIN_INSTALL)}"  # Rich markup would eat a bare [train]

train_app = typer.Typer(
    help="Train a LoRA adapter on `josh export` data with TRL (SFT, KTO, DPO); needs the \\[train] extra "
    f"({escape(TRAIN_INSTALL)}). Many GPUs or machines: `accelerate launch -m josh.cli.main train ...`.",
    no_args_is_help=True,
)

TRAIN_FILE_OPTIONS = (
    inspect.Parameter("config_file", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
        Path | None, typer.Option("--config", help="YAML (or JSON) file of options, keys as the flag names "
                                  "(lora-r: 16); flags typed here override it. OUT/train_config.json can be fed "
                                  "back.")]),
    inspect.Parameter("force", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=Annotated[
        bool, typer.Option("--force", help="Start again from scratch: delete OUT's checkpoints and adapter.")]),
)  # fmt: skip

WHAT = {
    "sft": "SFT on the conversations of `josh export sft` ({\"messages\", \"tools\"}): the golden paths.",
    "kto": "KTO on the labelled replies of `josh export kto` ({\"prompt\", \"completion\", \"label\", "
    "\"tools\"}): the paper's method.",
    "dpo": "DPO on the reply pairs of `josh export dpo` ({\"prompt\", \"chosen\", \"rejected\", \"tools\"}).",
}
DEFAULTS_FROM = {
    "sft": "The defaults are those of the paper's sft_agent_successful.py (josh-train 0.1.4), except the "
    "loss on the assistant's tokens only.",
    "kto": "The defaults are those of the paper's finetune_agent.py (josh-train 0.1.4), the script that reads "
    "the released trees. Its kto_ft.py disagrees (gradient accumulation 16, beta 0.1, desirable weight 1.0, "
    "undesirable weight 2.71, at batch 1): pass --grad-accum 8 --beta 0.1 --desirable-weight 1.0 "
    "--undesirable-weight 2.71 to follow it (8, not 16, at batch 2: TRL 1.16's KTO needs 2 or more, so "
    "josh's KTO batch is 2 x 4).",
    "dpo": "The paper has no DPO script: the defaults are finetune_agent.py's LoRA and optimiser settings "
    "and TRL's default beta, 0.1.",
}


def _help(kind: Kind) -> str:
    return (
        f"{WHAT[kind]}\n\n{DEFAULTS_FROM[kind]}\n\n"
        "Writes OUT/adapter (the LoRA adapter), OUT/train_config.json (every option, the optimiser used, "
        "library versions, how many examples were truncated or dropped and why) and OUT/checkpoints. Rerun "
        "with the same OUT to resume from the last checkpoint; if OUT holds this very run, finished, nothing is "
        "done unless --force. One run at a time per OUT (a second is refused, naming the first). Exit status 0, "
        f"or 1 with one line for bad options or data. Defaults from: {SOURCES[kind]}.\n\n{NEEDS_TRAIN}"
    )


def _command(kind: Kind) -> None:
    @user_errors
    @with_options(options_for(kind), TRAIN_FILE_OPTIONS)
    def command(*, options: dict[str, Any], config_file: Path | None, force: bool) -> None:
        run_train(kind, options, config_file, force=force)

    command.__name__ = f"train_{kind}"
    train_app.command(kind, help=_help(kind))(command)


for _kind in KINDS:
    _command(_kind)


def run_train(kind: Kind, options: dict[str, Any], config_file: Path | None, *, force: bool) -> None:
    """Resolve the options, train, and say what was written (on the main process)."""
    from josh.train.trainer import check_stack

    check_stack()  # before anything else: the one line that says how to install the [train] extra
    if config_file is not None:
        found = load_config_file(config_file).get("kind")
        if found not in (None, kind):
            raise JoshError(f"{config_file} is a {found} config: run `josh train {found} --config {config_file}`")
    cfg = resolve(TrainConfig, {**options, "kind": kind}, config_file)

    from josh.train.hardware import process_state
    from josh.train.trainer import train

    def show_data(report: Any) -> None:
        err.print(f"data: {escape(report.summary())}", soft_wrap=True)

    with _ProgressBar(kind) as bar:
        result = train(cfg, on_progress=bar.update, on_data=show_data, force=force, command=f"train {kind}")
    if not process_state().is_main_process:
        return
    if result.already_done:
        err.print(
            f"{escape(str(cfg.out))} already holds this run, finished ({counted(result.global_step, 'step')}): "
            f"adapter {escape(str(result.adapter_dir))}; nothing to do (--force trains again)",
            soft_wrap=True,
        )
        return
    resumed = f", resumed from {escape(str(result.resumed_from))}" if result.resumed_from else ""
    last = f", last logged loss {result.losses[-1]:.4g}" if result.losses else ""
    err.print(
        f"trained {kind} for {counted(result.global_step, 'step')}{resumed}{last}: adapter "
        f"{escape(str(result.adapter_dir))}; config {escape(str(result.config_path))}",
        soft_wrap=True,
    )


class _ProgressBar:
    """A Rich progress bar of the optimiser steps with the last logged loss, started at the first step (only
    the main process of an `accelerate launch` gets any)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.progress: Any = None
        self.task: Any = None

    def __enter__(self) -> _ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def update(self, event: Any) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        if self.progress is None:
            self.progress = Progress(
                TextColumn(f"train {self.kind}"), BarColumn(), MofNCompleteColumn(), TextColumn("steps"),
                TextColumn("{task.fields[loss]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                console=err,
            )  # fmt: skip
            self.progress.start()
            self.task = self.progress.add_task("train", total=event.total_steps or None, loss="")
        loss = f"loss {event.loss:.4g}" if event.loss is not None else ""
        self.progress.update(self.task, completed=event.step, total=event.total_steps or None, loss=loss)
