"""Export harvested trees as TRL datasets: SFT `{"messages", "tools"}`, KTO `{"prompt", "completion", "label"}`,
DPO `{"prompt", "chosen", "rejected"}`, and GRPO groups (sibling turns with their rewards and advantages).
Reads trees and run files; knows nothing of how trees were searched."""

from __future__ import annotations

from collections.abc import Sequence

from josh.errors import JoshError
from josh.export.examples import (
    KINDS,
    ExportResult,
    Kind,
    dpo_examples,
    group_counts,
    kto_examples,
    sft_examples,
)
from josh.export.grpo import grpo_groups
from josh.export.messages import from_openai, protocol_error, to_openai
from josh.export.reference_selection import reference_dpo, reference_kto, reference_sft, training_paths
from josh.export.reference_trees import REFERENCE_TREES_MEMBER, read_reference_trees, tree_from_paths
from josh.export.trees import HarvestedTree, TrainingPath, TreesInput, read_trees
from josh.export.writer import SUMMARY_FILE, TRAIN_FILE, check_output, summary_of, write_export

_SELECTIONS = {
    ("sft", False): sft_examples,
    ("kto", False): kto_examples,
    ("dpo", False): dpo_examples,
    ("grpo", False): grpo_groups,
    ("sft", True): reference_sft,
    ("kto", True): reference_kto,
    ("dpo", True): reference_dpo,
}


def export_examples(
    kind: Kind, trees: Sequence[HarvestedTree], *, reference_selection: bool = False
) -> ExportResult:
    """The `kind` examples of `trees`, by josh's selection or (`reference_selection`) the paper's."""
    if kind not in KINDS:
        raise JoshError(f"unknown export kind {kind!r}; choose one of {', '.join(KINDS)}")
    if (kind, reference_selection) not in _SELECTIONS:
        raise JoshError(f"{kind} has no reference selection (the paper's scripts make no {kind} data)")
    return _SELECTIONS[kind, reference_selection](trees)


__all__ = [
    "KINDS",
    "REFERENCE_TREES_MEMBER",
    "SUMMARY_FILE",
    "TRAIN_FILE",
    "ExportResult",
    "HarvestedTree",
    "Kind",
    "TrainingPath",
    "TreesInput",
    "check_output",
    "dpo_examples",
    "export_examples",
    "from_openai",
    "group_counts",
    "grpo_groups",
    "kto_examples",
    "protocol_error",
    "read_reference_trees",
    "read_trees",
    "reference_dpo",
    "reference_kto",
    "reference_sft",
    "sft_examples",
    "summary_of",
    "to_openai",
    "training_paths",
    "tree_from_paths",
    "write_export",
]
