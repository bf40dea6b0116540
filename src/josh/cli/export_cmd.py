"""`josh export sft|kto|dpo|grpo TREES -o DIR`: harvested trees as TRL datasets (one file, plus its summary)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, cast

import typer
from rich.table import Table

from josh.agents.react import ReactAgent
from josh.cli.console import counted, err, report, user_errors
from josh.envs.toolwoz import ToolWOZEnvironment
from josh.envs.toolwoz.cache_lock import exclusive
from josh.envs.toolwoz.fetch import download_wheel
from josh.envs.toolwoz.reference_text import reference_prompts
from josh.errors import JoshError
from josh.export import (
    SUMMARY_FILE,
    ExportResult,
    Kind,
    TreesInput,
    check_output,
    export_examples,
    read_reference_trees,
    read_trees,
    summary_of,
    write_export,
)
from josh.llm.base import ChatModel

export_app = typer.Typer(
    help="Export harvested trees as training data for TRL (SFT, KTO, DPO) and policy-gradient trainers (GRPO "
    "groups).",
    no_args_is_help=True,
)

# The options every kind shares, declared once.
Trees = Annotated[
    list[Path] | None,
    typer.Argument(
        metavar="TREES...", help="Trees files written by `josh harvest` (one or more).", show_default=False
    ),
]
Out = Annotated[Path, typer.Option("--out", "-o", help="Folder to write train.jsonl and summary.json into.")]
ReferenceSelection = Annotated[
    bool,
    typer.Option(
        "--reference-selection",
        help="Select examples by the paper's own scripts' rules (finetune_agent.py for KTO, "
        "sft_agent_successful.py for SFT), to compare with the paper's data.",
    ),
]
ReferenceTrees = Annotated[
    bool,
    typer.Option(
        "--reference-trees",
        help="Read the paper's released trees (data/llama3-josh-toolwoz-for-KTO.zip in the josh-train "
        "0.1.4 wheel) instead of TREES.",
    ),
]
Force = Annotated[bool, typer.Option("--force", help="Replace an existing DIR/train.jsonl.")]


@export_app.command("sft")
@user_errors
def export_sft(
    out: Out,
    trees: Trees = None,
    reference_selection: ReferenceSelection = False,
    reference_trees: ReferenceTrees = False,
    force: Force = False,
) -> None:
    """SFT conversations {"messages", "tools"}: golden paths of the trees at reward 1.0.

    The golden path of every tree that reached reward 1.0, after the agent's system prompt, with protocol
    errors dropped (see the README). Writes DIR/train.jsonl and DIR/summary.json."""
    run_export("sft", trees, out, reference_selection, reference_trees, force)


@export_app.command("kto")
@user_errors
def export_kto(
    out: Out,
    trees: Trees = None,
    reference_selection: ReferenceSelection = False,
    reference_trees: ReferenceTrees = False,
    force: Force = False,
) -> None:
    """KTO examples {"prompt", "completion", "label", "tools"}: every model reply, labelled.

    One example per model reply in every tree, labelled true when its node is on a successful path and the
    reply is not a protocol error. Writes DIR/train.jsonl and DIR/summary.json."""
    run_export("kto", trees, out, reference_selection, reference_trees, force)


@export_app.command("dpo")
@user_errors
def export_dpo(
    out: Out,
    trees: Trees = None,
    reference_selection: ReferenceSelection = False,
    reference_trees: ReferenceTrees = False,
    force: Force = False,
) -> None:
    """DPO pairs {"prompt", "chosen", "rejected", "tools"}: sibling replies, chosen and rejected.

    Replies to the exact same prompt, one on a successful path (and no protocol error) and one not.
    Writes DIR/train.jsonl and DIR/summary.json."""
    run_export("dpo", trees, out, reference_selection, reference_trees, force)


@export_app.command("grpo")
@user_errors
def export_grpo(out: Out, trees: Trees = None, force: Force = False) -> None:
    """GRPO groups {"group_id", "task_id", "trial", "node", "prompt", "completion", "tools", "reward",
    "advantage"}: sibling turns from one shared prefix.

    One group per branching point of every tree (a node with two or more children), one row per sibling:
    the prompt is the system prompt and the conversation up to the branching point, the completion the
    sibling's agent turn, the reward the most goals met on a path from the sibling down to a leaf over the
    task's goal calls, and the advantage that reward minus the group's mean. Writes DIR/train.jsonl and
    DIR/summary.json; the counts include the groups whose rewards differ (the ones a policy gradient learns
    from)."""
    run_export("grpo", trees, out, False, False, force)


def run_export(
    kind: Kind,
    trees: list[Path] | None,
    out: Path,
    reference_selection: bool,
    reference_trees: bool,
    force: bool,
) -> None:
    """Read the trees, select the examples, write them and show the counts on stderr."""
    if reference_trees and trees:
        raise JoshError("give trees files or --reference-trees, not both")
    if not reference_trees and not trees:
        paper = "" if kind == "grpo" else ", or pass --reference-trees for the paper's released trees"
        raise JoshError(f"name the trees file(s) to export (written by `josh harvest ... --out FILE`){paper}")
    check_output(out, force=force)
    source = load_reference_trees() if reference_trees else read_trees(trees or [])
    if not source.trees:
        raise JoshError(f"no trees to export: {_skipped(source) or 'the file holds no tree yet'}")
    result = export_examples(kind, source.trees, reference_selection=reference_selection)
    if not result.examples:
        why = "; ".join(f"{n} {reason}" for reason, n in result.skipped_trees.items())
        raise JoshError(
            f"no {kind} examples in {counted(len(source.trees), 'tree')}{f' ({why})' if why else ''}"
        )
    summary = summary_of(result, source)
    train = write_export(out, result, summary, force=force)
    err.print(counts_table(result, source))
    err.print(
        f"wrote {counted(len(result.examples), f'{kind} example')} to {train}; summary {out / SUMMARY_FILE}",
        soft_wrap=True,
    )


def load_reference_trees() -> TreesInput:
    """The paper's released trees, with the system prompt the paper's ReAct agent sends (they hold none)."""
    env = ToolWOZEnvironment.load(report)
    with exclusive(report):
        wheel = download_wheel(report)
    paper = reference_prompts()  # the paper's text, as `josh eval toolwoz --prompts paper` gives its agent
    agent = ReactAgent(
        model=cast(ChatModel, None), tools=env.tool_schemas, prompt=paper.react,
        tools_placeholder=paper.react_tools_placeholder,
    )  # fmt: skip
    return read_reference_trees(wheel, system_prompt=agent.system_prompt)


def _skipped(source: TreesInput) -> str:
    parts = []
    if source.errored:
        parts.append(f"{counted(source.errored, 'tree')} ended in an error")
    if source.invalid:
        parts.append(
            f"{counted(len(source.invalid), 'record')} "
            + ("is not a valid tree" if len(source.invalid) == 1 else "are not valid trees")
        )
    if source.damaged_lines:
        parts.append(
            f"{counted(source.damaged_lines, 'line')} {'is' if source.damaged_lines == 1 else 'are'} damaged"
        )
    return "; ".join(parts)


def counts_table(result: ExportResult, source: TreesInput) -> Table:
    """The counts of an export: examples per kind and label, the trees used, what was left out."""
    selection = "the paper's selection" if result.selection == "reference" else "josh's selection"
    table = Table(title=f"josh export {result.kind} ({selection})", title_justify="left")
    table.add_column("what")
    table.add_column("count", justify="right")
    for name, count in result.counts.items():
        table.add_row(f"{result.kind}: {name}", f"{count:,}")
    table.add_row("trees read / used", f"{len(source.trees):,} / {result.trees_used:,}")
    for reason, count in result.skipped_trees.items():
        table.add_row(f"trees left out: {reason}", f"{count:,}")
    for reason, count in (("ended in an error", source.errored), ("not valid trees", len(source.invalid)),
                          ("damaged lines", source.damaged_lines)):  # fmt: skip
        if count:
            table.add_row(f"records left out: {reason}", f"{count:,}")
    for reason, count in result.dropped.items():
        table.add_row(reason, f"{count:,}")
    return table
