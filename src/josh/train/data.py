"""The training data of `josh train`: the examples `josh export` wrote, checked for their kind (`read_examples`),
as a `datasets.Dataset` in TRL's conversational formats (`to_dataset`), and fitted to `max_length` with the
tokenizer (`fit_dataset`, see `josh.train.truncation`). Each error names what to do.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from josh.errors import JoshError
from josh.train.config import TrainConfig
from josh.train.truncation import FitReport, fit_examples

# The columns each kind needs (TRL's conversational formats); `tools` is optional everywhere.
COLUMNS: dict[str, tuple[str, ...]] = {
    "sft": ("messages",),
    "kto": ("prompt", "completion", "label"),
    "dpo": ("prompt", "chosen", "rejected"),
}


def read_examples(config: TrainConfig) -> list[dict[str, Any]]:
    """The examples of `config.data`, checked for the kind: the file exists, holds examples, has the kind's
    columns, and (KTO) both labels. Each error names what to do."""
    path = config.training_data()
    kind = config.kind
    if not path.exists():
        raise JoshError(
            f"no training data at {path}: write it with `josh export {kind} TREES -o DIR` and pass --data DIR"
        )
    rows = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise JoshError(f"cannot read {path}: {exc}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise JoshError(f"{path}, line {number}: not JSON ({exc.msg}); re-export it") from None
        if not isinstance(row, dict):
            raise JoshError(f"{path}, line {number}: not a JSON object; re-export it")
        if not rows and row.get("type") == "header":
            raise JoshError(_run_file_message(path, str(row.get("command") or ""), kind))
        rows.append(row)
    if not rows:
        raise JoshError(f"{path} holds no examples: export trees that have some ({kind} examples)")
    expected = COLUMNS[kind]
    found = sorted(set().union(*(row.keys() for row in rows)))
    if not set(expected) <= set(rows[0]) or any(not set(expected) <= set(row) for row in rows):
        other = next((k for k, cols in COLUMNS.items() if set(cols) <= set(rows[0])), None)
        hint = (
            f"it looks like {other} data: run `josh train {other}`, or export {kind} data with "
            f"`josh export {kind} TREES -o DIR`"
            if other
            else f"export {kind} data with `josh export {kind} TREES -o DIR`"
        )
        raise JoshError(
            f"{path} is not {kind} data: {kind} needs the columns {', '.join(expected)} (and optionally tools), "
            f"found {', '.join(found)}; {hint}"
        )
    if kind == "kto":
        labels = [row["label"] for row in rows]
        if any(not isinstance(label, bool) for label in labels):
            raise JoshError(f"{path}: every KTO label must be true or false; re-export it")
        if all(labels) or not any(labels):
            only = "desirable (true)" if all(labels) else "undesirable (false)"
            raise JoshError(
                f"{path} has only {only} examples ({len(labels):,}): KTO needs both desirable (label true) "
                "and undesirable (label false) examples; harvest more trees, or train sft on successful ones"
            )
    return rows


def _run_file_message(path: Path, command: str, kind: str) -> str:
    """What to say of a josh run file given as training data: which command wrote it, and what to run."""
    if command.startswith("harvest"):
        return (
            f"{path} is a trees file of `josh {command}`, not {kind} training data: export it first with "
            f"`josh export {kind} {path} -o DIR` and pass --data DIR"
        )
    return (
        f"{path} is a run file of `josh {command or '?'}`, not {kind} training data: export trees first "
        f"(`josh harvest ... --out TREES`, then `josh export {kind} TREES -o DIR`) and pass --data DIR"
    )


def to_dataset(rows: list[dict[str, Any]], config: TrainConfig) -> Any:
    """A `datasets.Dataset` of the rows. Tools go as JSON text (TRL's trainers parse it back): as Arrow
    structs, every tool would gain every other tool's parameters, as nulls, in the rendered prompt."""
    from datasets import Dataset

    keep = (*COLUMNS[config.kind], "tools")
    table = [{key: row.get(key) for key in keep} for row in rows]
    for row in table:
        row["tools"] = json.dumps(row["tools"]) if row["tools"] else None
    if all(row["tools"] is None for row in table):
        for row in table:
            del row["tools"]
    dataset = Dataset.from_list(table)
    # KTO reads its batches in order (its KL term pairs neighbours); the export is in tree order, so shuffle
    # once, as the paper's script did.
    return dataset.shuffle(seed=config.seed) if config.kind == "kto" else dataset


def fit_dataset(dataset: Any, config: TrainConfig, tokenizer: Any) -> tuple[Any, FitReport]:
    """The dataset with every example fitted to `config.max_length` as `config.truncation` says
    (`josh.train.truncation`), measured on the rows as TRL will read them; and what was done. Refuses a result
    TRL cannot train on: no example left, or (KTO) one label only."""
    from datasets import Dataset

    kept, report = fit_examples(dataset.to_list(), config.kind, tokenizer, config.max_length, config.truncation)
    path = config.training_data()
    other = "" if config.truncation == "keep-end" else ", or use --truncation keep-end"
    if not kept:
        raise JoshError(
            f"no example of {path} fits in --max-length {config.max_length} tokens ("
            + "; ".join(f"{n:,}: {why}" for why, n in report.dropped_why.items())
            + f"): raise --max-length{other}"
        )
    if config.kind == "kto" and len({row["label"] for row in kept}) < 2:
        only = "desirable (true)" if kept[0]["label"] else "undesirable (false)"
        raise JoshError(
            f"only {only} examples of {path} fit in --max-length {config.max_length} tokens "
            f"({report.dropped:,} dropped): KTO needs both labels; raise --max-length{other}"
        )
    # the same features: a message key that only dropped examples had is still there (as None), as TRL read it
    return Dataset.from_list(kept, features=dataset.features), report
