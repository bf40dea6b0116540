"""Train a LoRA adapter with TRL's SFT, KTO or DPO trainer on what `josh export` wrote.

Layout of the output folder OUT:

- `OUT/adapter/`: the final LoRA adapter (PEFT `save_pretrained`: adapter_config.json,
  adapter_model.safetensors), loadable with `PeftModel.from_pretrained(base, OUT/adapter)`;
- `OUT/train_config.json`: the resolved config (every default filled in, in the `--config` vocabulary) and,
  under `recorded`, what the run learnt: library versions, the optimiser and precision used, the data (how many
  examples were truncated to `max_length`, how many dropped and why), its status (`started`, `finished`, or
  `failed` with the error), the last step and the losses logged;
- `OUT/checkpoints/checkpoint-N/`: TRL checkpoints every `save_steps`; a rerun with the same OUT resumes from
  the last one;
- `OUT/train_config.json.lock`: the lock a run holds on OUT (`josh.runner.lock`, as run files have): a second
  run on the same OUT is refused, naming the holder.

Everything that can be checked without the model is checked before it loads: the options, the model folder,
the data (its kind, its columns, its labels) and, with the tokenizer, its length (`josh.train.truncation`).

Under `accelerate launch` every process trains and only the main one takes the lock, writes the config and the
adapter (TRL and accelerate do the rest): it takes the lock before the others go on, and if it cannot, every
process stops with the same error. The training stack (torch, transformers, trl, peft, datasets) is imported
when `train` runs, never when this module is imported.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import math
import os
import re
import shutil
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from josh.errors import JoshError
from josh.llm.hf_model import (
    TRAIN_INSTALL,
    four_bit_config,
    is_gguf,
    pretrained_source,
    quiet_gguf_conversion,
)
from josh.runner.lock import RunLock, RunLockedError
from josh.train.config import TrainConfig
from josh.train.truncation import FitReport, fit_examples

log = logging.getLogger(__name__)

ADAPTER_DIR = "adapter"
CHECKPOINTS_DIR = "checkpoints"
CONFIG_FILE = "train_config.json"
GENERATION_MARKER = re.compile(r"{%-?\s*generation\s*-?%}")  # what assistant_only_loss needs in a template
RECORDED_KEY = "recorded"  # the part of train_config.json that records facts, not options
STACK = ("torch", "transformers", "trl", "peft", "datasets", "accelerate")

# The columns each kind needs (TRL's conversational formats); `tools` is optional everywhere.
COLUMNS: dict[str, tuple[str, ...]] = {
    "sft": ("messages",),
    "kto": ("prompt", "completion", "label"),
    "dpo": ("prompt", "chosen", "rejected"),
}


@dataclass
class TrainResult:
    """What a training run left in OUT."""

    adapter_dir: Path  # OUT/adapter
    global_step: int  # optimiser steps done, in all (a resumed run counts the steps before it)
    losses: list[float]  # the training loss at each logging step
    config_path: Path  # OUT/train_config.json
    resumed_from: Path | None  # the checkpoint this run continued from, if any
    already_done: bool = False  # OUT held this very run, finished: nothing was trained
    data: FitReport | None = None  # what fitting the examples to max_length did (None if nothing was trained)


@dataclass
class TrainProgress:
    """One step of a run, as `train(on_progress=...)` reports it (on the main process only)."""

    step: int
    total_steps: int
    loss: float | None  # the last logged training loss
    epoch: float | None


OnProgress = Callable[[TrainProgress], None]
OnData = Callable[[FitReport], None]


def check_stack() -> None:
    """Fail with the install line if the `[train]` extra is missing."""
    missing = [name for name in STACK if importlib.util.find_spec(name) is None]
    if missing:
        raise JoshError(f"training needs {', '.join(missing)} (the [train] extra): {TRAIN_INSTALL}")


# -- data --------------------------------------------------------------------------------------------------


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


# -- what is already in OUT --------------------------------------------------------------------------------


def read_saved_config(out: Path) -> dict[str, Any] | None:
    """OUT/train_config.json, or None."""
    path = out / CONFIG_FILE
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise JoshError(f"cannot read {path}: {exc}; remove it or pass --force") from None
    return data if isinstance(data, dict) else None


def options_of(config: TrainConfig) -> dict[str, Any]:
    """The config in the `--config` file vocabulary (flag names with dashes)."""
    return {name.replace("_", "-"): value for name, value in config.model_dump(mode="json").items()}


def looks_like_a_path(model: str) -> bool:
    """Whether `--model` names a folder rather than a Hugging Face id (ORG/NAME or NAME): it starts with `/`,
    `./`, `../` or `~`, has more than one `/`, holds the OS's own separator, or names a GGUF file."""
    if model in (".", "..") or model.startswith(("/", "./", "../", "~", ".\\", "..\\")):
        return True
    if model.lower().endswith(".gguf"):
        return True
    return model.count("/") > 1 or any(sep in model for sep in (os.sep, os.altsep) if sep and sep != "/")


