"""Configuration of `josh train sft|kto|dpo`: one flat, documented config, its defaults per kind.

One vocabulary, as for every josh command: a field's name is its flag (`lora_r` is `--lora-r`) and its key in
a YAML file (`lora-r: 64`), and `OUT/train_config.json`, which a training run writes, can be fed back with
`--config`. The defaults are the paper's recipe as its code has it (the `josh-train` 0.1.4 scripts):

- KTO: `finetune/finetune_agent.py`, the script that reads the released trees. `finetune/kto_ft.py` disagrees
  (gradient accumulation 16, beta 0.1, desirable weight 1.0, undesirable weight 2.71, a separate reference
  model): pass those flags to follow it instead.
- SFT: `finetune/sft_agent_successful.py`.
- DPO: the paper has no DPO script; the KTO recipe's LoRA and optimiser settings, with TRL's default beta 0.1.

Fields that a kind does not use are None for it (setting one is an error, e.g. `--beta` for SFT).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator

from josh.train.truncation import Truncation

Kind = Literal["sft", "kto", "dpo"]
KINDS: tuple[Kind, ...] = ("sft", "kto", "dpo")
Scheduler = Literal[
    "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup", "inverse_sqrt"
]
Precision = Literal["auto", "bf16", "fp16", "fp32"]

# Help panels of `--help`, in order.
DATA, LORA, OPTIMISER, METHOD, RUN = "Data and model", "LoRA adapter", "Optimiser", "Method", "Run"

KTO_SCRIPT = "finetune_agent.py"
SFT_SCRIPT = "sft_agent_successful.py"
ALL_LORA_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

# The paper's recipe per kind (values its scripts pass to TRL), and where each value comes from.
_KTO = {
    "lora_r": 64,
    "lora_alpha": 64,
    "lora_dropout": 0.05,
    "target_modules": ALL_LORA_MODULES,
    "epochs": 1.0,
    # finetune_agent.py: 1 x 8. TRL 1.16's KTO estimates its KL term from the other examples of a batch and
    # refuses batches of 1, so josh uses 2 x 4: the same 8 examples per optimiser step.
    "batch_size": 2,
    "grad_accum": 4,
    "learning_rate": 5e-7,
    "lr_scheduler": "cosine",
    "warmup_ratio": 0.1,
    "warmup_steps": 0,
    "weight_decay": 0.0,
    "max_length": 5256,
    "beta": 0.03,
    "desirable_weight": 2.05,
    "undesirable_weight": 1.0,
    "save_steps": 100,
    "logging_steps": 10,
    "seed": 42,
    "assistant_only_loss": None,
}
RECIPES: dict[Kind, dict[str, Any]] = {
    "kto": _KTO,
    "dpo": {**_KTO, "batch_size": 1, "grad_accum": 8, "beta": 0.1, "desirable_weight": None,
            "undesirable_weight": None},  # fmt: skip
    "sft": {
        **_KTO,
        "batch_size": 1,
        "grad_accum": 8,
        "epochs": 3.0,
        "learning_rate": 2e-5,
        "lr_scheduler": "linear",
        "warmup_ratio": 0.0,
        "warmup_steps": 5,
        "weight_decay": 0.01,
        "beta": None,
        "desirable_weight": None,
        "undesirable_weight": None,
        "save_steps": 60,
        "assistant_only_loss": True,
    },
}
SOURCES: dict[Kind, str] = {
    "kto": KTO_SCRIPT,
    "sft": SFT_SCRIPT,
    "dpo": f"no paper script: {KTO_SCRIPT}'s settings",
}
# Values of a kind that are not its script's: shown in `--help` instead of the script's name.
SOURCE_EXCEPTIONS: dict[Kind, dict[str, str]] = {
    "dpo": {"beta": "TRL's default"},
    "kto": {
        "max_length": f"{KTO_SCRIPT}; its max_prompt_length 5000 has no TRL 1.16 counterpart: see --truncation",
        "batch_size": f"{KTO_SCRIPT} has 1 x 8; TRL 1.16's KTO needs 2 or more, so 2 x 4",
        "grad_accum": f"{KTO_SCRIPT} has 1 x 8; TRL 1.16's KTO needs 2 or more, so 2 x 4",
    },
    "sft": {"assistant_only_loss": f"josh; {SFT_SCRIPT} trained on whole conversations"},
}
# Options that only some kinds use.
ONLY_FOR: dict[str, tuple[Kind, ...]] = {
    "beta": ("kto", "dpo"),
    "desirable_weight": ("kto",),
    "undesirable_weight": ("kto",),
    "assistant_only_loss": ("sft",),
}
# Options that make a different adapter: changing one between a run and its resumption is refused.
IDENTITY = ("kind", "data", "model", "init_adapter", "lora_r", "lora_alpha", "lora_dropout", "target_modules",
            "qlora")  # fmt: skip


def _opt(default: Any, help: str, panel: str, **constraints: Any) -> Any:
    return Field(default, description=help, json_schema_extra={"panel": panel}, **constraints)


class TrainConfig(BaseModel):
    """One training run: a LoRA adapter trained with TRL's SFT, KTO or DPO trainer on `josh export` data.

    Fields left out take the kind's default (`RECIPES[kind]`), filled in when the config is built."""

    model_config = ConfigDict(extra="forbid")
    PANELS: ClassVar[tuple[str, ...]] = (DATA, LORA, OPTIMISER, METHOD, RUN)

    # -- data and model ------------------------------------------------------------------------------------
    kind: Kind = Field(description="Training method: sft, kto or dpo (the data must be of that kind).")
    data: Path = _opt(
        None, "Folder written by `josh export KIND` (its train.jsonl is read), or a JSONL file.", DATA
    )
    model: str = _opt(
        None, "Base model: a Hugging Face id, a local folder (`from_pretrained`) or a GGUF file (dequantized).", DATA
    )
    out: Path = _opt(
        None,
        "Output folder: OUT/adapter (the LoRA adapter), OUT/train_config.json, OUT/checkpoints (resume).",
        DATA,
    )
    init_adapter: Path | None = _opt(
        None,
        "A LoRA adapter folder to continue training (round 2+ of self-training); its own LoRA settings "
        "then apply and --lora-* are ignored. For KTO and DPO it is also the reference model.",
        DATA,
    )
    max_length: int | None = _opt(
        None,
        "Longest example in tokens (prompt and completion together, as the chat template renders them with "
        "the tools); longer ones are fitted as --truncation says.",
        DATA,
        ge=16,
    )
    truncation: Truncation = _opt(
        "keep-end",
        "An example longer than --max-length: keep-end cuts the start of its prompt and keeps the completion "
        "whole, as the paper's TRL did (SFT: cuts the conversation's start, keeps its last replies whole); "
        "keep-start leaves it to TRL 1.16, which cuts its end and drops a KTO/DPO example whose prompt alone "
        "fills --max-length; drop leaves it out. Counted, printed and recorded either way.",
        DATA,
    )

    # -- LoRA ----------------------------------------------------------------------------------------------
    lora_r: int | None = _opt(None, "LoRA rank.", LORA, ge=1)
    lora_alpha: int | None = _opt(None, "LoRA scaling alpha.", LORA, ge=1)
    lora_dropout: float | None = _opt(None, "Dropout on the LoRA layers.", LORA, ge=0.0, lt=1.0)
    target_modules: list[str] | None = _opt(
        None, "Modules that get LoRA layers (repeat the flag, or comma-separated).", LORA
    )
    qlora: bool = _opt(
        False,
        "Load the base model in 4 bits (NF4, double quantisation, bf16 compute, as every paper script "
        "does). Needs a CUDA GPU and bitsandbytes.",
        LORA,
    )

    # -- optimiser -----------------------------------------------------------------------------------------
    epochs: float | None = _opt(None, "Passes over the data (ignored when --max-steps is set).", OPTIMISER, gt=0)
    max_steps: int = _opt(-1, "Stop after this many optimiser steps; -1: run --epochs.", OPTIMISER, ge=-1)
    batch_size: int | None = _opt(None, "Examples per device per forward pass.", OPTIMISER, ge=1)
    grad_accum: int | None = _opt(
        None, "Gradient accumulation: forward passes per optimiser step.", OPTIMISER, ge=1
    )
    learning_rate: float | None = _opt(None, "Peak learning rate.", OPTIMISER, gt=0)
    lr_scheduler: Scheduler | None = _opt(None, "Learning-rate schedule.", OPTIMISER)
    warmup_ratio: float | None = _opt(
        None, "Share of the steps spent warming the learning rate up.", OPTIMISER, ge=0.0, lt=1.0
    )
    warmup_steps: int | None = _opt(
        None, "Warm-up steps; above 0 it replaces --warmup-ratio.", OPTIMISER, ge=0
    )
    weight_decay: float | None = _opt(None, "AdamW weight decay.", OPTIMISER, ge=0.0)
    optim: str = _opt(
        "auto",
        "Optimiser (a transformers `optim` name). auto: adamw_8bit (the paper's) where CUDA and bitsandbytes "
        "are present, else adamw_torch; the one used is recorded in OUT/train_config.json.",
        OPTIMISER,
    )
    gradient_checkpointing: bool = _opt(
        True, "Recompute activations in the backward pass: less memory, about 20% slower.", OPTIMISER
    )
    precision: Precision = _opt(
        "auto",
        "auto: bf16 on a GPU that has it, else fp16 on a GPU (as the paper's scripts choose), fp32 on a CPU.",
        OPTIMISER,
    )

    # -- method --------------------------------------------------------------------------------------------
    beta: float | None = _opt(
        None, "KTO/DPO: how far the policy may move from the reference model (higher: less).", METHOD, gt=0
    )
    desirable_weight: float | None = _opt(
        None, "KTO: weight of the desirable (label true) examples' loss.", METHOD, gt=0
    )
    undesirable_weight: float | None = _opt(
        None, "KTO: weight of the undesirable (label false) examples' loss.", METHOD, gt=0
    )
    assistant_only_loss: bool | None = _opt(
        None,
        "SFT: loss on the assistant's tokens only (needs {% generation %} markers in the model's chat "
        "template); --no-assistant-only-loss trains on whole conversations.",
        METHOD,
    )

    # -- run -----------------------------------------------------------------------------------------------
    save_steps: int | None = _opt(
        None, "Save a checkpoint every this many steps (to resume from).", RUN, ge=1
    )
    logging_steps: int | None = _opt(None, "Log the loss every this many steps.", RUN, ge=1)
    seed: int | None = _opt(None, "Random seed.", RUN)

    @field_validator("model")
    @classmethod
    def _expand_home(cls, value: str | None) -> str | None:
        """`~/models/x` (quoted, so that no shell expanded it) is the folder; from_pretrained would not know."""
        return os.path.expanduser(value) if value and value.startswith("~") else value

    @field_validator("target_modules", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list):
            value = [part.strip() for item in value for part in str(item).split(",") if part.strip()]
        return value

    @model_validator(mode="before")
    @classmethod
    def _kind_defaults(cls, data: Any) -> Any:
        """Fill in the kind's recipe for the options not given; refuse options the kind does not use."""
        if not isinstance(data, dict):
            return data
        kind = data.get("kind")
        if kind not in RECIPES:
            return data  # the Literal reports it
        for name, kinds in ONLY_FOR.items():
            if data.get(name) is not None and kind not in kinds:
                raise ValueError(f"{name.replace('_', '-')} applies to {' and '.join(kinds)} only, not {kind}")
        return {**{k: v for k, v in RECIPES[kind].items()}, **{k: v for k, v in data.items() if v is not None}}

    @model_validator(mode="after")
    def _required(self) -> TrainConfig:
        missing = [name for name in ("data", "model", "out") if getattr(self, name) is None]
        if missing:
            raise ValueError(
                "missing " + ", ".join(f"--{name}" for name in missing) + " (see `josh train KIND --help`)"
            )
        if self.kind == "kto" and self.batch_size == 1:
            raise ValueError(
                "--batch-size must be 2 or more for KTO: TRL estimates its KL term from the other examples of a "
                "batch (the paper's 1 x 8 is --batch-size 2 --grad-accum 4 here)"
            )
        if self.warmup_steps and self.warmup_ratio:
            raise ValueError("give --warmup-steps or --warmup-ratio, not both")
        return self

    def training_data(self) -> Path:
        """The JSONL file to read: DATA/train.jsonl for a folder, DATA itself for a file."""
        return self.data / "train.jsonl" if self.data.is_dir() else self.data

    def identity(self) -> dict[str, Any]:
        """The options that decide what adapter is trained (a resumed run must keep them)."""
        dumped = self.model_dump(mode="json")
        return {name: dumped[name] for name in IDENTITY}


