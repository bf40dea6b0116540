"""The CPU decode loop of the `hf:` backend (`josh.llm.hf.decode`): its outputs are `generate`'s.

Each test runs the same calls one at a time and together (a batch on josh's own loop), and through
transformers' `generate` (a padded batch, the GPU's way; and after prompts read one by one, the CPU's way for
models the loop cannot take), and compares the replies row by row. On josh's tiny random Llama
(`tests/test_hf_model.py`'s fixtures); well under a minute on two CPU cores.
"""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from josh.llm.hf.model import HFChatModel  # noqa: E402
from josh.types import SystemMessage, UserMessage  # noqa: E402
from tests import test_hf_model as backend  # noqa: E402

MESSAGES, TOOLS, chat = backend.MESSAGES, backend.TOOLS, backend.chat
tiny, model = backend.tiny, backend.model  # its session fixtures: the tiny model, and it loaded


def test_concurrent_calls_share_batches_and_each_gets_its_own_rows(
    model: HFChatModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = [{"messages": [*MESSAGES, UserMessage(content="and parking " * i)]} for i in range(8)]
    alone = [chat(model, call)[0][0] for call in calls]  # one at a time
    real = model._generate
    batches: list[int] = []

    def counting(jobs, max_new_tokens):  # type: ignore[no-untyped-def]
        batches.append(len(jobs))
        return real(jobs, max_new_tokens)

    monkeypatch.setattr(model, "_generate", counting)
    together = [replies[0] for replies in chat(model, *calls)]
    assert len(batches) < len(calls) and max(batches) > 1, batches
    assert [r.usage.prompt_tokens for r in together] == [r.usage.prompt_tokens for r in alone]  # type: ignore[union-attr]
    assert len({r.usage.prompt_tokens for r in together}) == 8  # type: ignore[union-attr]
    assert [r.content for r in together] == [r.content for r in alone]  # batching does not change greedy
    assert model.prefill_alone and model._cascade_ok  # on a CPU: josh's own loop (HFChatModel._decode)
    padded = HFChatModel(model.name, prefill_alone=False)  # the GPU's way: the padded batch read at once
    assert [replies[0].content for replies in chat(padded, *calls)] == [r.content for r in alone]
    stacked = HFChatModel(model.name)  # the CPU's way with generate, for models the loop cannot take
    stacked._cascade_ok = False
    assert [replies[0].content for replies in chat(stacked, *calls)] == [r.content for r in alone]


@pytest.fixture(scope="session")
def lively(tiny: Path) -> HFChatModel:
    """The tiny model with its weight matrices scaled up: its greedy replies vary with the prompt (the tiny
    model's own are all newlines), so that comparing replies means something."""
    import shutil

    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny)
    with torch.no_grad():
        for parameter in base.parameters():
            if parameter.dim() == 2:
                parameter.mul_(8)
    out = tiny.parent / "lively"
    base.save_pretrained(out)
    for path in tiny.iterdir():
        if not (out / path.name).exists():
            shutil.copy(path, out / path.name)
    return HFChatModel(f"hf:{out}")


def test_a_shared_prefix_is_read_once_and_rows_leave_at_their_stop(lively: HFChatModel) -> None:
    """Prompts sharing a long prefix (system prompt and tools) and of different lengths: the batch reads the
    prefix once, and each row's greedy reply is its reply alone (and generate's), also when a row stops early
    (at a stop token, or at its own max_tokens) while the others go on."""
    system = SystemMessage(content="You book hotels, trains and taxis in Cambridge. " * 30)
    calls = [
        {"messages": [system, UserMessage(content="I need a hotel" + " with parking" * i)], "tools": TOOLS,
         "max_tokens": 24 if i != 2 else 5}
        for i in range(5)
    ]  # fmt: skip
    alone = [chat(lively, call)[0][0] for call in calls]
    assert len({r.content for r in alone}) == 5  # different replies
    padded = HFChatModel(lively.name, prefill_alone=False)  # generate, for reference
    assert [replies[0].content for replies in chat(padded, *calls)] == [r.content for r in alone]
    shared_before = lively.stats.shared_tokens
    together = [replies[0] for replies in chat(lively, *calls)]
    assert [r.content for r in together] == [r.content for r in alone]
    assert [r.usage for r in together] == [r.usage for r in alone]
    assert lively.stats.shared_tokens - shared_before > 300  # the common prefix was read once for the batch
    # A stop token mid-batch: one the first call writes early ends rows there; another row goes on.
    written = lively.tokenizer(alone[0].content, add_special_tokens=False)["input_ids"]
    stops = list(lively._stop_ids)
    lively._stop_ids = padded._stop_ids = [*stops, written[2]]
    try:
        stopped = [chat(lively, call)[0][0] for call in calls]
        mixed = [replies[0] for replies in chat(lively, *calls)]
        generated = [replies[0] for replies in chat(padded, *calls)]
    finally:
        lively._stop_ids = stops
    lengths = [r.usage.completion_tokens for r in stopped]  # type: ignore[union-attr]
    assert lengths[0] < 5 and max(lengths) == 24, lengths
    assert [r.content for r in mixed] == [r.content for r in stopped] == [r.content for r in generated]
    assert [r.usage for r in mixed] == [r.usage for r in stopped] == [r.usage for r in generated]