def check_inputs(config: TrainConfig) -> None:
    """The model and adapter folders exist (a path that does not is no Hugging Face id to download)."""
    if looks_like_a_path(config.model) and not Path(config.model).exists():
        what = "file" if config.model.lower().endswith(".gguf") else "folder"
        raise JoshError(
            f"no such {what}: {config.model} (--model: a local model folder, a GGUF file or a Hugging Face id)"
        )
    if config.init_adapter is not None and not (config.init_adapter / "adapter_config.json").exists():
        raise JoshError(
            f"--init-adapter {config.init_adapter} is not a LoRA adapter folder (no adapter_config.json); "
            "pass OUT/adapter of an earlier `josh train`"
        )


def last_checkpoint(out: Path) -> Path | None:
    """The newest OUT/checkpoints/checkpoint-N that holds a trainer state."""
    folder = out / CHECKPOINTS_DIR
    if not folder.is_dir():
        return None
    found = [
        (int(path.name.split("-")[-1]), path)
        for path in folder.glob("checkpoint-*")
        if path.name.split("-")[-1].isdigit() and (path / "trainer_state.json").exists()
    ]
    return max(found)[1] if found else None


def _plan(config: TrainConfig, force: bool) -> tuple[dict[str, Any] | None, Path | None]:
    """(the saved config if OUT holds this very run finished, the checkpoint to resume from). A folder with no
    checkpoint and no adapter (a run that failed, or was killed, before its first checkpoint) is free: it holds
    nothing a rerun with other options could mix with."""
    out = config.out
    saved = read_saved_config(out)
    if force or saved is None:
        return None, None
    if last_checkpoint(out) is None and not (out / ADAPTER_DIR).is_dir():
        return None, None
    options = {k: v for k, v in saved.items() if k != RECORDED_KEY}
    ours = options_of(config)
    changed = [k for k in config.identity() if options.get(k.replace("_", "-")) != ours[k.replace("_", "-")]]
    if changed:
        flags = ", ".join(f"--{name.replace('_', '-')}" for name in changed)
        raise JoshError(
            f"{out} holds a run with other {flags} ({out / CONFIG_FILE}): resuming it would mix two adapters; "
            "use another --out, or --force to start again there"
        )
    finished = saved.get(RECORDED_KEY, {}).get("status") == "finished" and (out / ADAPTER_DIR).is_dir()
    if finished and options == ours:
        return saved, None
    return None, last_checkpoint(out)


# -- training ----------------------------------------------------------------------------------------------


