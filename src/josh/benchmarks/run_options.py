"""The run options every benchmark shares. Every option is declared once, here, with its help text.

One vocabulary: a field's name is its command-line flag (`max_tokens` is `--max-tokens`) and its key in a
YAML config file (`max_tokens: 256` or `max-tokens: 256`), so `RUN.config.json`, which a run writes beside its
results, can be fed back with `--config`. The CLI builds its options from these fields (see
`josh.cli.options`), so `--help`, YAML and saved configs cannot drift apart. `RunOptions` holds what every
command that runs conversations shares (endpoints, protocol, tasks, throughput); a benchmark's folder adds what
only its commands need (`josh.benchmarks.toolwoz.config`, `josh.benchmarks.tau2.config`).

The defaults and the choices of `split` and `prompts` are the paper's (ToolWOZ's, the first benchmark); a
benchmark whose differ re-declares those fields in its own options (tau2 does), which keeps each option's
place in `--help` and in `RUN.config.json`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator, model_validator

from josh.envs.toolwoz.env import SPLIT_CHOICES
from josh.llm.hf.spec import is_hf_spec

Split = Literal["test", "full_test", "val", "train", "paper_train", "all"]
assert set(SPLIT_CHOICES) == set(Split.__args__)  # type: ignore[attr-defined]

PAPER_USER_MODEL = "gpt-4o"
SCRIPTED = "scripted"  # --model scripted: the mock's policies in-process, without HTTP

# Help panels of `--help`, in the order they appear.
AGENT, CUSTOMER, PROTOCOL, TASKS, THROUGHPUT, MOCK = (
    "Agent",
    "Customer (user simulator)",
    "Protocol",
    "Tasks",
    "Throughput and robustness",
    "Dry run (scripted mock endpoint)",
)


def _opt(default: Any, help: str, panel: str, *, flag: str | None = None, **constraints: Any) -> Any:
    """A documented option: `help` feeds `--help`; `flag` overrides the flag spelling (e.g. a bool pair)."""
    extra: dict[str, Any] = {"panel": panel}
    if flag:
        extra["flag"] = flag
    return Field(default, description=help, json_schema_extra=extra, **constraints)


class MockOptions(BaseModel):
    """How josh's scripted mock endpoint behaves (dry runs and `josh serve-mock`)."""

    model_config = ConfigDict(extra="forbid")

    mock_mistake_rate: float = _opt(
        0.0, "Share of the oracle agent's goal calls made with a wrong argument.", MOCK, ge=0.0, le=1.0
    )
    mock_error_rate: float = _opt(0.0, "Share of mock responses that are HTTP 500.", MOCK, ge=0.0, le=1.0)
    mock_hang_rate: float = _opt(
        0.0, "Share of mock responses held past the request timeout.", MOCK, ge=0.0, le=1.0
    )
    mock_malformed_rate: float = _opt(
        0.0, "Share of agent tool calls sent with broken JSON arguments.", MOCK, ge=0.0, le=1.0
    )
    mock_empty_rate: float = _opt(0.0, "Share of mock replies that are empty.", MOCK, ge=0.0, le=1.0)
    mock_latency: float = _opt(
        0.0, "Seconds from each mock request to its answer (the mock's own work included).", MOCK, ge=0.0
    )
    mock_hang_seconds: float = _opt(30.0, "Seconds a hung mock response is held.", MOCK, ge=0.0)
    mock_seed: int = _opt(0, "Seed of the mock's injected faults.", MOCK)


