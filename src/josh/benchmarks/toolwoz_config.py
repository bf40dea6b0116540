"""Configuration of a ToolWOZ evaluation. Every option is documented once, here; the CLI shows these texts."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from josh.envs.toolwoz.env import SPLIT_CHOICES

Split = Literal["test", "full_test", "val", "train", "all"]
assert set(SPLIT_CHOICES) == {"test", "full_test", "val", "train", "all"}


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AgentConfig(_Config):
    strategy: Literal["react", "fc"] = Field(
        "react", description="ReAct text protocol, or native function calling."
    )
    model: str | None = Field(
        None, description="Agent model name; none runs the scripted mock endpoint (dry run)."
    )
    base_url: str | None = Field(None, description="OpenAI-compatible base URL (default: OpenAI).")
    api_key_env: str = Field(
        "OPENAI_API_KEY", description="Environment variable holding the agent's API key."
    )
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="Agent sampling temperature (the paper: 0).")
    max_tokens: int | None = Field(256, ge=1, description="Max tokens per agent model call (the paper: 256).")
    strict_errors: bool = Field(
        False,
        description="End the conversation with reward 0 on tool-call arguments that are not a JSON object, as the "
        "reference's crash does (default: the agent is shown an error result and goes on).",
    )


PAPER_USER_MODEL = "gpt-4o"
SCRIPTED = "scripted"  # --model scripted: the mock's policies in-process, without HTTP


class UserConfig(_Config):
    mode: Literal["goal", "guide", "replay"] = Field(
        "goal", description="User simulator: goal, guide or replay."
    )
    model: str | None = Field(
        None, description=f"User-simulator model (default: {PAPER_USER_MODEL}, the paper's)."
    )
    base_url: str | None = Field(None, description="User-simulator base URL (default: OpenAI).")
    api_key_env: str | None = Field(
        None, description="Environment variable of the user's key (default: agent's)."
    )
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="User sampling temperature (the paper: 0).")
    max_tokens: int | None = Field(256, ge=1, description="Max tokens per user model call (the paper: 256).")


class MockSettings(_Config):
    """The scripted mock endpoint used for dry runs (no real model)."""

    mistake_rate: float = Field(0.0, ge=0.0, le=1.0, description="Oracle agent: chance a goal call is wrong.")
    latency_s: float = Field(0.0, ge=0.0, description="Latency added to every mock response.")
    error_rate: float = Field(0.0, ge=0.0, le=1.0, description="Share of mock responses that are HTTP 500.")
    hang_rate: float = Field(
        0.0, ge=0.0, le=1.0, description="Share of mock responses held past the timeout."
    )
    malformed_rate: float = Field(
        0.0, ge=0.0, le=1.0, description="Share of agent tool calls with broken JSON."
    )
    empty_rate: float = Field(0.0, ge=0.0, le=1.0, description="Share of empty mock replies.")
    seed: int = Field(0, description="Seed of the injected faults.")


class ToolWOZEvalConfig(_Config):
    """A whole `josh eval toolwoz` run. `result_fields()` is what the config hash (and resume) checks."""

    agent: AgentConfig = Field(default_factory=AgentConfig)
    user: UserConfig = Field(default_factory=UserConfig)
    split: Split = Field(
        "test", description="Task split: test (450, the paper's), full_test, val, train or all."
    )
    task_ids: list[str] | None = Field(None, description="Run only these task ids (after the split).")
    limit: int | None = Field(None, ge=1, description="Run only the first N tasks of the split.")
    trials: int = Field(1, ge=1, description="Conversations per task (pass^k needs k or more).")
    max_turns: int = Field(15, ge=1, description="Messages per conversation, both sides (the paper: 15).")
    seed: int = Field(42, description="API seed of trial 0 (trial t uses seed + t); the paper: 42.")
    concurrency: int = Field(
        8, ge=1, description="Conversations at once (and the per-endpoint request limit)."
    )
    timeout_s: float = Field(120.0, gt=0, description="Timeout of one model request, in seconds.")
    max_retries: int = Field(5, ge=0, description="Retries of a failed model request (429, 5xx, timeouts).")
    cache_dir: str | None = Field(None, description="Cache model responses here, so a rerun is free.")
    mock: MockSettings | None = Field(None, description="Dry run against the scripted mock endpoint.")

    @model_validator(mode="after")
    def _dry_run_when_no_model(self) -> ToolWOZEvalConfig:
        if self.dry_run and self.mock is None:
            self.mock = MockSettings()
        if self.user.model is None and self.user.mode != "replay":
            if self.agent.model == SCRIPTED:
                self.user.model = SCRIPTED
            elif self.agent.model is not None:
                self.user.model = PAPER_USER_MODEL
        return self

    @property
    def dry_run(self) -> bool:
        """No real model: the scripted mock, over HTTP (no --model) or in-process (--model scripted)."""
        return self.agent.model in (None, SCRIPTED)

    def result_fields(self) -> dict[str, Any]:
        """The options that change a conversation's result. Not which tasks or how many trials run (a resumed
        run may extend them), nor concurrency, timeouts, retries or the cache."""
        return self.model_dump(
            mode="json",
            exclude={
                "limit": True,
                "task_ids": True,
                "trials": True,
                "concurrency": True,
                "timeout_s": True,
                "max_retries": True,
                "cache_dir": True,
                "mock": {"latency_s", "error_rate", "hang_rate", "seed"},  # infrastructure faults
            },
        )

    def config_hash(self) -> str:
        text = json.dumps(self.result_fields(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]
