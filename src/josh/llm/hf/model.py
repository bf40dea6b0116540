"""`HFChatModel`: a local Hugging Face model (plus an optional PEFT adapter) as a chat model, in-process:
`--model hf:PATH[+ADAPTER]` (see `josh.llm.hf` for the whole backend).

Loading: transformers and peft are imported only when a model is loaded (without the `[train]` extra, one
message names it). A batch from the worker (`josh.llm.hf.batching`) is rendered with the chat template,
capped by the context, and generated: on a GPU as one left-padded `generate`; on a CPU with josh's own decode
loop (`josh.llm.hf.decode`), or, for a model whose attention that loop cannot take, `generate` after its
prompts were read one by one (`HFChatModel._prefill`).

Sampling is the paper's: temperature > 0 samples with top_k 50 and top_p 0.95; temperature 0 is greedy. The model's
own `generation_config` sampling defaults are not used. `max_tokens` (default `DEFAULT_MAX_TOKENS`) is capped by
the context: a prompt that fills the context is a `FatalLLMError` ("context too long"), like a server's 400.

Seeds: a sampled batch seeds its own random generator from the seeds of its requests, so the same requests in the
same batch sample the same text. Which requests share a batch depends on timing, so a sampled run is repeatable
only when run one conversation at a time (`--concurrency 1`); greedy decoding does not depend on seeds (though a
row's padding in a batch can change the last bits of its logits, and so, rarely, a near tie).

Tool calls (when `tools` are given) are read back in the Hermes convention (`josh.llm.hf.chat_format`).
Generation stops at the end-of-sequence token and `<|im_end|>`; other special tokens are dropped from the text.

Usage: each call's prompt tokens (counted once, like a server's `n`) and completion tokens (all choices, each up
to and including its stop token) are on its first reply; cost is 0 (local); latency is the call's wall time,
queueing included.
"""

from __future__ import annotations

import asyncio
import importlib.util
import time
from collections.abc import Mapping, Sequence
from typing import Any

from josh.errors import JoshError
from josh.llm.base import ContextLengthError, EndpointError, FatalLLMError, LLMError
from josh.llm.context import ContextWindow, PromptSize
from josh.llm.hf.batching import BatchStats, BatchWorker, Job, batch_seed, settle
from josh.llm.hf.chat_format import TOOL_CALL_TAGS, parse_hermes_tool_calls, to_template
from josh.llm.hf.decode import TOP_K, TOP_P, decode
from josh.llm.hf.spec import (
    TRAIN_EXTRA_HINT,
    check_four_bit,
    four_bit_config,
    import_train_extra,
    parse_hf_spec,
    pretrained_source,
    quiet_gguf_conversion,
)
from josh.types import AssistantMessage, Message, Usage

DEFAULT_MAX_TOKENS = 512
DEFAULT_MAX_BATCH_SIZE = 32
_STOP_TOKENS = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>")


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
        self._worker = BatchWorker(spec, max_batch_size, self._serve)
        self.stats = BatchStats()
        self.adaptations: list[str] = []
        self._torch, transformers, _ = import_train_extra(needs_peft=False)
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
            check_four_bit(self.device, spec)
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
            peft = import_train_extra(needs_peft=True)[2]
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
        keep = {self.tokenizer.convert_tokens_to_ids(tag) for tag in TOOL_CALL_TAGS}
        self._hidden_ids = set(self.tokenizer.all_special_ids) - keep
        self._cascade_ok: bool | None = None  # whether the model takes `_decode` (None: not tried yet)

    def __repr__(self) -> str:
        return f"HFChatModel({self.name!r}, device={self.device!r}, dtype={self.dtype!r})"

    @property
    def max_batch_size(self) -> int:
        """Most rows of one batch."""
        return self._worker.max_batch_size

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
        job = Job(
            messages=[to_template(message) for message in messages],
            tools=[dict(tool) for tool in tools] if tools else None,
            n=n,
            temperature=max(0.0, float(temperature)),
            max_tokens=max_tokens or DEFAULT_MAX_TOKENS,
            seed=seed,
            loop=loop,
            future=loop.create_future(),
        )
        self._worker.submit(job)
        return await job.future  # a cancelled caller's job is skipped, or its rows dropped

    async def aclose(self) -> None:
        """Stop the worker thread after its current batch; the model stays loaded (a later call restarts it)."""
        await self._worker.close()

    # -- a batch, in the worker thread ----------------------------------------------------------------------

    def _serve(self, batch: list[Job]) -> None:
        """Prepare each job (its own errors go to it alone), then generate in as few batches as the context
        allows: every row of one `generate` must fit the longest generation of that batch."""
        ready = []
        for job in batch:
            try:
                self._prepare(job)
            except LLMError as exc:
                settle(job, exc)
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
                    settle(job, error)
                continue
            for job, replies in zip(group, results, strict=True):
                settle(job, replies)

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

    def _prepare(self, job: Job) -> None:
        job.prompt = self._render(job.messages, job.tools)
        room = self.context_length - len(job.prompt)
        if room < 1:
            raise ContextLengthError(
                f"the conversation is longer than the context window of {self.name} (context too long: "
                f"{len(job.prompt):,} prompt tokens, context {self.context_length:,}); shorten it (fewer turns, "
                "smaller max_tokens) or use a model with a longer context"
            )
        job.limit = min(job.max_tokens, room)

    def _generate(self, jobs: list[Job], max_new_tokens: int) -> list[list[AssistantMessage]]:
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
                torch.manual_seed(batch_seed(seeds))
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
        """Every row's new tokens from josh's CPU decode loop (`josh.llm.hf.decode`), or None when the model's
        attention cannot take it (then never tried again on this model)."""
        new = decode(self.model, prompts, limits, temperature, self._stop_ids, self.stats)
        self._cascade_ok = new is not None
        return new

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

    def _replies(self, job: Job, rows: list[list[int]]) -> list[AssistantMessage]:
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

    def _generation_error(self, exc: Exception, jobs: list[Job]) -> LLMError:
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