def process_state() -> Any:
    """accelerate's state of this process (one of many under `accelerate launch`). On a machine without CUDA
    it is a CPU state, so that `accelerate launch --multi_gpu --num_processes N` runs N CPU processes over gloo
    (accelerate's `--cpu` launcher starts one process only)."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def choose_optimiser(name: str) -> str:
    """`auto`: the paper's adamw_8bit where it can run (CUDA and bitsandbytes), else adamw_torch."""
    import torch

    has_8bit = torch.cuda.is_available() and importlib.util.find_spec("bitsandbytes") is not None
    if name == "auto":
        return "adamw_8bit" if has_8bit else "adamw_torch"
    if "8bit" in name and not has_8bit:
        raise JoshError(
            f"--optim {name} needs a CUDA GPU and bitsandbytes (pip install bitsandbytes); "
            "use --optim auto or adamw_torch"
        )
    return name


def choose_precision(name: str) -> str:
    """`auto`: bf16 on a GPU that has it, fp16 on another GPU (the paper's scripts' rule), fp32 on a CPU."""
    import torch

    if name != "auto":
        if name == "fp16" and not torch.cuda.is_available():
            raise JoshError("--precision fp16 needs a GPU; use auto, bf16 or fp32")
        return name
    if not torch.cuda.is_available():
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def check_qlora(config: TrainConfig) -> None:
    """--qlora needs a CUDA GPU and bitsandbytes: say so before anything is loaded or written."""
    import torch

    if not config.qlora:
        return
    if not torch.cuda.is_available():
        raise JoshError("--qlora loads the model in 4 bits with bitsandbytes, which needs a CUDA GPU; "
                        "this machine has none: drop --qlora")  # fmt: skip
    if importlib.util.find_spec("bitsandbytes") is None:
        raise JoshError("--qlora needs bitsandbytes: pip install bitsandbytes")


