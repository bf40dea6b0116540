"""Which local model `--model hf:BASE[+ADAPTER]` names, and whether it can be loaded here.

`parse_hf_spec` splits a spec into its base model (a local folder, a GGUF file, or a Hub id `ORG/NAME`) and its
optional PEFT adapter folder; `pretrained_source` says what `from_pretrained` takes for the base. Loading needs
the `[train]` extra (`import_train_extra` names it when it is missing: `TRAIN_INSTALL`, the README's line);
4-bit loading (`four_bit_config`, the paper's) needs bitsandbytes on a CUDA GPU (`check_four_bit`). Nothing
here imports torch at import time.
"""

from __future__ import annotations

import contextlib
import importlib.util
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from josh.errors import JoshError

HF_PREFIX = "hf:"
ADAPTER_CONFIG = "adapter_config.json"
GGUF_SUFFIX = ".gguf"
TRAIN_INSTALL = "pip install torch==2.13.0 && pip install 'josh-toolkit[train]'"  # the README's line
TRAIN_EXTRA_HINT = f"install the training extra (torch first, its CPU wheel or your CUDA build): {TRAIN_INSTALL}"


def is_hf_spec(model: str | None) -> bool:
    """Whether a `--model` value names a local Hugging Face model (`hf:PATH[+ADAPTER]`)."""
    return model is not None and model.startswith(HF_PREFIX)


HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")  # ORG/NAME on the Hugging Face Hub


def _hub_id(text: str) -> bool:
    """`text` names a Hub model (ORG/NAME) and no local path."""
    return bool(HUB_ID.fullmatch(text)) and not Path(text).expanduser().exists()


def is_gguf(base: Path | str) -> bool:
    """Whether a parsed base model is a GGUF file (loaded with transformers' `gguf_file=`, dequantized)."""
    return isinstance(base, Path) and base.suffix.lower() == GGUF_SUFFIX and base.is_file()


@contextlib.contextmanager
def quiet_gguf_conversion() -> Iterator[None]:
    """Without transformers' own progress bar while it converts a GGUF file (drawn whatever its logging
    settings say): josh's screen says what is loading, and piped output stays whole lines."""
    try:
        import transformers.modeling_gguf_pytorch_utils as gguf_utils
    except ImportError:  # no GGUF support in this transformers: nothing to quieten
        yield
        return
    drawn = gguf_utils.tqdm
    gguf_utils.tqdm = lambda iterable, *args, **kwargs: iterable
    try:
        yield
    finally:
        gguf_utils.tqdm = drawn


def pretrained_source(base: Path | str) -> tuple[Path | str, dict[str, str]]:
    """What `from_pretrained` takes for a parsed base model: (folder or Hub id, extra keyword arguments). A
    GGUF file is its folder plus `gguf_file=NAME` (the model and its tokenizer both come from the file)."""
    if is_gguf(base):
        assert isinstance(base, Path)
        return base.parent, {"gguf_file": base.name}
    return base, {}


