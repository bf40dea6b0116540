"""`josh loop CONFIG.yaml`: the self-training loop, stage by stage, resumable."""

from __future__ import annotations

import contextlib
import inspect
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from josh.cli.console import err, fail, user_errors
from josh.cli.run_flow import EXIT_INTERRUPTED
from josh.cli.train_cmd import NEEDS_TRAIN
from josh.loop.config import load_loop_config
from josh.loop.run import StageFailed, run_loop


@user_errors
def loop(
    config_path: Annotated[Path, typer.Argument(metavar="CONFIG.yaml", help="The loop's YAML config.")],
    plan: Annotated[
        bool, typer.Option("--plan", help="Print the stages, their commands and which are done; run nothing.")
    ] = False,
) -> None:
    """Self-train a model: evaluate it, harvest JOSH trees, export, train a LoRA adapter, evaluate again.

    CONFIG.yaml names the model (a Hugging Face id or a local folder, run in-process as hf:MODEL and then
    hf:MODEL+ADAPTER), the method (sft, kto or dpo; the paper: kto; or rft, rejection-sampling fine-tuning:
    SFT on the successes of N independent conversations a task, N matching JOSH's budget, printed by --plan),
    `rounds` (harvest -> train repeated from the newest model) and each stage's options in its own command's
    vocabulary: `common` (eval and harvest), `eval`, `harvest` (a `model` there harvests with another model,
    e.g. a teacher), `export` and `train`. Each stage is one josh command, printed before it runs; a stage
    whose output is complete is skipped, so running the same command again after a crash or Ctrl-C continues
    where it stopped. Ctrl-C or SIGTERM stops the running stage too, then exits 130; on Linux a stage dies
    with the loop even when the loop is killed outright.

    Writes, in the loop's folder (`out`, default: beside the config, named after it): round-N/ with each
    stage's options and output, and report.json, report.md, report.png and report.html: before/after
    average reward and 100% success rate per domain, every round, with 95% bootstrap intervals and a
    paired permutation test against the base model.
    """
    config = load_loop_config(config_path)

    def say(message: str) -> None:
        err.print(message, soft_wrap=True)

    try:
        with _sigterm_interrupts():
            run_loop(config, say, source=config_path, only_plan=plan)
    except StageFailed as exc:
        raise fail(str(exc), exc.code) from None
    except KeyboardInterrupt:  # the running stage has been stopped (run_stage)
        err.print(
            f"[yellow]interrupted[/yellow]: run the same `josh loop {escape(str(config_path))}` again to continue "
            "(finished stages are skipped)",
            soft_wrap=True,
        )
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if not plan:
        typer.echo(f"loop finished: {config.out}")


# The install line comes from its one constant, so it is added to the docstring here.
loop.__doc__ = f"{inspect.cleandoc(loop.__doc__ or '')}\n\n{NEEDS_TRAIN}"


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM stops the loop as Ctrl-C does (its stage stopped, exit 130), not on the spot."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: no handlers there
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
