"""Running the loop: each stage not yet done, in order, then the report."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from josh.errors import JoshError
from josh.loop.child_process import stop_child
from josh.loop.config import LoopConfig
from josh.loop.diagnostics import add_stage_time, round_details, stage_times
from josh.loop.report import RoundRun, build_report, write_report
from josh.loop.rft import rft_budget
from josh.loop.stages import (
    CONTINUE_EXIT_CODES,
    Stage,
    adapter_of,
    check_export,
    check_options,
    child_env,
    josh_command,
    model_spec,
    plan,
    resolved_options,
    round_dir,
    write_options,
)
from josh.runner import read_run

Say = Callable[[str], None]


class StageFailed(JoshError):
    """A stage's command failed; its exit status is the loop's."""

    def __init__(self, stage: Stage, code: int) -> None:
        super().__init__(
            f"{stage.name} failed (exit {code}): fix what it said, then run the same `josh loop` again to "
            "continue (finished stages are skipped)"
        )
        self.code = code


def stage_key(stage: Stage) -> str:
    """A stage's name in timings.json: `round N: KIND`."""
    return f"round {stage.round}: {stage.kind}"


def run_stage(stage: Stage, say: Say) -> None:
    """Run one stage's command in a child process, its output on this terminal."""
    write_options(stage)
    say(f"[bold]{stage.name}[/bold]: {stage.command()}")
    child = subprocess.Popen(josh_command(stage.args), env=child_env())
    try:
        code = child.wait()
    except BaseException:  # Ctrl-C, or SIGTERM (which `josh loop` raises as KeyboardInterrupt)
        stop_child(child)
        raise
    if code == 3:
        say(f"{stage.name}: some conversations ended in an error (counted as reward 0); going on")
    if code not in CONTINUE_EXIT_CODES:
        raise StageFailed(stage, code)


def run_loop(config: LoopConfig, say: Say, *, source: Path, only_plan: bool = False) -> list[Path]:
    """Run every stage not yet done, then write the report; returns the report's files (none for a plan).
    `source` is the config file, named in errors."""
    assert config.out is not None
    stages = plan(config)
    check_options(stages, source)
    if config.method == "rft":
        say(rft_budget(config.section("harvest")).line())
    for index, stage in enumerate(stages, 1):
        done = stage.done()
        if only_plan:
            say(f"{index}. {stage.name} ({'done, skipped' if done else 'to run'}): {stage.command()}")
            options = resolved_options(stage)
            if options:
                say("   " + ", ".join(f"{key}: {_shown(value)}" for key, value in options.items()))
            continue
        if done:
            say(f"{stage.name}: done, skipped ({stage.output})")
        else:
            started = time.monotonic()
            try:
                run_stage(stage, say)
            finally:  # an interrupted stage's time counts too: a resumed stage adds up in timings.json
                add_stage_time(config.out, stage_key(stage), time.monotonic() - started)
        if stage.kind == "export":
            check_export(stage, config.method)
    if only_plan:
        return []
    return report(config, stages, say)


def _shown(value: Any) -> str:
    """An option's value as a config file writes it (`true`, `5e-07`, `q_proj,v_proj`)."""
    if isinstance(value, list):
        return ",".join(map(str, value))
    return value if isinstance(value, str) else json.dumps(value)


def report(config: LoopConfig, stages: list[Stage], say: Say) -> list[Path]:
    """Write the report and a conversation viewer (`josh view`) for every round's evaluation."""
    from josh.view import write_report as write_viewer

    assert config.out is not None
    runs = []
    links = {}
    for stage in stages:
        if stage.kind != "eval":
            continue
        runs.append(
            RoundRun(stage.round, model_spec(config, stage.round), read_run(stage.output).records, str(stage.output))
        )
        viewer = stage.output.with_suffix(".html")
        write_viewer(stage.output, viewer)
        links[stage.round] = str(viewer.relative_to(config.out))
    details = [round_details(round_dir(config, r.round), r.round, adapter_of(config, r.round - 1)) for r in runs]
    data = build_report(config.model, config.method, runs, details, stage_times(config.out))
    files = write_report(config.out, data, links)
    say(f"report: {', '.join(str(f) for f in files)}")
    return files