def parse_hf_spec(spec: str) -> tuple[Path | str, Path | None]:
    """`hf:BASE[+ADAPTER]` -> (base model, adapter folder or None).

    The base is a local model folder (a `Path`, checked to hold `config.json`), a local GGUF file (a `Path`
    ending in `.gguf`: llama.cpp's format, which transformers loads dequantized; needs the `gguf` package) or,
    when no such path exists, a Hugging Face Hub id `ORG/NAME` (a `str`, downloaded into the Hub cache on
    first use, as `from_pretrained` does). The adapter is a local folder holding `adapter_config.json`.
    A `+` may occur inside a path: when the whole of `BASE[+ADAPTER]` is an existing folder it is the base
    model alone; otherwise the spec is split on the last `+` whose right side is an existing folder
    (`hf:models/a+b+runs/lora`, with a folder `runs/lora`, is the base `models/a+b` and the adapter
    `runs/lora`). Raises `JoshError` naming the fix when there is no model, a folder is missing, the base
    holds no `config.json` or the adapter no `adapter_config.json`.
    """
    if not spec.startswith(HF_PREFIX):
        raise JoshError(f"{spec!r} is not an hf: model; write hf:PATH or hf:PATH+ADAPTER")
    body = spec[len(HF_PREFIX) :].strip()
    if not body or body.startswith("+"):
        raise JoshError(f"{spec!r} names no model folder; write hf:PATH or hf:PATH+ADAPTER")
    base_text, adapter = body, None
    if not Path(body).expanduser().is_dir() and not is_gguf(Path(body).expanduser()):
        cuts = [i for i, char in enumerate(body) if char == "+"]
        for cut in reversed(cuts):
            right = Path(body[cut + 1 :]).expanduser()
            if body[cut + 1 :] and right.is_dir():
                base_text, adapter = body[:cut], right
                break
        else:
            if cuts:
                left, right_text = body[: cuts[-1]], body[cuts[-1] + 1 :]
                left_exists = Path(left).expanduser().is_dir() or _hub_id(left)
                raise JoshError(
                    f"{spec}: no folder {right_text if left_exists else left!r} (the spec is split on its last "
                    "'+' whose right side is an existing folder: hf:BASE+ADAPTER); check the paths"
                )
            if not _hub_id(body):
                raise JoshError(
                    f"{spec}: no model folder or GGUF file {body!r}; hf: models are local folders, GGUF files "
                    "or Hub ids ORG/NAME (e.g. hf:meta-llama/Meta-Llama-3-8B-Instruct)"
                )
    base = Path(base_text).expanduser()
    if is_gguf(base):
        hub: Path | str = base
    elif not base.is_dir():
        if not _hub_id(base_text):
            raise JoshError(f"{spec}: no model folder {base_text!r} (nor a GGUF file, nor a Hub id ORG/NAME)")
        hub = base_text
    elif not (base / "config.json").is_file():
        hint = " (it is a PEFT adapter: write hf:BASE+ADAPTER)" if (base / ADAPTER_CONFIG).is_file() else ""
        raise JoshError(f"{spec}: {base} holds no config.json, so it is not a model folder{hint}")
    else:
        hub = base
    if adapter is not None and not (adapter / ADAPTER_CONFIG).is_file():
        raise JoshError(
            f"{spec}: the adapter folder {adapter} holds no {ADAPTER_CONFIG} (a PEFT adapter saved with "
            "save_pretrained has one)"
        )
    return hub, adapter


# ---------------------------------------------------------------------------------------------- loading


def import_train_extra(*, needs_peft: bool) -> tuple[Any, Any, Any]:
    """torch, transformers and (when asked) peft; a `JoshError` naming the extra when one is missing."""
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise JoshError(
            f"hf: models need torch and transformers ({exc.name} is missing): {TRAIN_EXTRA_HINT}"
        ) from None
    peft = None
    if needs_peft:
        try:
            import peft
        except ImportError:
            raise JoshError(f"an hf: model with an adapter needs peft: {TRAIN_EXTRA_HINT}") from None
    return torch, transformers, peft


def four_bit_config(compute_dtype: Any) -> Any:
    """The paper's 4-bit loading, for inference and for QLoRA training alike: NF4 with double quantisation,
    computing in `compute_dtype` (a torch dtype), as a transformers `BitsAndBytesConfig`."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype,
    )


def check_four_bit(device: str, what: str) -> None:
    """4-bit loading needs bitsandbytes on a CUDA GPU: a `JoshError` naming the fix where it cannot run."""
    if not device.startswith("cuda"):
        raise JoshError(f"{what}: 4-bit loading needs a CUDA GPU (bitsandbytes); this runs on {device}")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise JoshError(f"{what}: 4-bit loading needs bitsandbytes: pip install bitsandbytes")