class RunOptions(MockOptions):
    """Options shared by every command that runs conversations, on any benchmark (ToolWOZ's defaults)."""

    PANELS: ClassVar[tuple[str, ...]] = (AGENT, CUSTOMER, PROTOCOL, TASKS, THROUGHPUT, MOCK)
    # The customer's model of a real run when --user-model is not given: the benchmark's own setting.
    DEFAULT_USER_MODEL: ClassVar[str] = PAPER_USER_MODEL

    # -- the agent ---------------------------------------------------------------------------------------
    model: str | None = _opt(
        None,
        "Agent model name at --base-url. Omitted: a DRY RUN on josh's scripted mock endpoint over HTTP (an "
        "oracle agent and a scripted customer, not language models); with --base-url and no --model, the "
        "endpoint's only model. 'scripted': the same scripted policies in-process, without HTTP. "
        "'hf:PATH[+ADAPTER]': a local Hugging Face model folder (plus a PEFT adapter folder), run in-process "
        "with transformers (the [train] extra), concurrent calls batched; no --base-url, no key.",
        AGENT,
    )
    base_url: list[str] | None = _opt(
        None, "OpenAI-compatible base URL of the agent's model, e.g. http://127.0.0.1:8000/v1 (default: OpenAI). "
        "Repeatable: several servers of the same model share the work; each tree (eval: conversation) stays "
        "on one of them while it answers, new ones go to the least loaded, and a dead one's work moves to the "
        "others.",
        AGENT,
    )  # fmt: skip
    api_key_env: str = _opt(
        "OPENAI_API_KEY", "Environment variable holding the agent endpoint's API key (a local server needs none).",
        AGENT,
    )  # fmt: skip
    agent: Literal["react", "fc"] = _opt(
        "react", "The paper's agents: ReAct text protocol (PLAN / APICALL / SPEAK) or native function calling.",
        AGENT,
    )  # fmt: skip
    temperature: float = _opt(0.0, "Agent sampling temperature (the paper: 0).", AGENT, ge=0.0, le=2.0)
    max_tokens: int = _opt(256, "Max tokens of one agent model call (the paper: 256).", AGENT, ge=1)
    price_in: float | None = _opt(
        None, "Agent model's price in USD per 1M prompt tokens, for models josh does not know.", AGENT, ge=0.0
    )
    price_out: float | None = _opt(
        None, "Agent model's price in USD per 1M completion tokens.", AGENT, ge=0.0
    )

    # -- the customer ------------------------------------------------------------------------------------
    user: Literal["goal", "guide", "replay"] = _opt(
        "goal",
        "Customer: 'goal' is told the task's goal (the paper's default); 'guide' is coached from the original "
        "MultiWOZ dialogue; 'replay' replays the original customer turns (no model).",
        CUSTOMER,
    )
    user_model: str | None = _opt(
        None, f"Customer model (default: {PAPER_USER_MODEL} on OpenAI, the paper's; 'scripted' in a dry run); "
        "'hf:PATH[+ADAPTER]' runs a local model in-process (the agent's instance when it is the same spec).",
        CUSTOMER,
    )  # fmt: skip
    user_base_url: list[str] | None = _opt(
        None, "Customer model's base URL (default: OpenAI); repeatable, as --base-url.", CUSTOMER
    )
    user_api_key_env: str | None = _opt(
        None, "Environment variable holding the customer endpoint's key (default: --api-key-env's).", CUSTOMER
    )
    user_temperature: float = _opt(
        0.0, "Customer sampling temperature (the paper: 0).", CUSTOMER, ge=0.0, le=2.0
    )
    user_max_tokens: int = _opt(
        256, "Max tokens of one customer model call (the paper: 256).", CUSTOMER, ge=1
    )
    user_price_in: float | None = _opt(
        None, "Customer model's price in USD per 1M prompt tokens, for models josh does not know.", CUSTOMER,
        ge=0.0,
    )  # fmt: skip
    user_price_out: float | None = _opt(
        None, "Customer model's price in USD per 1M completion tokens.", CUSTOMER, ge=0.0
    )

    # -- the protocol ------------------------------------------------------------------------------------
    prompts: Literal["paper", "josh"] = _opt(
        "paper",
        "Prompts of agents and customer: 'paper' is the paper's own text, read at run time from the official "
        "josh-train 0.1.4 wheel (the benchmark's protocol); 'josh' is josh's own wording of the same content.",
        PROTOCOL,
    )
    strict_errors: bool = _opt(
        True,
        "--strict-errors (the paper's protocol): where the reference implementation crashes on a model's "
        "output, the conversation ends with reward 0 (termination agent_error): tool-call arguments that are "
        "not a JSON object or are empty, tool names that do not split in two on '_', an empty tool_calls "
        "list, a taxi or hospital search that finds something, ReAct APICALL parameters that are not an "
        "object or names that are not text. --lenient-errors: the agent is shown an error result instead and "
        "the conversation goes on.",
        PROTOCOL,
        flag="--strict-errors/--lenient-errors",
    )
    parse_text_tool_calls: bool = _opt(
        False,
        "Function calling only: run a tool call the model wrote as JSON text (fenced, bare, <tool_call>...) "
        "instead of sending it to the customer as speech, which is what the paper does (each such message is "
        "noted and counted either way).",
        PROTOCOL,
    )

    # -- which tasks -------------------------------------------------------------------------------------
    split: Split = _opt(
        "test",
        "Task split: test (450, the paper's), full_test (805), val (793), train (6,251), paper_train (the 926 "
        "train tasks the paper harvested) or all.",
        TASKS,
    )
    task: list[str] | None = _opt(None, "Run only this task id (repeatable; must be in --split).", TASKS)
    limit: int | None = _opt(None, "Run only the first N tasks of the split.", TASKS, ge=1)
    trials: int = _opt(1, "Conversations (or trees) per task; trial t sends seed + t.", TASKS, ge=1)
    seed: int = _opt(42, "API seed of trial 0; trial t sends seed + t (the paper: 42).", TASKS)

    # -- throughput and robustness -----------------------------------------------------------------------
    concurrency: int = _opt(
        8,
        "Conversations (harvest: trees) at once; also the limit of requests in flight per endpoint (harvest: "
        "times --beam, one per leaf).",
        THROUGHPUT,
        ge=1,
    )
    timeout: float = _opt(120.0, "Timeout of one model request, in seconds.", THROUGHPUT, gt=0)
    max_retries: int = _opt(
        5, "Retries of a failed model request (HTTP 429, 5xx, timeouts), with backoff.", THROUGHPUT, ge=0
    )
    max_outage: float = _opt(
        300.0,
        "Seconds an endpoint may stay unreachable before the run stops (it pauses and probes meanwhile; "
        "--resume continues later).",
        THROUGHPUT,
        gt=0,
    )
    hf_batch_size: int = _opt(
        32,
        "hf: models: most rows of one batched generation (a sampled call with n choices is n rows); concurrent "
        "calls are gathered into batches of up to this many. 1 turns batching off.",
        THROUGHPUT,
        ge=1,
    )
    hf_4bit: bool = _opt(
        False,
        "hf: models: load the base model in 4 bits (NF4, double quantisation, bfloat16 compute), as the "
        "paper's inference does; needs a CUDA GPU and bitsandbytes. Default: the full precision (bfloat16 on a "
        "GPU, float32 on a CPU).",
        AGENT,
    )
    hf_merge_adapter: bool = _opt(
        True,
        "hf: models with an adapter: merge it into the weights (faster). --no-hf-merge-adapter keeps it apart, "
        "as the paper's inference does.",
        AGENT,
    )
    hf_generation_prompt: bool = _opt(
        True,
        "hf: models: end the rendered chat template with the assistant's header (add_generation_prompt). "
        "--no-hf-generation-prompt renders it without, as the paper's inference does (the model writes the "
        "header itself).",
        AGENT,
    )
    ray: str | None = _opt(
        None,
        "Spread the trees (eval: conversations) over a Ray cluster, one Ray task each, --concurrency at once: "
        "'local' starts a cluster on this machine for the run; an address joins a running one (ray://HEAD:10001, "
        "or 'auto' on one of its nodes). Every worker calls the endpoints itself: on a real cluster --base-url "
        "must be reachable from the workers (a dry run's mock endpoint listens on 127.0.0.1, for a local "
        "cluster). Needs the [ray] extra: pip install 'josh-toolkit[ray]'.",
        THROUGHPUT,
    )
    cache_dir: str | None = _opt(
        None, "Cache model responses in this folder: an identical rerun costs nothing and needs no endpoint.",
        THROUGHPUT,
    )  # fmt: skip

    @field_validator("task", mode="before")
    @classmethod
    def _one_task_is_a_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("base_url", "user_base_url", mode="before")
    @classmethod
    def _one_url_is_a_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("base_url", "user_base_url")
    @classmethod
    def _urls_are_distinct(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            return None
        if value is not None and len({url.rstrip("/") for url in value}) != len(value):
            raise ValueError("the same URL is given twice")  # `.../v1/` is `.../v1`: one server
        return value

    @field_serializer("base_url", "user_base_url")
    def _one_url_is_written_alone(self, value: list[str] | None) -> str | list[str] | None:
        """One URL is saved as the string it always was (run files, `RUN.config.json`, the config hash)."""
        return value[0] if value is not None and len(value) == 1 else value

    @model_validator(mode="after")
    def _mock_options_need_a_dry_run(self) -> RunOptions:
        mock_set = sorted(name for name in self.model_fields_set if name.startswith("mock_"))
        if mock_set and not self.dry_run:
            flags = ", ".join("--" + name.replace("_", "-") for name in mock_set)
            raise ValueError(f"{flags} only apply to a dry run (no --model, or --model scripted)")
        return self

    @model_validator(mode="after")
    def _hf_models_have_no_url(self) -> RunOptions:
        for model, url, flag in (
            (self.model, self.base_url, "--model"),
            (self.user_model, self.user_base_url, "--user-model"),
        ):
            if is_hf_spec(model) and url is not None:
                url_flag = "--base-url" if flag == "--model" else "--user-base-url"
                raise ValueError(
                    f"{flag} {model} runs the model in-process and takes no {url_flag}: drop {url_flag} (or "
                    f"serve the model, e.g. with vLLM, and pass {flag} NAME {url_flag} URL)"
                )
        return self

    @property
    def dry_run(self) -> bool:
        """No real model: the scripted mock, over HTTP (no --model) or in-process (--model scripted)."""
        return self.model in (None, SCRIPTED)

    @property
    def agent_url(self) -> str | None:
        """The agent's first base URL (None: the default, OpenAI)."""
        return self.base_url[0] if self.base_url else None

    @property
    def user_url(self) -> str | None:
        """The customer's first base URL (None: the default, OpenAI)."""
        return self.user_base_url[0] if self.user_base_url else None

    @property
    def requests_in_flight(self) -> int:
        """Most model requests in flight per endpoint: one per conversation running at once."""
        return self.concurrency

    @property
    def customer_model(self) -> str | None:
        """The customer's model name as it will be used (None for the replayed customer)."""
        if self.user == "replay":
            return None
        if self.user_model is not None:
            return self.user_model
        return SCRIPTED if self.dry_run else self.DEFAULT_USER_MODEL

    # Options that do not change a conversation's result: which tasks and how many trials run (a resumed
    # run may extend them), throughput, keys, prices, the cache, and injected infrastructure faults.
    NOT_HASHED: ClassVar[frozenset[str]] = frozenset({
        "task", "limit", "concurrency", "ray", "hf_batch_size", "timeout", "max_retries", "max_outage", "cache_dir",
        "api_key_env", "user_api_key_env", "price_in", "price_out", "user_price_in", "user_price_out", "mock_error_rate",
        "mock_hang_rate", "mock_latency", "mock_hang_seconds", "mock_seed",
    })  # fmt: skip

    # Options added after run files were written: hashed only when set away from their default, so a run
    # begun before they existed keeps its hash (and --resume goes on) while they hold their default.
    HASHED_WHEN_SET: ClassVar[frozenset[str]] = frozenset({
        "finish", "user_tool_rounds", "hf_4bit", "hf_merge_adapter", "hf_generation_prompt",
    })  # fmt: skip

    def result_fields(self) -> dict[str, Any]:
        """The options that change a conversation's result: what the config hash (and resume) checks."""
        fields = self.model_dump(mode="json", exclude=set(self.NOT_HASHED) | {"trials"})
        for name in ("base_url", "user_base_url"):  # servers of one model: the first names them (see README)
            if isinstance(fields.get(name), list):
                fields[name] = fields[name][0]
        for name in self.HASHED_WHEN_SET & set(fields):
            if fields[name] == type(self).model_fields[name].default:
                del fields[name]
        return fields

    def skip_reason(self, env: Any, task_id: str) -> str | None:
        """Why this run cannot use a task (None: it can); such tasks are left out of the split. Every task
        of a benchmark can be evaluated; a harvest needs goals to reward (see the harvest configs)."""
        return None

    def config_hash(self) -> str:
        text = json.dumps(self.result_fields(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