def _load_model(config: TrainConfig, precision: str) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {
        "dtype": {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    }
    if config.qlora:
        from accelerate import PartialState

        kwargs["quantization_config"] = four_bit_config(torch.bfloat16 if precision == "bf16" else torch.float16)
        kwargs["device_map"] = {"": PartialState().process_index}  # one whole copy per process
    source, gguf = model_source(config.model)
    try:
        with quiet_gguf_conversion():
            model = AutoModelForCausalLM.from_pretrained(source, **kwargs, **gguf)
    except (OSError, ValueError) as exc:
        raise JoshError(f"cannot load the model {config.model!r}: {exc}") from None
    if gguf and not config.qlora:
        # A GGUF file is dequantized as it loads: plain weights, which transformers still marks as quantized
        # with GGUF (a method it cannot train). The mark goes; a LoRA adapter trains on them as on any model.
        model.hf_quantizer, model.is_quantized = None, False
        model.config.__dict__.pop("quantization_config", None)
    return model


def model_source(model: str) -> tuple[Path | str, dict[str, str]]:
    """What `from_pretrained` takes for `--model`: a folder or a Hub id as it is; a GGUF file as its folder
    and `gguf_file=NAME` (loaded dequantized: model, tokenizer and chat template from the one file)."""
    path = Path(model)
    return pretrained_source(path) if is_gguf(path) else (model, {})


def _load_tokenizer(config: TrainConfig) -> Any:
    from transformers import AutoTokenizer

    source, gguf = model_source(config.model)
    try:
        with quiet_gguf_conversion():
            tokenizer = AutoTokenizer.from_pretrained(source, **gguf)
    except (OSError, ValueError) as exc:
        raise JoshError(f"cannot load the tokenizer of {config.model!r}: {exc}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not getattr(tokenizer, "chat_template", None):
        raise JoshError(
            f"{config.model} has no chat template: the exported data is conversational; use an instruct/chat "
            "model (or add a chat_template to its tokenizer_config.json)"
        )
    if config.kind == "sft" and config.assistant_only_loss and not GENERATION_MARKER.search(tokenizer.chat_template):
        raise JoshError(
            f"the chat template of {config.model} has no {{% generation %}} markers, which --assistant-only-loss "
            "needs to find the assistant's tokens: use a template that has them, or pass "
            "--no-assistant-only-loss to train on whole conversations (as sft_agent_successful.py did)"
        )
    return tokenizer


def _peft_model(config: TrainConfig, model: Any) -> tuple[Any, Any]:
    """(the model, the LoRA config to give TRL): a fresh LoRA from the options, or `init_adapter` loaded
    trainable (TRL then gets no LoRA config)."""
    from peft import LoraConfig, PeftModel

    if config.init_adapter is not None:
        return PeftModel.from_pretrained(model, str(config.init_adapter), is_trainable=True), None
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.target_modules,
        bias="none",
        task_type="CAUSAL_LM",
    )
    return model, lora


MIN_LOSS_POINTS = 10  # a loss curve has at least this many points where the run has the steps for them


def logging_steps(config: TrainConfig, examples: int, processes: int) -> int:
    """How often the loss is logged: `--logging-steps`, or more often where the run is short, so that its
    loss curve has about MIN_LOSS_POINTS points (every step when it has fewer): a run that trained always
    records losses."""
    if config.max_steps > 0:
        total = config.max_steps
    else:
        per_epoch = math.ceil(math.ceil(examples / (config.batch_size * processes)) / config.grad_accum)
        total = math.ceil(per_epoch * config.epochs)
    return max(1, min(config.logging_steps, total // MIN_LOSS_POINTS))


def _trl_args(
    config: TrainConfig, optim: str, precision: str, *, distributed: bool, quiet: bool, log_every: int
) -> Any:
    import torch
    import trl

    common: dict[str, Any] = {
        "output_dir": str(config.out / CHECKPOINTS_DIR),
        "num_train_epochs": config.epochs,
        "max_steps": config.max_steps,
        "per_device_train_batch_size": config.batch_size,
        "gradient_accumulation_steps": config.grad_accum,
        "learning_rate": config.learning_rate,
        "lr_scheduler_type": config.lr_scheduler,
        "warmup_steps": config.warmup_steps or config.warmup_ratio,  # transformers 5: below 1 is a ratio
        "weight_decay": config.weight_decay,
        "optim": optim,
        "gradient_checkpointing": config.gradient_checkpointing,
        "bf16": precision == "bf16",
        "fp16": precision == "fp16",
        "save_strategy": "steps",
        "save_steps": config.save_steps,
        "logging_steps": log_every,
        "seed": config.seed,
        "max_length": config.max_length,
        "report_to": "none",
        "disable_tqdm": quiet,
        "use_cpu": not torch.cuda.is_available(),
    }
    if distributed:
        common["ddp_find_unused_parameters"] = False  # LoRA: the frozen base has no gradients to wait for
    if config.kind == "sft":
        return trl.SFTConfig(**common, assistant_only_loss=bool(config.assistant_only_loss))
    if config.kind == "kto":
        return trl.KTOConfig(
            **common,
            beta=config.beta,
            desirable_weight=config.desirable_weight,
            undesirable_weight=config.undesirable_weight,
        )
    return trl.DPOConfig(**common, beta=config.beta)


def _progress_callback(on_progress: OnProgress) -> Any:
    from transformers import TrainerCallback

    class ProgressReporter(TrainerCallback):
        """Reports each step (and the last logged loss) to `on_progress`, on the main process."""

        def __init__(self) -> None:
            self.loss: float | None = None

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            if logs and "loss" in logs:
                self.loss = float(logs["loss"])
                self._report(state)

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self._report(state)

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self._report(state)

        def _report(self, state: Any) -> None:
            if state.is_world_process_zero:
                on_progress(TrainProgress(state.global_step, state.max_steps, self.loss, state.epoch))

    return ProgressReporter()


def _build_trainer(config: TrainConfig, args: Any, model: Any, lora: Any, tokenizer: Any, dataset: Any,
                   callbacks: list[Any]) -> Any:  # fmt: skip
    import trl

    common = {"model": model, "args": args, "train_dataset": dataset, "processing_class": tokenizer,
              "peft_config": lora, "callbacks": callbacks}  # fmt: skip
    try:
        if config.kind == "sft":
            return trl.SFTTrainer(**common)
        if config.kind == "kto":
            return trl.KTOTrainer(**common)
        return trl.DPOTrainer(**common)
    except ValueError as exc:
        if "assistant" in str(exc) and "generation" in str(exc):
            raise JoshError(f"{exc} (or pass --no-assistant-only-loss)") from None
        raise


def _record(config: TrainConfig, recorded: dict[str, Any]) -> None:
    path = config.out / CONFIG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({**options_of(config), RECORDED_KEY: recorded}, indent=2) + "\n")
    tmp.replace(path)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("josh-toolkit", *STACK):
        with contextlib.suppress(PackageNotFoundError):
            found[name] = version(name)
    return found


def _losses(log_history: list[dict[str, Any]]) -> list[float]:
    return [float(entry["loss"]) for entry in log_history if "loss" in entry]


@contextlib.contextmanager
def hold_out(config: TrainConfig, state: Any, command: str) -> Iterator[None]:
    """Hold the lock on OUT (`OUT/train_config.json.lock`, `josh.runner.lock`) for the block: the main process
    takes it and tells the others whether it could (under `accelerate launch` every process shares one OUT,
    so only one takes it). Raises JoshError naming the holder, on every process, if another run holds it."""
    lock: RunLock | None = None
    refused: str | None = None
    if state.is_main_process:
        try:
            config.out.mkdir(parents=True, exist_ok=True)
            lock = RunLock.acquire(config.out / CONFIG_FILE, command=command)
        except OSError as exc:
            refused = f"cannot create --out {config.out}: {exc.strerror or exc}"
        except JoshError as exc:
            refused = str(exc)
    if state.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        refused = broadcast_object_list([refused], from_process=0)[0]
    if refused is not None:
        raise RunLockedError(refused)
    try:
        yield
    finally:
        if lock is not None:
            lock.release()


def _failure(exc: BaseException) -> str:
    """What `recorded.error` says of the exception that ended a run."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    text = (str(exc).strip().splitlines() or [""])[0][:500]
    return text if isinstance(exc, JoshError) else f"{type(exc).__name__}: {text}"


def train(config: TrainConfig, *, on_progress: OnProgress | None = None, on_data: OnData | None = None,
          force: bool = False, command: str | None = None) -> TrainResult:  # fmt: skip
    """Train a LoRA adapter as `config` says and save it to OUT/adapter (see the module's docstring).

    Rerunning with the same OUT resumes from the last checkpoint; if OUT already holds this very run,
    finished, nothing is trained (`TrainResult.already_done`) unless `force`, which starts again from scratch.
    `on_progress` is called on the main process at each step, with the last logged loss; with it, TRL's own
    progress bar and printed log lines are off. `on_data` is called on the main process, before the model
    loads, with what fitting the examples to `max_length` did. `command` is how the lock on OUT names this
    run to another that finds it taken (default: `train KIND`)."""
    check_stack()
    state = process_state()
    # everything that needs no model, and touches nothing in OUT, first
    check_inputs(config)
    optim = choose_optimiser(config.optim)
    precision = choose_precision(config.precision)
    check_qlora(config)
    rows = read_examples(config)
    tokenizer = _load_tokenizer(config)
    with hold_out(config, state, command or f"train {config.kind}"):
        return _train_holding_out(config, state, rows, tokenizer, optim, precision, on_progress, on_data, force)


def _train_holding_out(config: TrainConfig, state: Any, rows: list[dict[str, Any]], tokenizer: Any, optim: str,
                       precision: str, on_progress: OnProgress | None, on_data: OnData | None,
                       force: bool) -> TrainResult:  # fmt: skip
    out = config.out
    adapter_dir, config_path = out / ADAPTER_DIR, out / CONFIG_FILE
    done, resume = _plan(config, force)
    if done is not None:
        recorded = done.get(RECORDED_KEY, {})
        return TrainResult(adapter_dir, int(recorded.get("global_step", 0)),
                           [float(x) for x in recorded.get("losses", [])], config_path, None,
                           already_done=True)  # fmt: skip
    dataset, report = fit_dataset(to_dataset(rows, config), config, tokenizer)
    if state.is_main_process and on_data is not None:
        on_data(report)
    log_every = logging_steps(config, len(dataset), state.num_processes)
    recorded: dict[str, Any] = {"status": "started", "optim": optim, "precision": precision,
                                "processes": state.num_processes, "logging_steps": log_every,
                                "versions": _versions(),
                                "resumed_from": str(resume) if resume else None,
                                "data": report.record()}  # fmt: skip
    if state.is_main_process:
        if force:
            for stale in (out / CHECKPOINTS_DIR, adapter_dir):
                shutil.rmtree(stale, ignore_errors=True)
        _record(config, recorded)
    state.wait_for_everyone()

    trainer = None
    # TRL 1.16 still uses transformers' old gradient-checkpointing names, each use a FutureWarning about v6
    # that a josh user can do nothing about.
    warnings.filterwarnings("ignore", message=r".*is deprecated and will be removed in v6", category=FutureWarning)
    if on_progress is not None:  # the caller shows progress: the libraries' own bars would interleave with it
        import datasets
        import transformers

        datasets.disable_progress_bars()
        transformers.utils.logging.disable_progress_bar()
    try:
        model, lora = _peft_model(config, _load_model(config, precision))
        args = _trl_args(config, optim, precision, distributed=state.num_processes > 1,
                         quiet=on_progress is not None, log_every=log_every)  # fmt: skip
        callbacks = [_progress_callback(on_progress)] if on_progress else []
        trainer = _build_trainer(config, args, model, lora, tokenizer, dataset, callbacks)
        if on_progress is not None:  # the caller shows progress: no tqdm bar, and no log dicts printed instead
            from transformers.trainer_callback import PrinterCallback

            trainer.remove_callback(PrinterCallback)
        _check_trl_kept(config, trainer, report, recorded)
        output = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        losses = _losses(trainer.state.log_history)
        if any(not math.isfinite(loss) for loss in losses):
            raise JoshError(f"the training loss is not finite ({losses}): lower --learning-rate")
    except BaseException as exc:
        if state.is_main_process:
            step = trainer.state.global_step if trainer is not None else 0
            recorded.update(status="failed", error=_failure(exc), global_step=step)
            with contextlib.suppress(OSError):
                _record(config, recorded)
        raise
    if trainer.is_world_process_zero():
        peft_model = trainer.accelerator.unwrap_model(trainer.model)
        # only the trained adapter: a KTO/DPO run from --init-adapter also holds TRL's frozen "ref" copy
        peft_model.save_pretrained(str(adapter_dir), selected_adapters=["default"])
        tokenizer.save_pretrained(str(adapter_dir))
        recorded.update(status="finished", global_step=output.global_step, losses=losses)
        _record(config, recorded)
    state.wait_for_everyone()
    return TrainResult(adapter_dir, output.global_step, losses, config_path, resume, data=report)


def _check_trl_kept(config: TrainConfig, trainer: Any, report: FitReport, recorded: dict[str, Any]) -> None:
    """TRL trains on every example josh fitted; should it drop some all the same (a template that renders a
    prompt differently alone), say so and record it rather than lose them silently."""
    count = len(trainer.train_dataset)
    if count == 0:
        raise JoshError(
            f"TRL dropped every example of {config.training_data()} (each one's completion would be cut off "
            f"entirely at --max-length {config.max_length}): raise --max-length"
        )
    if count < report.kept:
        recorded["data"]["dropped_by_trl"] = report.kept - count
        log.warning("TRL dropped %d of the %d examples fitted to --max-length %s", report.kept - count,
                    report.kept, config.max_length)  # fmt: skip
