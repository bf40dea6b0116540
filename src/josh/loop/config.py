"""The self-training loop's configuration: one YAML file naming the model and each stage's options.

Each stage's options use the vocabulary of its own command (the flag names of `josh eval toolwoz`, `josh
harvest toolwoz`, `josh export` and `josh train`), so anything a stage can do by hand it can do in the loop:

```yaml
model: meta-llama/Meta-Llama-3-8B-Instruct   # the model to self-train (HF id or local folder)
method: kto                                  # sft | kto | dpo | rft
rounds: 1                                    # harvest -> train repeated with the newest model
common: {agent: react, user-model: gpt-4o}   # options of both eval and harvest
eval: {split: test}                          # josh eval toolwoz options
harvest: {split: train, beam: 8}             # josh harvest toolwoz options
export: {reference-selection: false}         # josh export options
train: {epochs: 1}                           # josh train options
```
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from josh.errors import JoshError, did_you_mean

Method = Literal["sft", "kto", "dpo", "rft"]

# Options the loop sets itself, per stage: a stage section naming one would be silently overridden.
LOOP_SETS = {
    "eval": {"base_url"},
    "harvest": set(),  # `model` may name another harvesting model (a teacher, or the scripted mock)
    "export": {"out", "trees", "reference_trees", "force"},
    "train": {"kind", "data", "model", "out", "init_adapter", "force"},
}
EXPORT_OPTIONS = {"reference_selection"}


def _keys(section: dict[str, Any]) -> dict[str, Any]:
    return {str(key).replace("-", "_"): value for key, value in section.items()}


class LoopConfig(BaseModel):
    """`josh loop CONFIG.yaml`: evaluate the model, harvest, export, train, evaluate the trained model."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(
        description="The model to self-train: a Hugging Face id or a local folder (evaluated and harvested "
        "in-process as hf:MODEL, then hf:MODEL+ADAPTER)."
    )
    method: Method = Field(
        "kto",
        description="Training method on the harvested trees (the paper: kto); rft: rejection-sampling "
        "fine-tuning, SFT on the successes of independent samples with JOSH's budget (no tree search).",
    )
    rounds: int = Field(1, ge=1, description="Harvest -> train rounds, each starting from the newest model.")
    out: Path | None = Field(None, description="The loop's folder (default: beside the config, named after it).")
    common: dict[str, Any] = Field(default_factory=dict, description="Options of both eval and harvest.")
    eval: dict[str, Any] = Field(default_factory=dict, description="`josh eval toolwoz` options.")
    harvest: dict[str, Any] = Field(default_factory=dict, description="`josh harvest toolwoz` options.")
    export: dict[str, Any] = Field(default_factory=dict, description="`josh export` options.")
    train: dict[str, Any] = Field(default_factory=dict, description="`josh train` options.")

    @field_validator("model")
    @classmethod
    def _plain_model(cls, value: str) -> str:
        value = value.removeprefix("hf:")
        if not value.strip():
            raise ValueError("name the model to train (a Hugging Face id or a local folder)")
        if "+" in value:
            raise ValueError("name the base model only: the loop adds the adapters it trains")
        return value

    @field_validator("common", "eval", "harvest", "export", "train", mode="before")
    @classmethod
    def _section(cls, value: Any) -> Any:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ValueError("must be a mapping of options (flag names as keys)")
        return _keys(value)

    def section(self, stage: str) -> dict[str, Any]:
        """A stage's options: `common` under the stage's own section for eval and harvest."""
        own = getattr(self, stage)
        return {**self.common, **own} if stage in ("eval", "harvest") else dict(own)

    @property
    def trained_kind(self) -> str:
        """The `josh export` and `josh train` kind of the method: RFT is SFT on its samples' successes."""
        return "sft" if self.method == "rft" else self.method


def load_loop_config(path: Path) -> LoopConfig:
    """Read and check a loop config file; every problem is one `JoshError` naming the key."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise JoshError(f"cannot read the loop config {path}: {exc}") from None
    if not isinstance(data, dict):
        raise JoshError(f"{path} must hold a mapping (model, method, rounds, eval, harvest, export, train)")
    data = _keys(data)
    try:
        config = LoopConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = ".".join(str(part).replace("_", "-") for part in error["loc"])
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = "not a key of the loop config" + did_you_mean(where, LoopConfig.model_fields)
            problems.append(f"'{where}': {message}")
        raise JoshError(f"{path}: " + "; ".join(problems)) from None
    for stage, owned in LOOP_SETS.items():
        clash = sorted(set(config.section(stage)) & owned)
        if clash:
            names = ", ".join(k.replace("_", "-") for k in clash)
            raise JoshError(f"{path}: '{stage}' sets {names}, which the loop sets itself: remove it")
    unknown = sorted(set(config.export) - EXPORT_OPTIONS)
    if unknown:
        hints = ", ".join(f"'{k.replace('_', '-')}'" + did_you_mean(k, EXPORT_OPTIONS) for k in unknown)
        raise JoshError(f"{path}: 'export' has unknown option {hints}; its one option is reference-selection")
    # Absolute, so that the model specs recorded in each stage's run file do not depend on where the loop
    # was started from (a resumed eval checks that its options are unchanged).
    out = path.with_suffix("") if config.out is None else path.parent / config.out
    return config.model_copy(update={"out": out.resolve()})
