"""What this machine can train with: accelerate's process (`process_state`), the optimiser (`choose_optimiser`:
the paper's adamw_8bit where CUDA and bitsandbytes allow), the precision (`choose_precision`) and whether
`--qlora` can run (`check_qlora`). torch is imported when one is called, never when this module is imported.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from josh.errors import JoshError
from josh.train.config import TrainConfig


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
