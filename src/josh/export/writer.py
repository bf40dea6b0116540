"""Writing an export: DIR/train.jsonl and DIR/summary.json, each written whole or not at all."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from josh import __version__
from josh.errors import JoshError
from josh.export.examples import ExportResult
from josh.export.trees import TreesInput
from josh.runner.runfile import now_iso
from josh.types import dumps_line

TRAIN_FILE = "train.jsonl"
SUMMARY_FILE = "summary.json"


def check_output(out_dir: Path, *, force: bool) -> Path:
    """The train file's path in `out_dir`; JoshError when it cannot be written there or exists (without
    `force`). Call it before any work, so that a bad -o costs nothing."""
    existing = next((p for p in (out_dir, *out_dir.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise JoshError(f"cannot write to {out_dir}: {existing} is a file, not a folder; choose another -o")
    train = out_dir / TRAIN_FILE
    if train.exists() and not force:
        raise JoshError(f"{train} already exists; pass --force to replace it, or choose another -o")
    return train


def summary_of(result: ExportResult, source: TreesInput) -> dict[str, Any]:
    """What an export holds and where it came from (the summary file)."""
    return {
        "kind": result.kind,
        "selection": result.selection,
        "source": source.source,
        "examples": len(result.examples),
        "counts": result.counts,
        "trees": {
            "read": len(source.trees),
            "used": result.trees_used,
            "skipped": dict(result.skipped_trees),
            "errored": source.errored,
            "invalid": len(source.invalid),
            "damaged_lines": source.damaged_lines,
        },
        "dropped": dict(result.dropped),
        "josh_version": __version__,
        "written_at": now_iso(),
    }


def write_export(out_dir: Path, result: ExportResult, summary: dict[str, Any], *, force: bool) -> Path:
    """Write the examples to DIR/train.jsonl and `summary` to DIR/summary.json; returns the train file.

    Each file goes to a temporary file in DIR first and is renamed into place, so a killed export leaves
    the previous file or none, never half of one. The summary goes first: a train file is always the one
    its summary describes."""
    train = check_output(out_dir, force=force)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        _write_atomic(out_dir / SUMMARY_FILE, [json.dumps(summary, indent=2, ensure_ascii=False)])
        _write_atomic(train, (dumps_line(example) for example in result.examples))
    except OSError as exc:
        raise JoshError(f"cannot write to {out_dir}: {exc.strerror or exc}; choose another -o") from None
    return train


def _write_atomic(path: Path, lines: Iterable[str]) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temporary, "x", encoding="utf-8") as handle:  # "x": never someone else's file
            for line in lines:
                handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