def source_of(kind: Kind, field: str) -> str | None:
    """Where the kind's default for `field` comes from (for `--help`), or None if it is josh's own."""
    if field not in RECIPES[kind]:
        return None
    return SOURCE_EXCEPTIONS.get(kind, {}).get(field, SOURCES[kind])


def options_for(kind: Kind) -> type[BaseModel]:
    """The options of `josh train KIND`: `TrainConfig`'s fields less `kind` and those the kind does not use,
    with the kind's defaults and where each comes from, so that `--help` shows what applies. Only for the
    command line's help and flags: the options it gives are validated by `TrainConfig`."""
    fields: dict[str, Any] = {}
    for name, info in TrainConfig.model_fields.items():
        if name == "kind" or (name in ONLY_FOR and kind not in ONLY_FOR[name]):
            continue
        default = RECIPES[kind].get(name, info.default)
        description = info.description or ""
        source = source_of(kind, name)
        if source:
            description = f"{description} ({source})"
        if name in ("data", "model", "out"):
            description = f"{description} Required."
        fields[name] = (info.annotation, Field(default, description=description,
                                               json_schema_extra=info.json_schema_extra))  # fmt: skip
    model = create_model(f"{kind.upper()}TrainOptions", **fields)
    model.PANELS = TrainConfig.PANELS  # type: ignore[attr-defined]
    return model
