"""Fitting training examples into `--max-length` tokens before TRL sees them (`josh train --truncation`).

TRL 1.16 cuts a sequence longer than `max_length` at its end and drops every KTO or DPO example whose prompt
alone fills `max_length`. The paper's TRL cut the prompt from the left instead (KTO's `max_prompt_length` 5000,
truncation mode `keep_end`), so that the reply being trained on survives. josh does that itself, on the
messages, before handing the data to TRL; each example is measured as TRL's trainers tokenize it (the chat
template applied with the example's tools), so that TRL then neither cuts nor drops it.

Modes (`Truncation`):

- `keep-end` (the default, the paper's): keep the end. KTO and DPO: the completions stay whole and the prompt
  loses its start, token by token: the content of its earliest messages is cut from the left (the system
  prompt first, as the paper's left truncation of the tokenized prompt did), and a message that would be cut
  entirely goes whole. The template's own framing (role headers, the tools it renders) stays. The system
  message is emptied, never removed (some templates put a default system prompt in its place), and the prompt's
  last message is never removed. SFT: the same from the conversation's start, except that an assistant reply
  (a training target) is never cut: it goes whole with the turns before it, so the replies at the end survive
  intact. An example that cannot fit even so (its completion, or its last reply, alone is too long) is dropped.
- `keep-start`: TRL's own behaviour: the data goes to TRL unchanged and TRL cuts each sequence at its end (KTO
  and DPO: the completion's end; SFT: the conversation's last turns). The examples TRL would drop (KTO and DPO:
  the prompt alone fills `--max-length`; SFT: no reply starts within it) are dropped here, counted.
- `drop`: an example longer than `--max-length` is dropped whole; the others are unchanged.

Every example truncated or dropped is counted, with the reason (`FitReport`), printed and recorded in
`OUT/train_config.json`. KTO's KL term pairs each prompt with another example's completion (TRL builds those
pairs); a pair longer than `--max-length` is cut at its end by TRL, which only affects that estimate.
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

Truncation = Literal["keep-end", "keep-start", "drop"]

# The columns that follow the prompt, per kind (SFT has no prompt: its whole conversation is one column).
COMPLETIONS: dict[str, tuple[str, ...]] = {"kto": ("completion",), "dpo": ("chosen", "rejected"), "sft": ()}


def how(truncation: Truncation, kind: str) -> str:
    """How an example counted as truncated was cut."""
    if truncation == "keep-start":
        return "TRL cuts its end"
    return "the conversation's start cut" if kind == "sft" else "the prompt's start cut"


TOO_LONG = "longer than --max-length"
COMPLETION_ALONE = "its completion alone, with the template's framing and tools, is longer than --max-length"
LAST_REPLY_ALONE = "its last reply alone, with the template's framing and tools, is longer than --max-length"
PROMPT_FILLS = "its prompt alone fills --max-length (TRL would drop it)"
NO_REPLY = "no reply starts within --max-length (TRL would train on none of it)"


@dataclass
class FitReport:
    """What fitting did to the examples: how many were cut (and how many tokens), dropped, and why."""

    kind: str
    truncation: Truncation
    max_length: int | None
    examples: int = 0  # read
    truncated: int = 0  # kept, but cut (keep-end: by josh; keep-start: by TRL, at the end)
    tokens_cut: int = 0  # keep-end: tokens cut from the examples kept, in all
    dropped_why: dict[str, int] = field(default_factory=dict)
    longest: int = 0  # the longest example, in tokens, before fitting

    @property
    def dropped(self) -> int:
        return sum(self.dropped_why.values())

    @property
    def kept(self) -> int:
        return self.examples - self.dropped

    def record(self) -> dict[str, Any]:
        """What `OUT/train_config.json` records under `recorded.data`."""
        return {
            "examples": self.examples,
            "trained_on": self.kept,
            "max_length": self.max_length,
            "truncation": self.truncation,
            "truncated": self.truncated,
            "truncated_how": how(self.truncation, self.kind) if self.truncated else None,
            "tokens_cut": self.tokens_cut,
            "dropped": self.dropped,
            "dropped_why": dict(self.dropped_why),
            "longest_tokens": self.longest,
        }

    def summary(self) -> str:
        """One line: e.g. `202 kto examples, longest 12,537 tokens: 202 truncated to --max-length 5256
        (--truncation keep-end: the prompt's start cut, 1,292,841 tokens in all), 0 dropped`."""
        line = f"{self.examples:,} {self.kind} examples, longest {self.longest:,} tokens"
        if self.max_length is None:
            return f"{line}; no --max-length: none truncated"
        what = f"--truncation {self.truncation}"
        if self.truncated:
            what += f": {how(self.truncation, self.kind)}"
        if self.tokens_cut:
            what += f", {self.tokens_cut:,} tokens in all"
        line += f": {self.truncated:,} truncated to --max-length {self.max_length} ({what}), {self.dropped:,} dropped"
        if self.dropped:
            line += " (" + "; ".join(f"{n:,}: {why}" for why, n in self.dropped_why.items()) + ")"
        return line


Messages = list[dict[str, Any]]


class _Lengths:
    """Token counts as TRL's trainers compute them: `apply_chat_template(messages, tools=..., tokenize=True,
    return_dict=True)` (trl.data_utils._tokenize), with the generation prompt for a prompt alone."""

    def __init__(self, tokenizer: Any, tools: Any, encode: Callable[[str], list[int]]):
        self.tokenizer = tokenizer
        self.encode = encode  # a text's own tokens, no special tokens added
        self.tools = json.loads(tools) if isinstance(tools, str) else tools

    def ids(self, messages: Messages, *, generation_prompt: bool = False) -> list[int]:
        out = self.tokenizer.apply_chat_template(messages, tools=self.tools, tokenize=True, return_dict=True,
                                                 add_generation_prompt=generation_prompt)  # fmt: skip
        return list(out["input_ids"])

    def __call__(self, messages: Messages) -> int:
        return len(self.ids(messages))


def fit_examples(rows: list[dict[str, Any]], kind: str, tokenizer: Any, max_length: int | None,
                 truncation: Truncation) -> tuple[list[dict[str, Any]], FitReport]:  # fmt: skip
    """The rows that fit `max_length` tokens once fitted as `truncation` says (module docstring), and what was
    done. `rows` are as TRL will read them (tools as JSON text or None). The rows kept stay in order; one that
    was cut is a new dict (the input is left as it was), one that was not is the row itself."""
    report = FitReport(kind, truncation, max_length, examples=len(rows))
    # Measuring a long example is not running it: transformers' "sequence length is longer than the
    # specified maximum" warning (shown once a tokenizer) would only alarm here, before josh says what it cut.
    warned = getattr(tokenizer, "deprecation_warnings", None)
    if isinstance(warned, dict):
        warned["sequence-length-is-longer-than-the-specified-maximum"] = True
    drops: Counter[str] = Counter()
    kept = []
    encode = functools.lru_cache(maxsize=16)(
        lambda text: tokenizer.encode(text, add_special_tokens=False)
    )  # the same system prompt starts most examples
    for row in rows:
        lengths = _Lengths(tokenizer, row.get("tools"), encode)
        fitted, why = _fit(row, kind, lengths, max_length, truncation, report)
        if why is not None:
            drops[why] += 1
        else:
            kept.append(fitted)
    report.dropped_why = dict(drops.most_common())
    return kept, report


def _fit(row: dict[str, Any], kind: str, lengths: _Lengths, max_length: int | None, truncation: Truncation,
         report: FitReport) -> tuple[dict[str, Any], str | None]:  # fmt: skip
    """(the row fitted, None) or (the row, why it is dropped)."""
    tails = [row[column] for column in COMPLETIONS[kind]]
    head: Messages = row["messages"] if kind == "sft" else row["prompt"]

    def longest(messages: Messages) -> int:
        return max(lengths(messages + tail) for tail in tails) if tails else lengths(messages)

    length = longest(head)
    report.longest = max(report.longest, length)
    if max_length is None or length <= max_length:
        return row, None
    if truncation == "drop":
        return row, TOO_LONG
    if truncation == "keep-start":
        if kind == "sft":
            first_reply = next((i for i, m in enumerate(head) if m.get("role") == "assistant"), len(head))
            if len(lengths.ids(head[:first_reply], generation_prompt=True)) >= max_length:
                return row, NO_REPLY
        elif _trl_prompt_length(head, tails, lengths) >= max_length:
            return row, PROMPT_FILLS
        report.truncated += 1
        return row, None
    fitted = _cut_start(head, longest, max_length, lengths, sft=kind == "sft")
    if fitted is None:
        return row, LAST_REPLY_ALONE if kind == "sft" else COMPLETION_ALONE
    cut, new_length = fitted
    report.truncated += 1
    report.tokens_cut += length - new_length
    return {**row, "messages" if kind == "sft" else "prompt": cut}, None


def _trl_prompt_length(prompt: Messages, tails: list[Messages], lengths: _Lengths) -> int:
    """The prompt's length as TRL's KTO and DPO trainers count it: the tokens the prompt (with the generation
    prompt) shares with every prompt + completion (trl.data_utils.common_prefix_length)."""
    alone = lengths.ids(prompt, generation_prompt=True)
    shared = len(alone)
    for tail in tails:
        full = lengths.ids(prompt + tail)
        same = next(
            (i for i, (a, b) in enumerate(zip(alone, full, strict=False)) if a != b),
            min(len(alone), len(full)),
        )
        shared = min(shared, same)
    return shared


def _cut_start(messages: Messages, measure: Callable[[Messages], int], max_length: int, lengths: _Lengths, *,
               sft: bool) -> tuple[Messages, int] | None:  # fmt: skip
    """(`messages` less tokens at their start until `measure` fits `max_length`, their length) (keep-end, see
    the module's docstring), or None where that cannot be done. Each round cuts the excess it measured, so a few rounds
    suffice (a cut can merge tokens differently at its edge, and a template can render fewer messages
    differently)."""
    out = [dict(message) for message in messages]
    i = 0  # the first message that may still be cut
    while (excess := (length := measure(out)) - max_length) > 0:
        if i >= len(out):
            return None
        message = out[i]
        text = _text(message)
        if i == 0 and message.get("role") == "system":  # emptied, never removed
            if text:
                message["content"] = _drop_tokens(text, excess, lengths)
            else:
                i += 1
        elif sft and message.get("role") == "assistant":  # a reply to train on: whole or not at all
            if not any(m.get("role") == "assistant" for m in out[i + 1 :]):
                return None  # the last reply: it stays
            del out[i]
        elif text and len(lengths.encode(text)) > excess:
            message["content"] = _drop_tokens(text, excess, lengths)
        elif not sft and i == len(out) - 1:
            return None  # the prompt's last message is never removed
        else:
            del out[i]
    return out, length


def _text(message: dict[str, Any]) -> str | None:
    """The message's text where it can be cut: a non-empty string, in a message that calls no tool."""
    content = message.get("content")
    return content if isinstance(content, str) and content and not message.get("tool_calls") else None


def _drop_tokens(text: str, count: int, lengths: _Lengths) -> str:
    """`text` less its first `count` tokens (its own tokenization, no special tokens added)."""
    ids = lengths.encode(text)
    return lengths.tokenizer.decode(
        ids[count:], skip_special_tokens=False, clean_up_tokenization_spaces=False
    )
