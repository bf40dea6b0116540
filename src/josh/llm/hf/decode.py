"""The CPU decode loop: a batch of prompts generated with josh's own loop instead of transformers' `generate`.

This is the one piece of the `hf:` backend that no library does for us: on a CPU, `generate` over a padded
batch takes the attention-mask path (several times slower than an unpadded prompt) and reads the prompt
prefix every row shares (the system prompt and tool schemas) once per row. `decode` reads that prefix once,
keeps its keys and values once, reads each row's rest alone, and then attends to the shared prefix with one
matrix product for all rows (cascade attention, `_cascade_attention`, registered as a transformers attention
implementation while the loop runs). Its outputs are `generate`'s: the equivalence tests beside it
(`tests/test_hf_decode.py`) compare them row by row, greedy, with rows that stop early.

Sampling is the paper's and `generate`'s: temperature > 0 samples with top-k 50 and top-p 0.95 (`pick`);
temperature 0 is greedy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from josh.llm.hf.batching import BatchStats

TOP_K, TOP_P = 50, 0.95  # the paper's sampling


def decode(
    model: Any, prompts: list[list[int]], limits: list[int], temperature: float, stop_ids: list[int],
    stats: BatchStats,
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
    import torch

    config = model.config
    layers = getattr(config, "num_hidden_layers", None)
    if (
        not isinstance(layers, int)
        or getattr(config, "sliding_window", None)
        or not hasattr(config, "_attn_implementation")
    ):
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
    stats.shared_tokens += shared * (len(prompts) - 1)
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
        lengths = torch.tensor([len(prompt) for prompt in prompts], device=device)
        state.bias = torch.zeros((rows, 1, 1, total), device=device, dtype=state.k[0].dtype)
        for row, prompt in enumerate(prompts):
            state.bias[row, 0, 0, : width - (len(prompt) - shared)] = float("-inf")
        state.phase = "step"
        stops = torch.tensor(stop_ids, device=device)
        out: list[list[int]] = [[] for _ in prompts]
        live = list(range(rows))  # the original row of each row still in the batch
        room = torch.tensor(limits, device=device)
        token = pick(torch.stack(firsts), temperature)
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
            token = pick(logits, temperature)
        return out
    except _CascadeUnsupported:
        return None
    finally:
        config._attn_implementation = saved


def pick(logits: Any, temperature: float) -> Any:
    """The next token of each row: the argmax, or a sample (temperature, top-k 50, top-p 0.95)."""
    import torch

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


# ------------------------------------------------------------------------------------------ cascade attention

_CASCADE = "josh_cascade"


@dataclass(eq=False)
class _Cascade:
    """The keys and values of one `decode`: the shared prefix once per layer ([kv heads, prefix,
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
    """Attention for `decode`: query [rows, heads, tokens, head dim], key and value of the new
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
