"""The `hf:` backend: a local transformers model (plus a PEFT adapter) as a chat model, batched across calls.

Everything runs on josh's tiny random Llama (`josh.train.tiny_model`, built in about a second, no download) and a
random LoRA adapter for it; the whole file takes well under a minute on two CPU cores.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

from josh.errors import JoshError  # noqa: E402
from josh.llm.base import ChatModel, ContextLengthError, FatalLLMError  # noqa: E402
from josh.llm.hf.chat_format import parse_hermes_tool_calls  # noqa: E402
from josh.llm.hf.model import HFChatModel  # noqa: E402
from josh.llm.hf.spec import import_train_extra as _import_train_extra  # noqa: E402
from josh.llm.hf.spec import parse_hf_spec  # noqa: E402
from josh.train.tiny_model import build_tiny_model  # noqa: E402
from josh.types import AssistantMessage, SystemMessage, ToolCall, ToolMessage, UserMessage  # noqa: E402
from tests.test_cli_data import run_josh  # noqa: E402
from tests.test_eval_cli import records  # noqa: E402

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "search_hotel",
            "description": "Find hotels.",
            "parameters": {"type": "object", "properties": {"area": {"type": "string"}}},
        },
    }
]
MESSAGES = [SystemMessage(content="You book hotels."), UserMessage(content="I need a hotel in the centre.")]


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("hf") / "tiny")


@pytest.fixture(scope="session")
def adapter(tiny: Path) -> Path:
    """A random LoRA adapter of the tiny model, initialised non-zero so that it changes the outputs."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(tiny)
    config = peft.LoraConfig(r=8, lora_alpha=32, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    out = tiny.parent / "lora+run"  # a '+' inside the adapter's own name
    peft.get_peft_model(base, config).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def model(tiny: Path) -> HFChatModel:
    return HFChatModel(f"hf:{tiny}", max_batch_size=32)


def chat(model: HFChatModel, *calls: dict) -> list[list[AssistantMessage]]:
    """Run `calls` (keyword arguments of `chat`) concurrently, on a fresh event loop."""

    async def go() -> list[list[AssistantMessage]]:
        return await asyncio.gather(
            *(model.chat(**{"messages": MESSAGES, "max_tokens": 8, **c}) for c in calls)
        )

    return asyncio.run(go())


# ---------------------------------------------------------------------------------------------- the spec


def test_the_spec_names_a_base_and_an_optional_adapter(tiny: Path, adapter: Path, tmp_path: Path) -> None:
    assert parse_hf_spec(f"hf:{tiny}") == (tiny, None)
    assert parse_hf_spec(f"hf:{tiny}+{adapter}") == (tiny, adapter)
    plus = tmp_path / "base+v2"  # a '+' in the base's name: the whole path is a folder, so it is not split
    plus.mkdir()
    (plus / "config.json").write_text("{}")
    assert parse_hf_spec(f"hf:{plus}") == (plus, None)
    assert parse_hf_spec(f"hf:{plus}+{adapter}") == (plus, adapter)


def test_a_hub_id_is_a_base_model(adapter: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ORG/NAME with no such local path is a Hub id (a str: from_pretrained downloads it), alone or with an
    adapter; the loop trains adapters on Hub models this way."""
    monkeypatch.chdir(tmp_path)
    assert parse_hf_spec("hf:meta-llama/Meta-Llama-3-8B-Instruct") == (
        "meta-llama/Meta-Llama-3-8B-Instruct",
        None,
    )
    assert parse_hf_spec(f"hf:Qwen/Qwen2.5-7B-Instruct+{adapter}") == ("Qwen/Qwen2.5-7B-Instruct", adapter)
    (tmp_path / "org" / "name").mkdir(parents=True)  # a local path of that shape is a folder, checked as one
    with pytest.raises(JoshError, match="holds no config.json"):
        parse_hf_spec("hf:org/name")
    with pytest.raises(JoshError, match="nor a Hub id"):
        parse_hf_spec(f"hf:a/b/c+{adapter}")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("hf:", "names no model folder"),
        ("hf:+x", "names no model folder"),
        ("hf:{missing}", "no model folder"),
        ("hf:just-a-name", "local folders, GGUF files or Hub ids ORG/NAME"),
        ("hf:{tiny}+{missing}", "no folder"),
        ("hf:{tiny}+{tiny}", "holds no adapter_config.json"),
        ("hf:{adapter}", "it is a PEFT adapter: write hf:BASE+ADAPTER"),
        ("{tiny}", "not an hf: model"),
    ],
)
def test_bad_specs_are_one_clear_error(
    spec: str, message: str, tiny: Path, adapter: Path, tmp_path: Path
) -> None:
    spec = spec.format(tiny=tiny, adapter=adapter, missing=tmp_path / "nowhere")
    with pytest.raises(JoshError, match="(?s)" + message.replace("+", r"\+").replace(".", r"\.")):
        parse_hf_spec(spec)


def test_importing_josh_does_not_import_torch() -> None:
    code = "import sys, josh.llm, josh.benchmarks.toolwoz.benchmark, josh.cli.main; print('torch' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "False"


def test_a_missing_train_extra_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(JoshError, match=r"\[train\]"):
        _import_train_extra(needs_peft=False)


# ---------------------------------------------------------------------------------------------- tool calls


def test_hermes_tool_calls_leave_the_text_and_malformed_ones_stay() -> None:
    content, calls = parse_hermes_tool_calls(
        'Let me look. <tool_call>{"name": "search_hotel", "arguments": {"area": "centre"}}</tool_call>'
        '<tool_call>\n{"name": "book_hotel", "arguments": "{\\"people\\": 2}"}\n</tool_call>'
    )
    assert content == "Let me look."
    assert [(c.name, c.arguments, c.raw_arguments) for c in calls] == [
        ("search_hotel", {"area": "centre"}, '{"area": "centre"}'),
        ("book_hotel", {"people": 2}, '{"people": 2}'),
    ]
    assert calls[0].id.startswith("call_") and calls[0].id != calls[1].id
    assert parse_hermes_tool_calls('<tool_call>{"name": "f", "parameters": {}}</tool_call>')[1][0].name == "f"
    assert parse_hermes_tool_calls('<tool_call>{"name": "f"}</tool_call>')[1][0].arguments == {}
    for malformed in (
        '<tool_call>{"name": "f", "arguments": {"a": 1}</tool_call>',  # broken JSON
        '<tool_call>{"arguments": {}}</tool_call>',  # no name
        '<tool_call>{"name": "f", "arguments": [1]}</tool_call>',  # arguments not an object
        '<tool_call>["f"]</tool_call>',
        '<tool_call>{"name": "f", "arguments": {}}',  # never closed (cut by max_tokens)
        "no call at all",
    ):
        assert parse_hermes_tool_calls(malformed) == (malformed, []), malformed
    content, calls = parse_hermes_tool_calls(
        '<tool_call>{"name": "f", "arguments": {}}</tool_call> and <tool_call>oops</tool_call>'
    )
    assert content == "and <tool_call>oops</tool_call>" and [c.name for c in calls] == ["f"]


def test_generated_tool_calls_become_native_and_history_renders(
    model: HFChatModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = 'On it.<tool_call>{"name": "search_hotel", "arguments": {"area": "centre"}}</tool_call><|im_end|>'
    scripted = model.tokenizer(text, add_special_tokens=False)["input_ids"]

    def generate(*, input_ids, **kwargs):  # type: ignore[no-untyped-def]
        tail = torch.tensor([scripted + [model._pad_id] * 3] * input_ids.shape[0])
        return torch.cat([input_ids, tail], dim=1)

    monkeypatch.setattr(model.model, "generate", generate)
    monkeypatch.setattr(model, "prefill_alone", False)  # the GPU's way, through generate
    history = [
        *MESSAGES,
        AssistantMessage(
            content="", tool_calls=(ToolCall(id="c1", name="search_hotel", arguments={"area": "x"}),)
        ),
        ToolMessage(tool_call_id="c1", name="search_hotel", content="[]"),
    ]
    [[with_tools], [without]] = chat(
        model, {"messages": history, "tools": TOOLS, "max_tokens": 64}, {"max_tokens": 64}
    )
    assert with_tools.content == "On it." and len(with_tools.tool_calls) == 1
    assert (with_tools.tool_calls[0].name, with_tools.tool_calls[0].arguments) == (
        "search_hotel",
        {"area": "centre"},
    )
    assert (
        without.content == text.removesuffix("<|im_end|>") and not without.tool_calls
    )  # no tools: plain text
    assert with_tools.usage is not None and with_tools.usage.completion_tokens == len(
        scripted
    )  # up to the stop


# ---------------------------------------------------------------------------------------------- generation


def test_it_is_a_chat_model_with_n_choices_and_usage(model: HFChatModel) -> None:
    assert isinstance(model, ChatModel)
    [sampled, greedy] = chat(model, {"n": 3, "temperature": 1.0, "seed": 7}, {"n": 2})
    assert len(sampled) == 3 and len({reply.content for reply in sampled}) > 1  # the choices differ
    prompt = model.tokenizer.apply_chat_template(
        [{"role": m.role, "content": m.content} for m in MESSAGES], add_generation_prompt=True
    )["input_ids"]
    first = sampled[0].usage
    assert first is not None and first.prompt_tokens == len(prompt) and first.cost == 0.0
    assert 3 <= first.completion_tokens <= 3 * 8  # every choice's tokens, on the first reply
    assert all(r.usage is not None and r.usage.total_tokens == 0 for r in sampled[1:])
    assert all(r.model == model.name and r.latency_s is not None and r.latency_s > 0 for r in sampled)
    assert greedy[0].content == greedy[1].content  # greedy choices are one row, copied
    assert greedy[0].usage is not None and greedy[0].usage.completion_tokens % 2 == 0


def test_greedy_is_deterministic_and_a_seed_repeats_a_sample(model: HFChatModel) -> None:
    [a] = chat(model, {})
    [b] = chat(model, {})
    assert a[0].content == b[0].content
    [x] = chat(model, {"temperature": 1.0, "seed": 3})
    [y] = chat(model, {"temperature": 1.0, "seed": 3})
    assert x[0].content == y[0].content


def test_the_adapter_changes_the_model(model: HFChatModel, tiny: Path, adapter: Path) -> None:
    tuned = HFChatModel(f"hf:{tiny}+{adapter}")
    assert tuned.adapter_path == adapter
    ids = torch.tensor([model.tokenizer("I need a hotel in the centre.")["input_ids"]])
    with torch.inference_mode():
        base_logits = model.model(ids).logits
        tuned_logits = tuned.model(ids).logits
    assert not torch.allclose(base_logits, tuned_logits, atol=1e-3)
    [[base_reply], [tuned_reply]] = [chat(model, {"max_tokens": 24})[0], chat(tuned, {"max_tokens": 24})[0]]
    assert base_reply.content != tuned_reply.content


def test_the_papers_inference_switches(model: HFChatModel, tiny: Path, adapter: Path) -> None:
    """An unmerged adapter gives the merged one's outputs (the paper does not merge); without the generation
    prompt, the rendered prompt lacks the assistant's header (the paper's `apply_chat_template`); 4-bit
    loading on a CPU is one clear error (bitsandbytes needs CUDA)."""
    merged = HFChatModel(f"hf:{tiny}+{adapter}")
    apart = HFChatModel(f"hf:{tiny}+{adapter}", merge_adapter=False)
    assert isinstance(apart.model, peft.PeftModel) and not isinstance(merged.model, peft.PeftModel)
    assert "(not merged)" in apart.describe()
    ids = torch.tensor([model.tokenizer("I need a hotel in the centre.")["input_ids"]])
    with torch.inference_mode():
        assert torch.allclose(merged.model(ids).logits, apart.model(ids).logits, atol=1e-4)
    bare = HFChatModel(f"hf:{tiny}", generation_prompt=False)
    assert "without the generation prompt" in bare.describe()
    prompts = {}
    for name, each in (("with", model), ("without", bare)):
        job = type("Job", (), {"messages": [{"role": "user", "content": "hi"}], "tools": None, "max_tokens": 8})()
        each._prepare(job)
        prompts[name] = each.tokenizer.decode(job.prompt)
    assert prompts["with"].startswith(prompts["without"]) and prompts["with"] != prompts["without"]
    assert prompts["with"][len(prompts["without"]) :].strip().endswith("assistant")
    with pytest.raises(JoshError, match="4-bit loading needs a CUDA GPU"):
        HFChatModel(f"hf:{tiny}", load_in_4bit=True, device="cpu")


def test_a_gguf_file_is_a_base_model(tiny: Path, adapter: Path, tmp_path: Path) -> None:
    gguf = tmp_path / "models+q" / "SmolLM2.Q4_1.gguf"  # a '+' in its folder's name too
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF")
    assert parse_hf_spec(f"hf:{gguf}") == (gguf, None)
    assert parse_hf_spec(f"hf:{gguf}+{adapter}") == (gguf, adapter)
    with pytest.raises(JoshError, match="no model folder or GGUF file"):
        parse_hf_spec(f"hf:{tmp_path / 'missing.gguf'}")


def test_a_failing_batch_fails_every_caller_in_it(
    model: HFChatModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(**kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("device lost")

    monkeypatch.setattr(model.model, "forward", broken)

    async def go() -> list[object]:
        return await asyncio.gather(
            *(model.chat(MESSAGES, max_tokens=4) for _ in range(4)), return_exceptions=True
        )

    outcomes = asyncio.run(go())
    assert all(isinstance(o, FatalLLMError) and "device lost" in str(o) for o in outcomes), outcomes


def test_a_prompt_longer_than_the_context_is_fatal_for_its_caller_only(
    model: HFChatModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(model, "context_length", 60)
    long = [*MESSAGES, UserMessage(content="hotel " * 200)]

    async def go() -> list[object]:
        return await asyncio.gather(
            model.chat(long, max_tokens=4), model.chat(MESSAGES[1:], max_tokens=4), return_exceptions=True
        )

    too_long, fine = asyncio.run(go())
    assert isinstance(too_long, ContextLengthError) and "context too long" in str(too_long)
    assert isinstance(fine, list) and fine[0].usage is not None
    assert fine[0].usage.prompt_tokens + fine[0].usage.completion_tokens <= 60


# ---------------------------------------------------------------------------------------------- the CLI

DATA = pytest.mark.data


@DATA
def test_eval_runs_an_hf_model_with_its_adapter(tiny: Path, adapter: Path, tmp_path: Path) -> None:
    spec = f"hf:{tiny}+{adapter}"
    out = tmp_path / "run.jsonl"
    proc = run_josh(
        "eval", "toolwoz", "--model", spec, "--user-model", spec, "--agent", "fc", "--limit", "2",
        "--max-turns", "3", "--max-tokens", "8", "--user-max-tokens", "8", "--concurrency", "8",
        "--out", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "DRY RUN" not in proc.stderr
    assert "customer: " + spec + " (the agent's instance)" in proc.stderr
    runs = records(out)
    assert len(runs) == 2 and all(r["status"] == "success" for r in runs)
    calls = [c for r in runs for c in r["model_calls"]]
    assert {c["role"] for c in calls} == {"agent", "user"} and all(c["cost"] == 0.0 for c in calls)
    assert all(c["prompt_tokens"] > 0 and 0 < c["completion_tokens"] <= 8 for c in calls)
    config = json.loads((tmp_path / "run.config.json").read_text())
    assert config["model"] == spec and config["user-model"] == spec and config["base-url"] is None


@DATA
def test_a_real_agent_can_face_the_scripted_customer(tiny: Path, tmp_path: Path) -> None:
    """--user-model scripted beside a real agent: the mock's customer in-process, no OpenAI key."""
    out = tmp_path / "run.jsonl"
    proc = run_josh(
        "eval", "toolwoz", "--model", f"hf:{tiny}", "--user-model", "scripted", "--agent", "fc", "--limit", "1",
        "--max-turns", "2", "--max-tokens", "8", "--out", str(out), env={"OPENAI_API_KEY": ""},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    [run] = records(out)
    assert run["status"] == "success"
    user_calls = [c for c in run["model_calls"] if c["role"] == "user"]
    assert user_calls and all(
        c["error"] is None and c["prompt_tokens"] > 0 for c in user_calls
    )  # no key: not OpenAI


@DATA
def test_harvest_samples_n_choices_from_an_hf_model(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "trees.jsonl"
    proc = run_josh(
        "harvest", "toolwoz", "--model", f"hf:{tiny}", "--user", "replay", "--agent", "fc", "--limit", "1",
        "--beam", "2", "--max-steps", "2", "--max-tokens", "8", "--out", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    [tree] = records(out)
    assert tree["status"] == "success" and len(tree["nodes"]) >= 2
    agent_calls = [c for c in tree["model_calls"] if c["role"] == "agent"]
    assert any(c["n"] == 2 for c in agent_calls)  # sibling leaves asked for their first turns together


def test_it_tells_its_context_and_counts_a_prompt_with_its_template(model: HFChatModel) -> None:
    window = asyncio.run(model.context_window())
    assert window.tokens == model.context_length == 8192 and "max_position_embeddings" in window.source
    size = asyncio.run(model.prompt_size(MESSAGES, TOOLS))
    [reply] = asyncio.run(model.chat(MESSAGES, tools=TOOLS, max_tokens=1))
    assert reply.usage is not None and size.tokens == reply.usage.prompt_tokens and size.exact


@DATA
def test_a_context_too_small_for_the_first_prompt_stops_the_run_before_work(tmp_path: Path) -> None:
    """A 1,024-token model: the function-calling agent's system prompt and tool schemas are about 2,900 of
    the tiny model's tokens."""
    small = build_tiny_model(tmp_path / "small", context=1024)
    out = tmp_path / "run.jsonl"
    proc = run_josh(
        "eval", "toolwoz", "--model", f"hf:{small}", "--user", "replay", "--agent", "fc", "--limit", "1",
        "--out", str(out),
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    [line] = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert f"the agent's model (hf:{small}) has a 1,024-token context (its max_position_embeddings" in line
    prompt = int(line.split("its first prompt is ")[1].split(" tokens")[0].replace(",", ""))
    assert 2_000 < prompt < 4_000 and "counted by the model's tokenizer and chat template" in line
    assert line.endswith("use a model with a longer context") and not out.exists()


@DATA
def test_a_template_that_drops_the_tools_is_said_before_work(tmp_path: Path) -> None:
    """SmolLM2's chat template ignores `tools`: a function-calling agent never saw its tools and the run
    "worked" without a word. The tiny model with such a template gets one warning; with its own (which
    renders tools), none."""
    import json as json_module

    for name, drops in (("renders", False), ("drops", True)):
        folder = build_tiny_model(tmp_path / name)
        if drops:
            config = folder / "tokenizer_config.json"
            data = json_module.loads(config.read_text())
            data["chat_template"] = (
                "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
            )
            config.write_text(json_module.dumps(data))
            (folder / "chat_template.jinja").unlink(missing_ok=True)
        proc = run_josh(
            "eval", "toolwoz", "--model", f"hf:{folder}", "--user", "replay", "--agent", "fc", "--limit", "1",
            "--max-turns", "2", "--max-tokens", "4", "--out", str(tmp_path / f"{name}.jsonl"),
        )  # fmt: skip
        assert proc.returncode in (0, 3), proc.stderr
        said = " ".join(proc.stderr.split())
        assert ("leaves out the 8 tool schemas it is given" in said) == drops, said


@DATA
def test_hf_models_take_no_base_url_and_help_names_them(tiny: Path, tmp_path: Path) -> None:
    both = run_josh(
        "eval", "toolwoz", "--model", f"hf:{tiny}", "--base-url", "http://x/v1", "--user", "replay"
    )
    assert both.returncode == 1 and "takes no --base-url" in both.stderr and "Traceback" not in both.stderr
    missing = run_josh(
        "eval",
        "toolwoz",
        "--model",
        f"hf:{tmp_path}/none",
        "--user",
        "replay",
        "--out",
        str(tmp_path / "r.jsonl"),
    )
    assert (
        missing.returncode == 1 and "no model folder" in missing.stderr and "Traceback" not in missing.stderr
    )
    helped = run_josh("eval", "toolwoz", "--help", env={"COLUMNS": "200"})
    assert "hf:PATH[+ADAPTER]" in helped.stdout and "--hf-batch-size" in helped.stdout
