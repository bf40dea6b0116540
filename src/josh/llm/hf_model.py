"""A local Hugging Face model (plus an optional PEFT adapter) as a chat model, in-process: `--model hf:PATH[+ADAPTER]`.

A trained model is just another endpoint: `HFChatModel` implements `ChatModel` with transformers and peft, which
are imported only when a model is loaded (importing `josh.llm` never imports torch; without the `[train]`
extra, loading fails with one message naming it).

Batching: concurrent `chat()` calls (many conversations at once, the `n` choices of sibling leaves) are served by
one worker thread that, each time it is free, takes everything queued (up to `max_batch_size` rows) with the
same temperature and runs it as one left-padded `generate`. Batches form by themselves, without a fixed wait: the
first call runs alone, and the calls that arrive while it runs go together next. Each caller gets its own rows;
an error in a batch goes to every caller in it. A greedy call with `n` choices costs one row (its choices are
identical); a sampled one costs `n`. On a GPU a batch is one `generate`. On a CPU it runs josh's own decode loop
(`HFChatModel._decode`): the batch's common prompt prefix (system prompt and tool schemas) is read and kept once
for all rows, each row's rest of the prompt is read alone into a preallocated cache, and a row leaves the batch
at its stop token or its `max_tokens`; a model whose attention that loop cannot take gets `generate` after its
prompts were read one by one (`HFChatModel._prefill`).

Sampling is the paper's: temperature > 0 samples with top_k 50 and top_p 0.95; temperature 0 is greedy. The model's
own `generation_config` sampling defaults are not used. `max_tokens` (default `DEFAULT_MAX_TOKENS`) is capped by
the context: a prompt that fills the context is a `FatalLLMError` ("context too long"), like a server's 400.

Seeds: a sampled batch seeds its own random generator from the seeds of its requests, so the same requests in the
same batch sample the same text. Which requests share a batch depends on timing, so a sampled run is repeatable
only when run one conversation at a time (`--concurrency 1`); greedy decoding does not depend on seeds (though a
row's padding in a batch can change the last bits of its logits, and so, rarely, a near tie).

Tool calls (when `tools` are given) are read back from the Hermes convention the chat templates of Qwen, Hermes
and josh's tiny test model use: each `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` block that
parses becomes a `ToolCall` (with a fresh id) and leaves the text; a malformed block stays in the text, where
the agent's protocol-error handling sees it. Generation stops at the end-of-sequence token and `<|im_end|>`;
other special tokens are dropped from the text.

Usage: each call's prompt tokens (counted once, like a server's `n`) and completion tokens (all choices, each up
to and including its stop token) are on its first reply; cost is 0 (local); latency is the call's wall time,
queueing included.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from josh.errors import JoshError
from josh.llm.base import ContextLengthError, EndpointError, FatalLLMError, LLMError
from josh.llm.context import ContextWindow, PromptSize
from josh.types import (
    AssistantMessage,
    Message,
    SystemMessage,
    ToolCall,
    ToolMessage,
    Usage,
    UserMessage,
)

HF_PREFIX = "hf:"
DEFAULT_MAX_TOKENS = 512
DEFAULT_MAX_BATCH_SIZE = 32
TOP_K, TOP_P = 50, 0.95  # the paper's sampling
ADAPTER_CONFIG = "adapter_config.json"
GGUF_SUFFIX = ".gguf"
TRAIN_INSTALL = "pip install torch==2.13.0 && pip install 'josh-toolkit[train]'"  # the README's line
TRAIN_EXTRA_HINT = f"install the training extra (torch first, its CPU wheel or your CUDA build): {TRAIN_INSTALL}"
_TOOL_CALL_BLOCK = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)
_TOOL_CALL_TAGS = ("<tool_call>", "</tool_call>")
_STOP_TOKENS = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>")


# ---------------------------------------------------------------------------------------------- the spec


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


# ---------------------------------------------------------------------------------------------- tool calls


def parse_hermes_tool_calls(text: str) -> tuple[str, list[ToolCall]]:
    """The text without its well-formed `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` blocks, and
    those blocks as `ToolCall`s in order. A block is well-formed when it is a JSON object with a non-empty
    string `name` and `arguments` (or `parameters`) that are an object, a JSON string of one, or absent (`{}`).
    Malformed blocks (and an unclosed `<tool_call>`) stay in the text as written."""
    calls: list[ToolCall] = []

    def take(match: re.Match[str]) -> str:
        call = _hermes_call(match.group(1))
        if call is None:
            return match.group(0)
        calls.append(call)
        return ""

    rest = _TOOL_CALL_BLOCK.sub(take, text)
    return (rest.strip() if calls else text), calls


def _hermes_call(body: str) -> ToolCall | None:
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, dict):
        return None
    name = value.get("name")
    argument_keys = set(value) & {"arguments", "parameters"}
    if not isinstance(name, str) or not name.strip() or len(argument_keys) > 1:
        return None
    arguments = value[argument_keys.pop()] if argument_keys else {}
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except (ValueError, RecursionError):
            return None
    if not isinstance(arguments, dict):
        return None
    return ToolCall(
        id=f"call_{uuid.uuid4().hex[:24]}",
        name=name,
        arguments=arguments,
        raw_arguments=json.dumps(arguments, ensure_ascii=False),
    )


def to_template(message: Message) -> dict[str, Any]:
    """One `josh.types` message as the plain dict chat templates take. Tool-call arguments are the parsed object
    (what HF templates expect), or the model's raw text when it did not parse."""
    if isinstance(message, SystemMessage | UserMessage):
        return {"role": message.role, "content": message.content}
    if isinstance(message, ToolMessage):
        return {
            "role": "tool",
            "tool_call_id": message.tool_call_id,
            "name": message.name,
            "content": message.content,
        }
    if isinstance(message, AssistantMessage):
        plain: dict[str, Any] = {"role": "assistant", "content": message.content}
        if message.tool_calls:
            plain["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {
                        "name": call.name,
                        "arguments": call.arguments
                        if call.parse_error is None or call.raw_arguments is None
                        else call.raw_arguments,
                    },
                }
                for call in message.tool_calls
            ]
        return plain
    raise TypeError(f"not a chat message: {type(message).__name__}")


# ---------------------------------------------------------------------------------------------- the model


@dataclass(eq=False)
class _Job:
    """One `chat()` call waiting for (or in) a batch."""

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None
    n: int
    temperature: float
    max_tokens: int
    seed: int | None
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[list[AssistantMessage]]
    started: float = field(default_factory=time.perf_counter)
    prompt: list[int] = field(default_factory=list)
    limit: int = 0  # new tokens this job may have, after the context cap

    @property
    def rows(self) -> int:
        return self.n if self.temperature > 0 else 1  # greedy choices are identical: one row serves them all

    @property
    def key(self) -> float:
        return self.temperature


@dataclass
class BatchStats:
    """What the worker did: batches generated (`generate` calls, or runs of the CPU loop), rows and requests
    served, and the prompt tokens the CPU loop did not read again because a batch's rows shared them."""

    generate_calls: int = 0
    rows: int = 0
    requests: int = 0
    shared_tokens: int = 0

    @property
    def mean_rows(self) -> float:
        return self.rows / self.generate_calls if self.generate_calls else 0.0


class HFChatModel:
    """A local transformers model (and PEFT adapter), batched across concurrent calls; see the module docstring.

    `spec` is `hf:PATH[+ADAPTER]` (see `parse_hf_spec`) and is the model's name in records. Loads model and
    tokenizer at once (on `device`, default cuda when available else cpu; `dtype` default bfloat16 on a GPU,
    float32 on a CPU); an adapter is merged into the weights for speed. `context_length` overrides the
    model's own (its `max_position_embeddings`, or the tokenizer's `model_max_length`). `prefill_alone` (default:
    on a CPU) reads each prompt of a batch alone and generates the batch together with josh's own loop (see
    `_decode`; `generate` after `_prefill` where the loop cannot take the model); off, a batch is one padded
    `generate` (the GPU's way).

    The paper's own inference differs in three ways, each one switch away: `load_in_4bit` loads the base model
    in 4 bits (NF4, double quantisation, bfloat16 compute; bitsandbytes on a CUDA GPU), `merge_adapter=False`
    keeps the adapter apart instead of merging it into the weights, and `generation_prompt=False` renders
    the chat template without the assistant header (the model then writes it itself).
    """

    def __init__(
        self,
        spec: str,
        *,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        device: str | None = None,
        dtype: str | None = None,
        context_length: int | None = None,
        prefill_alone: bool | None = None,
        load_in_4bit: bool = False,
        merge_adapter: bool = True,
        generation_prompt: bool = True,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
        self.name = spec
        self.base_path, self.adapter_path = parse_hf_spec(spec)
        self.max_batch_size = max_batch_size
        self.stats = BatchStats()
        self.adaptations: list[str] = []
        self._torch, transformers, _ = _import_train_extra(needs_peft=False)
        torch = self._torch
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.dtype = dtype or ("bfloat16" if self.device.startswith("cuda") else "float32")
        self.load_in_4bit, self.merge_adapter = load_in_4bit, merge_adapter
        self.generation_prompt = generation_prompt
        source, gguf = pretrained_source(self.base_path)
        if gguf and importlib.util.find_spec("gguf") is None:
            raise JoshError(f"{spec}: loading a GGUF file needs the gguf package: {TRAIN_EXTRA_HINT}")
        options: dict[str, Any] = {"dtype": getattr(torch, self.dtype), **gguf}
        if load_in_4bit:
            _check_four_bit(self.device, spec)
            options["quantization_config"] = four_bit_config(torch.bfloat16)  # the paper's inference
        bars = transformers.utils.logging.is_progress_bar_enabled()
        transformers.utils.logging.disable_progress_bar()  # josh's own screen says what is loading
        try:
            with quiet_gguf_conversion():
                self.tokenizer = transformers.AutoTokenizer.from_pretrained(source, **gguf)
                model = transformers.AutoModelForCausalLM.from_pretrained(source, **options)
        except (OSError, ValueError, KeyError) as exc:
            raise JoshError(f"{spec}: cannot load the model in {self.base_path}: {exc}") from None
        finally:
            if bars:
                transformers.utils.logging.enable_progress_bar()
        if not getattr(self.tokenizer, "chat_template", None):
            raise JoshError(f"{spec}: the tokenizer in {self.base_path} has no chat template (a base model?)")
        if self.adapter_path is not None:
            peft = _import_train_extra(needs_peft=True)[2]
            try:
                model = peft.PeftModel.from_pretrained(model, self.adapter_path)
                if merge_adapter:
                    model = model.merge_and_unload()
            except (OSError, ValueError, KeyError, RuntimeError) as exc:
                raise JoshError(
                    f"{spec}: cannot apply the adapter in {self.adapter_path} to {self.base_path}: {exc}"
                ) from None
        self.model = (model if load_in_4bit else model.to(self.device)).eval()  # 4-bit weights are placed
        self.context_length = context_length or _context_length(self.model, self.tokenizer)
        self.prefill_alone = not self.device.startswith("cuda") if prefill_alone is None else prefill_alone
        # The context is checked here, with a clear error; the tokenizer need not warn of long prompts.
        self.tokenizer.model_max_length = 2**62
        self._stop_ids = _stop_ids(self.tokenizer, self.model)
        self._pad_id = self.tokenizer.pad_token_id
        if self._pad_id is None:
            self._pad_id = self._stop_ids[0]
        keep = {self.tokenizer.convert_tokens_to_ids(tag) for tag in _TOOL_CALL_TAGS}
        self._hidden_ids = set(self.tokenizer.all_special_ids) - keep
        self._cascade_ok: bool | None = None  # whether the model takes `_decode` (None: not tried yet)
        self._queue: deque[_Job] = deque()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False

    def __repr__(self) -> str:
        return f"HFChatModel({self.name!r}, device={self.device!r}, dtype={self.dtype!r})"

    def describe(self) -> str:
        """One line for the screen: where it runs and how it batches."""
        adapter = ""
        if self.adapter_path:
            adapter = f" + adapter {self.adapter_path}{'' if self.merge_adapter else ' (not merged)'}"
        precision = f"4-bit NF4, {self.dtype} compute" if self.load_in_4bit else self.dtype
        template = "" if self.generation_prompt else ", chat template without the generation prompt"
        return (
            f"{self.base_path}{adapter}, in-process on {self.device} ({precision}), batches of up to "
            f"{self.max_batch_size} rows, context {self.context_length:,} tokens{template}"
        )

    async def check(self) -> None:
        """Preflight: the model was loaded when this object was made, so it is ready."""
        return None

    async def context_window(self) -> ContextWindow:
        """The model's context (see `context_length`)."""
        return ContextWindow(
            self.context_length,
            "its max_position_embeddings, or its tokenizer's model_max_length",
            "use a model with a longer context",
        )

    async def prompt_size(
        self, messages: Sequence[Message], tools: Sequence[Mapping[str, Any]] | None = None
    ) -> PromptSize:
        """The tokens of a request's prompt: the chat template applied as `chat` does, then the tokenizer."""
        rendered = self._render(
            [to_template(message) for message in messages], [dict(tool) for tool in tools] if tools else None
        )
        return PromptSize(len(rendered), "counted by the model's tokenizer and chat template")

    async def chat(
        self,
        messages: Sequence[Message],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        n: int = 1,
        temperature: float = 0.0,
        max_tokens: int | None = None,
        seed: int | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> list[AssistantMessage]:
        """Return `n` completions; see `ChatModel.chat` and the module docstring. `metadata` is not used."""
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        loop = asyncio.get_running_loop()
        job = _Job(
            messages=[to_template(message) for message in messages],
            tools=[dict(tool) for tool in tools] if tools else None,
            n=n,
            temperature=max(0.0, float(temperature)),
            max_tokens=max_tokens or DEFAULT_MAX_TOKENS,
            seed=seed,
            loop=loop,
            future=loop.create_future(),
        )
        with self._wake:
            if self._thread is None or not self._thread.is_alive():
                self._stopping = False
                self._thread = threading.Thread(
                    target=self._serve_forever, name="josh-hf-batcher", daemon=True
                )
                self._thread.start()
            self._queue.append(job)
            self._wake.notify()
        return await job.future  # a cancelled caller's job is skipped, or its rows dropped

    async def aclose(self) -> None:
        """Stop the worker thread after its current batch; the model stays loaded (a later call restarts it)."""
        with self._wake:
            thread, self._stopping = self._thread, True
            self._wake.notify()
        if thread is not None:
            await asyncio.to_thread(thread.join)

    # -- the worker thread ---------------------------------------------------------------------------------

    def _serve_forever(self) -> None:
        while True:
            with self._wake:
                while not self._queue and not self._stopping:
                    self._wake.wait()
                if self._stopping:
                    left, self._queue = list(self._queue), deque()
                    self._thread = None
                    break
                batch = self._take()
            if batch:
                self._serve(batch)
        for job in left:
            _settle(job, FatalLLMError(f"{self.name} was closed before this request ran"))

    def _take(self) -> list[_Job]:
        """The queued jobs of the first live job's temperature, in order, up to `max_batch_size` rows (a job
        wider than that goes alone). Called with the lock held."""
        batch: list[_Job] = []
        rows = 0
        kept: deque[_Job] = deque()
        for job in self._queue:
            if job.future.done():  # its caller was cancelled
                continue
            fits = not batch or (job.key == batch[0].key and rows + job.rows <= self.max_batch_size)
            if fits:
                batch.append(job)
                rows += job.rows
            else:
                kept.append(job)
        self._queue = kept
        return batch

    def _serve(self, batch: list[_Job]) -> None:
        """Prepare each job (its own errors go to it alone), then generate in as few batches as the context
        allows: every row of one `generate` must fit the longest generation of that batch."""
        ready = []
        for job in batch:
            try:
                self._prepare(job)
            except LLMError as exc:
                _settle(job, exc)
            else:
                ready.append(job)
        while ready:
            longest = max(job.limit for job in ready)
            group = [job for job in ready if len(job.prompt) + longest <= self.context_length]
            ready = [job for job in ready if job not in group]
            try:
                results = self._generate(group, longest)
            except Exception as exc:  # the whole batch failed: every caller in it is told
                error = self._generation_error(exc, group)
                for job in group:
                    _settle(job, error)
                continue
            for job, replies in zip(group, results, strict=True):
                _settle(job, replies)

    def _render(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> list[int]:
        """A prompt's token ids: the chat template applied to the messages and tools."""
        try:
            rendered = self.tokenizer.apply_chat_template(
                messages, tools=tools, add_generation_prompt=self.generation_prompt, tokenize=True
            )
        except Exception as exc:  # a template may raise on any message order it does not support
            raise FatalLLMError(f"the chat template of {self.name} refused the messages: {exc}") from None
        ids = rendered["input_ids"] if isinstance(rendered, Mapping) else rendered
        return [int(token) for token in ids]

    def _prepare(self, job: _Job) -> None:
        job.prompt = self._render(job.messages, job.tools)
        room = self.context_length - len(job.prompt)
        if room < 1:
            raise ContextLengthError(
                f"the conversation is longer than the context window of {self.name} (context too long: "
                f"{len(job.prompt):,} prompt tokens, context {self.context_length:,}); shorten it (fewer turns, "
                "smaller max_tokens) or use a model with a longer context"
            )
        job.limit = min(job.max_tokens, room)

    def _generate(self, jobs: list[_Job], max_new_tokens: int) -> list[list[AssistantMessage]]:
        """One left-padded `generate` over the rows of `jobs`; each job's replies."""
        torch = self._torch
        prompts = [job.prompt for job in jobs for _ in range(job.rows)]
        width = max(len(prompt) for prompt in prompts)
        input_ids = torch.full((len(prompts), width), self._pad_id, dtype=torch.long)
        attention = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, prompt in enumerate(prompts):
            input_ids[row, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
            attention[row, width - len(prompt) :] = 1
        temperature = jobs[0].temperature
        # Every sampling setting is explicit: transformers fills the unset ones from the model's own
        # generation_config (e.g. Qwen's repetition_penalty 1.05, top_k 20), which would not be the paper's.
        options: dict[str, Any] = {"do_sample": False, "temperature": 1.0, "top_k": TOP_K, "top_p": 1.0}
        if temperature > 0:
            options = {"do_sample": True, "temperature": temperature, "top_k": TOP_K, "top_p": TOP_P}
        options["repetition_penalty"] = 1.0
        config = self._transformers_config(max_new_tokens, options)
        seeds = [job.seed for job in jobs]
        forked = torch.random.fork_rng(devices=[self.model.device] if self.device.startswith("cuda") else [])
        with forked, torch.inference_mode():
            if temperature > 0 and any(seed is not None for seed in seeds):
                torch.manual_seed(_batch_seed(seeds))
            new = None
            if self.prefill_alone and self._cascade_ok is not False:
                limits = [job.limit for job in jobs for _ in range(job.rows)]
                new = self._decode(prompts, limits, temperature)
            if new is None:
                extra: dict[str, Any] = {}
                if self.prefill_alone and len(prompts) > 1:
                    cache = self._prefill(prompts, width)
                    if cache is not None:
                        extra["past_key_values"] = cache
                output = self.model.generate(
                    input_ids=input_ids.to(self.model.device),
                    attention_mask=attention.to(self.model.device),
                    generation_config=config,
                    **extra,
                )
                new = output[:, width:].tolist()
        self.stats.generate_calls += 1
        self.stats.rows += len(prompts)
        self.stats.requests += len(jobs)
        results, row = [], 0
        for job in jobs:
            rows = new[row : row + job.rows]
            row += job.rows
            results.append(self._replies(job, rows))
        return results

    def _decode(
        self, prompts: list[list[int]], limits: list[int], temperature: float
    ) -> list[list[int]] | None:
        """Generate every row on a CPU with josh's own loop (instead of `generate`); each row's new tokens (up to
        its limit, ending at its stop token), or None when the model's attention cannot take this loop.

        The batch's longest common token prefix (the system prompt and tool schemas) is read once and its keys
        and values are kept once, for every row; each row's distinct rest of the prompt is read alone against
        it (identical rests once) into a preallocated per-row cache, left-aligned to a common column so that
        each step writes one column for all rows. A step attends to the shared prefix with one matrix product
        for all rows and to each row's own part (see `_cascade_attention`): the prefix is neither copied per
        row nor re-read per row, and nothing grows by concatenation. A row leaves the batch at its stop token
        or limit, so finished rows cost nothing. Greedy takes the argmax; sampling is temperature, top-k 50,
        top-p 0.95, like `generate`'s."""
        torch = self._torch
        model = self.model
        config = model.config
        layers = getattr(config, "num_hidden_layers", None)
        if (
            not isinstance(layers, int)
            or getattr(config, "sliding_window", None)
            or not hasattr(config, "_attn_implementation")
        ):
            self._cascade_ok = False
            return None
        _register_cascade_attention()
        shortest = min(len(prompt) for prompt in prompts)
        shared = 0
        for column in zip(*prompts, strict=False):
            if shared >= shortest - 1 or any(token != column[0] for token in column):
                break
            shared += 1
        if shared < max(len(prompt) for prompt in prompts) - shared:
            # A short common prefix is not worth it: a rest read against a prefix takes the attention-mask
            # path (several times slower on a CPU than a prompt read alone), and it saves little.
            shared = 0
        state = _Cascade(layers, shared)
        self.stats.shared_tokens += shared * (len(prompts) - 1)
        device = model.device
        saved = config._attn_implementation
        config._attn_implementation = _CASCADE
        try:
            if shared:
                state.phase = "prefix"
                model(input_ids=torch.tensor([prompts[0][:shared]], device=device), use_cache=False,
                      logits_to_keep=1, josh_cascade=state)  # fmt: skip
                if any(key is None for key in state.prefix_k):
                    raise _CascadeUnsupported
            rests: dict[tuple[int, ...], list[int]] = {}
            for row, prompt in enumerate(prompts):
                rests.setdefault(tuple(prompt[shared:]), []).append(row)
            width = max(len(rest) for rest in rests)  # the column where generated tokens start
            total = width + max(limits)
            rows = len(prompts)
            firsts: list[Any] = [None] * rows
            state.phase = "rest"
            for rest, members in rests.items():
                state.rest = [None] * layers
                ids = torch.tensor([list(rest)], device=device)
                positions = torch.arange(shared, shared + len(rest), device=device)[None]
                logits = model(input_ids=ids, position_ids=positions, use_cache=False, logits_to_keep=1,
                               josh_cascade=state).logits[0, -1]  # fmt: skip
                if any(part is None for part in state.rest):
                    raise _CascadeUnsupported
                if state.k[0] is None:
                    for index, (key, value) in enumerate(state.rest):
                        shape = (rows, key.shape[1], total, key.shape[3])
                        state.k[index] = key.new_zeros(shape)
                        state.v[index] = value.new_zeros(shape)
                start = width - len(rest)
                for index, (key, value) in enumerate(state.rest):
                    for row in members:
                        state.k[index][row, :, start:width] = key[0]
                        state.v[index][row, :, start:width] = value[0]
                for row in members:
                    firsts[row] = logits
            self._cascade_ok = True
            lengths = torch.tensor([len(prompt) for prompt in prompts], device=device)
            state.bias = torch.zeros((rows, 1, 1, total), device=device, dtype=state.k[0].dtype)
            for row, prompt in enumerate(prompts):
                state.bias[row, 0, 0, : width - (len(prompt) - shared)] = float("-inf")
            state.phase = "step"
            stops = torch.tensor(self._stop_ids, device=device)
            out: list[list[int]] = [[] for _ in prompts]
            live = list(range(rows))  # the original row of each row still in the batch
            room = torch.tensor(limits, device=device)
            token = self._pick(torch.stack(firsts), temperature)
            for step in range(max(limits)):
                for row, value in zip(live, token.tolist(), strict=True):
                    out[row].append(value)
                done = torch.isin(token, stops) | (room <= step + 1)
                if bool(done.all()):
                    break
                if bool(done.any()):
                    keep = (~done).nonzero().flatten()
                    live = [live[index] for index in keep.tolist()]
                    token, room, lengths = token[keep], room[keep], lengths[keep]
                    state.bias = state.bias[keep]
                    for index in range(layers):
                        state.k[index] = state.k[index][keep]
                        state.v[index] = state.v[index][keep]
                state.column = width + step
                logits = model(input_ids=token[:, None], position_ids=(lengths + step)[:, None], use_cache=False,
                               logits_to_keep=1, josh_cascade=state).logits[:, -1]  # fmt: skip
                token = self._pick(logits, temperature)
            return out
        except _CascadeUnsupported:
            self._cascade_ok = False
            return None
        finally:
            config._attn_implementation = saved

    def _pick(self, logits: Any, temperature: float) -> Any:
        """The next token of each row: the argmax, or a sample (temperature, top-k 50, top-p 0.95)."""
        torch = self._torch
        if temperature <= 0:
            return logits.argmax(-1)
        logits = logits.float() / temperature
        if logits.shape[-1] > TOP_K:
            kth = torch.topk(logits, TOP_K, dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        ordered, order = torch.sort(logits, dim=-1)
        cumulative = ordered.softmax(-1).cumsum(-1)
        drop = cumulative <= 1 - TOP_P
        drop[:, -1] = False  # the most likely token always stays
        logits = logits.masked_fill(drop.scatter(1, order, drop), float("-inf"))
        return torch.multinomial(logits.softmax(-1), 1)[:, 0]

    def _prefill(self, prompts: list[list[int]], width: int) -> Any:
        """The KV cache of every prompt but its last token, each read alone and left-padded to `width - 1`,
        stacked into one batch cache (`generate` then reads only the last tokens). On a CPU a padded batch
        takes the attention-mask path, several times slower than an unpadded prompt, and reading prompts gains
        nothing from batching there; so this is the CPU's way for models `_decode` cannot take. None when the
        model's cache is not a plain dynamic one (sliding-window layers): the batch is then read padded."""
        torch = self._torch
        import transformers

        if min(len(prompt) for prompt in prompts) < 2:
            return None
        read: dict[tuple[int, ...], Any] = {}  # a sampled call's n rows share their prompt: read it once
        for prompt in prompts:
            key = tuple(prompt)
            if key not in read:
                ids = torch.tensor([prompt[:-1]], dtype=torch.long, device=self.model.device)
                read[key] = self.model(input_ids=ids, use_cache=True).past_key_values
        layers = [getattr(cache, "layers", None) for cache in read.values()]
        if any(
            not rows or any(type(layer).__name__ != "DynamicLayer" or layer.is_sliding for layer in rows)
            for rows in layers
        ):
            return None
        stacked = transformers.DynamicCache()
        for index in range(len(layers[0])):  # type: ignore[arg-type]
            keys, values = [], []
            for prompt in prompts:
                layer = read[tuple(prompt)].layers[index]
                pad = (0, 0, width - len(prompt), 0)  # left, along the sequence
                keys.append(torch.nn.functional.pad(layer.keys, pad))
                values.append(torch.nn.functional.pad(layer.values, pad))
            stacked.update(torch.cat(keys), torch.cat(values), index)
        return stacked

    def _transformers_config(self, max_new_tokens: int, options: dict[str, Any]) -> Any:
        import transformers

        return transformers.GenerationConfig(
            max_new_tokens=max_new_tokens,
            eos_token_id=self._stop_ids,
            pad_token_id=self._pad_id,
            **options,
        )

    def _replies(self, job: _Job, rows: list[list[int]]) -> list[AssistantMessage]:
        latency = time.perf_counter() - job.started
        texts, completion_tokens = [], 0
        for tokens in rows:
            tokens = tokens[: job.limit]
            stop = next((i for i, token in enumerate(tokens) if token in self._stop_ids), None)
            kept = tokens if stop is None else tokens[: stop + 1]
            completion_tokens += len(kept)
            visible = [token for token in kept if token not in self._hidden_ids]
            texts.append(self.tokenizer.decode(visible, skip_special_tokens=False))
        if job.rows < job.n:  # greedy: one row for every choice, each choice's tokens counted
            texts *= job.n
            completion_tokens *= job.n
        usage = Usage(prompt_tokens=len(job.prompt), completion_tokens=completion_tokens, cost=0.0)
        replies = []
        for index, text in enumerate(texts):
            content, calls = parse_hermes_tool_calls(text) if job.tools else (text, [])
            replies.append(
                AssistantMessage(
                    content=content,
                    tool_calls=tuple(calls),
                    usage=usage if index == 0 else Usage(cost=0.0),
                    latency_s=round(latency, 4),
                    model=self.name,
                )
            )
        return replies

    def _generation_error(self, exc: Exception, jobs: list[_Job]) -> LLMError:
        rows = sum(job.rows for job in jobs)
        out_of_memory = getattr(self._torch, "OutOfMemoryError", ())
        if isinstance(exc, out_of_memory) or "out of memory" in str(exc).lower():
            return EndpointError(
                f"{self.name} ran out of memory generating a batch of {rows} rows; lower --hf-batch-size "
                "(or --max-tokens) and continue with --resume"
            )
        return FatalLLMError(
            f"{self.name} failed generating a batch of {rows} rows: {type(exc).__name__}: {exc}"
        )


def _settle(job: _Job, outcome: list[AssistantMessage] | BaseException) -> None:
    """Hand `outcome` to the job's caller on its event loop (nothing when the caller or its loop is gone)."""

    def settle() -> None:
        if job.future.done():
            return
        if isinstance(outcome, BaseException):
            job.future.set_exception(outcome)
        else:
            job.future.set_result(outcome)

    with contextlib.suppress(RuntimeError):  # the loop was closed
        job.loop.call_soon_threadsafe(settle)


def _batch_seed(seeds: list[int | None]) -> int:
    """One seed for a batch from its requests' seeds, in order (None counts as 0)."""
    value = 0
    for seed in seeds:
        value = (value * 1_000_003 + (seed or 0)) % (2**63)
    return value


def _import_train_extra(*, needs_peft: bool) -> tuple[Any, Any, Any]:
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


def _check_four_bit(device: str, what: str) -> None:
    """4-bit loading needs bitsandbytes on a CUDA GPU: a `JoshError` naming the fix where it cannot run."""
    if not device.startswith("cuda"):
        raise JoshError(f"{what}: 4-bit loading needs a CUDA GPU (bitsandbytes); this runs on {device}")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise JoshError(f"{what}: 4-bit loading needs bitsandbytes: pip install bitsandbytes")


def _context_length(model: Any, tokenizer: Any) -> int:
    """The model's context: its `max_position_embeddings`, else the tokenizer's `model_max_length` (which is
    a huge placeholder when unset), else 4,096."""
    candidates = [
        getattr(model.config, "max_position_embeddings", None),
        getattr(tokenizer, "model_max_length", None),
    ]
    sane = [value for value in candidates if isinstance(value, int) and 0 < value < 10_000_000]
    return min(sane) if sane else 4096


def _stop_ids(tokenizer: Any, model: Any) -> list[int]:
    """The tokens that end a reply: the tokenizer's and the model's end-of-sequence tokens and the chat
    formats' end-of-turn tokens the vocabulary has."""
    ids: list[int] = []
    configured = getattr(model.generation_config, "eos_token_id", None)
    for value in (tokenizer.eos_token_id, configured):
        for token in value if isinstance(value, list) else [value]:
            if isinstance(token, int) and token not in ids:
                ids.append(token)
    vocabulary = tokenizer.get_vocab()
    for text in _STOP_TOKENS:
        token = vocabulary.get(text)
        if token is not None and token not in ids:
            ids.append(token)
    if not ids:
        raise JoshError("the tokenizer has no end-of-sequence token, so generation could not stop")
    return ids


# ---------------------------------------------------------------------------------------------- the CPU decode loop

_CASCADE = "josh_cascade"


@dataclass(eq=False)
class _Cascade:
    """The keys and values of one `HFChatModel._decode`: the shared prefix once per layer ([kv heads, prefix,
    head dim]), each row's own part in preallocated buffers ([rows, kv heads, columns, head dim], left-padded
    to a common column, `bias` -inf on the padding), and what the model's attention layers are doing now."""

    layers: int
    shared: int
    phase: str = "prefix"  # "prefix": reading the shared prefix; "rest": one row's rest; "step": generating
    column: int = 0  # in "step": the buffer column of the token being read
    prefix_k: list[Any] = field(default_factory=list)
    prefix_v: list[Any] = field(default_factory=list)
    rest: list[Any] = field(default_factory=list)
    k: list[Any] = field(default_factory=list)
    v: list[Any] = field(default_factory=list)
    bias: Any = None

    def __post_init__(self) -> None:
        self.prefix_k, self.prefix_v = [None] * self.layers, [None] * self.layers
        self.k, self.v = [None] * self.layers, [None] * self.layers


def _register_cascade_attention() -> None:
    """Make `_cascade_attention` a transformers attention implementation (once). It has no mask function, so the
    model builds no mask while it is in use."""
    from transformers import AttentionInterface

    if _CASCADE not in AttentionInterface._global_mapping:
        AttentionInterface.register(_CASCADE, _cascade_attention)


def _cascade_attention(
    module: Any, query: Any, key: Any, value: Any, attention_mask: Any, *, scaling: float | None = None,
    josh_cascade: _Cascade | None = None, **kwargs: Any,
) -> tuple[Any, None]:  # fmt: skip
    """Attention for `HFChatModel._decode`: query [rows, heads, tokens, head dim], key and value of the new
    tokens [rows, kv heads, tokens, head dim] (rotary embedding applied); returns [rows, tokens, heads, head dim]."""
    import torch

    state = josh_cascade
    if state is None or kwargs.get("sliding_window") or kwargs.get("softcap"):
        raise _CascadeUnsupported  # the model did not pass josh's state through, or needs more than this
    layer = module.layer_idx
    functional = torch.nn.functional
    if state.phase == "prefix":  # the shared prefix, causal, stored once
        state.prefix_k[layer], state.prefix_v[layer] = key[0].contiguous(), value[0].contiguous()
        out = functional.scaled_dot_product_attention(
            query, key, value, is_causal=True, scale=scaling, enable_gqa=True
        )
        return out.transpose(1, 2), None
    if state.phase == "rest":  # one row's rest: the prefix, then itself causally
        state.rest[layer] = (key, value)
        if not state.shared:
            out = functional.scaled_dot_product_attention(
                query, key, value, is_causal=True, scale=scaling, enable_gqa=True
            )
            return out.transpose(1, 2), None
        keys = torch.cat([state.prefix_k[layer][None], key], dim=2)
        values = torch.cat([state.prefix_v[layer][None], value], dim=2)
        tokens = query.shape[2]
        mask = None  # one token sees everything
        if tokens > 1:
            mask = torch.ones((tokens, state.shared + tokens), dtype=torch.bool, device=query.device)
            mask = mask.tril(state.shared)
        out = functional.scaled_dot_product_attention(
            query, keys, values, attn_mask=mask, scale=scaling, enable_gqa=True
        )
        return out.transpose(1, 2), None
    # one step: each row's one new token against the shared prefix (one product for all rows) and its own part
    rows, heads, _, dim = query.shape
    groups = heads // key.shape[1]
    keys, values = state.k[layer], state.v[layer]
    keys[:, :, state.column] = key[:, :, 0]
    values[:, :, state.column] = value[:, :, 0]
    seen = state.column + 1
    scale = dim**-0.5 if scaling is None else scaling
    q = (query * scale).reshape(rows, -1, groups, dim)  # [rows, kv heads, groups, dim]
    own = torch.matmul(q, keys[:, :, :seen].transpose(-1, -2)) + state.bias[:, :, :, :seen]
    if state.shared:
        flat = q.transpose(0, 1).reshape(q.shape[1], rows * groups, dim)  # [kv heads, rows * groups, dim]
        common = torch.matmul(flat, state.prefix_k[layer].transpose(-1, -2))
        common = common.view(q.shape[1], rows, groups, -1).transpose(0, 1)
        weights = torch.cat([common, own], dim=-1).softmax(-1)
        out = torch.matmul(weights[..., state.shared :], values[:, :, :seen])
        shared = weights[..., : state.shared].transpose(0, 1).reshape(q.shape[1], rows * groups, -1)
        out = out + torch.matmul(shared, state.prefix_v[layer]).view(q.shape[1], rows, groups, dim).transpose(
            0, 1
        )
    else:
        out = torch.matmul(own.softmax(-1), values[:, :, :seen])
    return out.reshape(rows, heads, 1, dim).transpose(1, 2), None


class _CascadeUnsupported(Exception):
    """The model's attention needs what `_cascade_attention` does not do (a sliding window, soft-capping)."""
