"""The models of a run, whatever the benchmark: the agent's and the customer's endpoints (an OpenAI-compatible
server, an in-process `hf:` model, or josh's scripted mock for a dry run), the checks before any work (keys,
the endpoint's only model, the preflight), and `Endpoints`, what the run loops and the commands pass around.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from josh.benchmarks.run_options import SCRIPTED, MockOptions, RunOptions
from josh.errors import JoshError
from josh.llm import EndpointPool, OpenAIChatModel, ResponseCache, RetryPolicy
from josh.llm.base import ChatModel, LLMError, UnreachableError
from josh.llm.breaker import EndpointBreaker
from josh.llm.hf import HFChatModel, is_hf_spec, parse_hf_spec
from josh.mock import MockConfig, MockScript, MockServer, toolwoz_script
from josh.mock.scripted_backend import scripted_model

MOCK_AGENT_MODEL = "josh-mock-agent"
MOCK_USER_MODEL = "josh-mock-user"
OPENAI_URL = "https://api.openai.com/v1"


def _is_openai(base_url: str | None) -> bool:
    url = base_url or os.environ.get("OPENAI_BASE_URL") or OPENAI_URL
    return "api.openai.com" in url


def _key(env_name: str | None) -> str | None:
    if not env_name:
        return None
    return os.environ.get(env_name) or None


def check_keys(config: RunOptions) -> None:
    """Before any work: a key variable the user named must be set, and a model on OpenAI needs a key (an
    in-process `hf:` model needs none)."""
    roles = [("agent", "--api-key-env", config.api_key_env, "api_key_env", config.agent_url)]
    if config.user != "replay":
        user_env = config.user_api_key_env or config.api_key_env
        roles.append(("customer", "--user-api-key-env", user_env, "user_api_key_env", config.user_url))
    for role, flag, env_name, field, base_url in roles:
        if role == "agent" and (config.dry_run or is_hf_spec(config.model)):
            continue
        if role == "customer" and (config.customer_model == SCRIPTED or is_hf_spec(config.customer_model)):
            continue
        named = field in config.model_fields_set
        if named and not os.environ.get(env_name):
            raise JoshError(f"{flag} names the environment variable {env_name}, which is not set")
        if _is_openai(base_url) and not os.environ.get(env_name):
            model = config.model if role == "agent" else config.customer_model
            raise JoshError(
                f"the {role} model {model} is on OpenAI and needs a key: set {env_name} (or name another "
                f"variable with {flag}); for a local server pass its --{'user-' if role == 'customer' else ''}base-url"
            )


async def only_model(base_url: str, api_key: str | None, flag: str) -> str:
    """The one model an endpoint serves (`GET /models`), for `--base-url` without `--model`."""
    probe = OpenAIChatModel("?", base_url=base_url, api_key=api_key, retry=RetryPolicy(max_attempts=3))
    try:
        models = await probe.list_models()
    except UnreachableError as exc:  # naming a model would not help
        raise JoshError(str(exc)) from None
    except LLMError as exc:
        raise JoshError(f"cannot list the models of {base_url} to pick one: {exc}; pass {flag}") from None
    finally:
        await probe.aclose()
    if len(models) == 1:
        return models[0]
    if not models:
        raise JoshError(f"{base_url} lists no model; pass {flag}")
    listed = ", ".join(models[:10]) + (", ..." if len(models) > 10 else "")
    raise JoshError(f"{base_url} serves {len(models)} models ({listed}); choose one with {flag}")


async def discover_models(config: RunOptions) -> dict[str, str]:
    """Options to add when a base URL was given without its model: the endpoint's only model."""
    found = {}
    if config.model is None and config.agent_url:
        found["model"] = await only_model(config.agent_url, _key(config.api_key_env), "--model")
    if config.user != "replay" and config.user_model is None and config.user_url:
        key = _key(config.user_api_key_env or config.api_key_env)
        found["user_model"] = await only_model(config.user_url, key, "--user-model")
    return found


def _price(price_in: float | None, price_out: float | None) -> tuple[float, float] | None:
    if price_in is None and price_out is None:
        return None
    return (price_in or 0.0, price_out or 0.0)


@dataclass
class Endpoints:
    """The models of a run (the agent's, the user's) and the mock server behind a dry run, if any."""

    agent: ChatModel
    user: ChatModel | None
    mock: MockServer | None = None

    def adaptations(self) -> list[str]:
        """What the models changed to suit their servers (e.g. llama.cpp's message order), by role."""
        roles = [("agent", self.agent)]
        if self.user is not None and self.user is not self.agent:
            roles.append(("customer", self.user))
        return [f"{role}: {line}" for role, model in roles for line in getattr(model, "adaptations", [])]

    def in_process(self) -> list[str]:
        """One line per in-process (`hf:`) model: what it is and where it runs, by role."""
        roles = [("agent", self.agent)]
        if self.user is not None:
            roles.append(("customer", self.user))
        lines = []
        for role, model in roles:
            if isinstance(model, HFChatModel):
                shared = " (the agent's instance)" if role == "customer" and model is self.agent else ""
                lines.append(f"{role}: {model.name}{shared}: {model.describe()}")
        return lines

    def calls_per_endpoint(self) -> dict[str, dict[str, int]]:
        """By role, the calls each server of a model with several `--base-url` answered in this session."""
        roles = [("agent", self.agent)]
        if self.user is not None and self.user is not self.agent:
            roles.append(("customer", self.user))
        return {role: dict(model.calls) for role, model in roles if isinstance(model, EndpointPool)}

    def add_calls(self, per_endpoint: dict[str, dict[str, int]]) -> None:
        """Count calls answered elsewhere (a Ray worker's share of the run) in `calls_per_endpoint`."""
        roles = {"agent": self.agent, "customer": self.user}
        for role, calls in per_endpoint.items():
            model = roles.get(role)
            if isinstance(model, EndpointPool):
                for url, n in calls.items():
                    model.calls[url] = model.calls.get(url, 0) + n

    async def aclose(self) -> None:
        await self.agent.aclose()
        if self.user is not None and self.user is not self.agent:
            await self.user.aclose()
        if self.mock is not None:
            self.mock.stop()


def mock_config(config: MockOptions) -> MockConfig:
    """The scripted mock's behaviour from the `--mock-*` options."""
    return MockConfig(
        mistake_rate=config.mock_mistake_rate,
        latency_s=config.mock_latency,
        error_rate=config.mock_error_rate,
        hang_rate=config.mock_hang_rate,
        malformed_rate=config.mock_malformed_rate,
        empty_rate=config.mock_empty_rate,
        hang_s=config.mock_hang_seconds,
        seed=config.mock_seed,
    )


def open_endpoints(
    config: RunOptions, env: Any, *, script: Callable[[Any], MockScript] = toolwoz_script
) -> Endpoints:
    """Create the agent and user models; start the in-process mock endpoint for a dry run, playing `env`'s
    tasks (`script` says what it plays on each: ToolWOZ's by default).

    The models of one endpoint share a circuit breaker: when the endpoint stops answering, every request
    waits while it is probed, and the run stops (`EndpointDownError`) if it stays down past `max_outage`.
    A model with several base URLs is an `EndpointPool`: each session on one server, a dead server's work
    moved to the live ones, and the run stopped only when all are down past `max_outage`.
    An `hf:PATH[+ADAPTER]` model is loaded in-process (free, no key, no breaker, no response cache); agent
    and customer naming the same folders share one instance, so their calls batch together.
    """
    retry = RetryPolicy(max_attempts=config.max_retries + 1)
    cache = ResponseCache(Path(config.cache_dir) / "responses.sqlite") if config.cache_dir else None
    common = {
        "timeout": config.timeout,
        "max_concurrency": config.requests_in_flight,
        "retry": retry,
        "cache": cache,
    }
    breakers: dict[str | None, EndpointBreaker] = {}

    def endpoint(base_url: str | None, api_key: str | None) -> dict[str, Any]:
        breaker = breakers.setdefault(base_url, EndpointBreaker(max_outage_s=config.max_outage))
        return {**common, "base_url": base_url, "api_key": api_key, "breaker": breaker}

    def served(
        model: str, urls: list[str] | None, api_key: str | None, price: tuple[float, float] | None
    ) -> ChatModel:
        """The model at its URL, or a pool over its URLs when there are several (see `EndpointPool`)."""
        if not urls or len(urls) == 1:
            url = urls[0] if urls else None
            return OpenAIChatModel(model, price_override=price, **endpoint(url, api_key))
        return EndpointPool(
            [OpenAIChatModel(model, price_override=price, **endpoint(url, api_key)) for url in urls]
        )

    customer = config.user != "replay"
    if config.model == SCRIPTED:
        scripted = scripted_model(env, mock_config(config), script=script)
        return Endpoints(scripted, scripted if customer else None)
    if config.dry_run:
        mock = MockServer(env, mock_config(config), script=script).start()
        agent = OpenAIChatModel(MOCK_AGENT_MODEL, **endpoint(mock.base_url, None))
        user = OpenAIChatModel(MOCK_USER_MODEL, **endpoint(mock.base_url, None)) if customer else None
        return Endpoints(agent, user, mock)
    assert config.model is not None
    local: dict[tuple[Path | str, Path | None], HFChatModel] = {}

    def in_process(spec: str) -> HFChatModel:
        base, adapter = parse_hf_spec(spec)
        key = (base.resolve() if isinstance(base, Path) else base, adapter.resolve() if adapter else None)
        if key not in local:
            local[key] = HFChatModel(
                spec,
                max_batch_size=config.hf_batch_size,
                load_in_4bit=config.hf_4bit,
                merge_adapter=config.hf_merge_adapter,
                generation_prompt=config.hf_generation_prompt,
            )
        return local[key]

    agent_key = _key(config.api_key_env)
    agent_price = _price(config.price_in, config.price_out)
    agent: ChatModel
    if is_hf_spec(config.model):
        agent = in_process(config.model)
    else:
        agent = served(config.model, config.base_url, agent_key, agent_price)
    if not customer:
        return Endpoints(agent, None)
    user_model = config.customer_model
    assert user_model is not None
    if is_hf_spec(user_model):
        return Endpoints(agent, in_process(user_model))
    if user_model == SCRIPTED:  # the mock's scripted customer, in-process, beside a real agent
        return Endpoints(agent, scripted_model(env, mock_config(config), script=script))
    user_key = _key(config.user_api_key_env or config.api_key_env)
    user_price = _price(config.user_price_in, config.user_price_out)
    if (user_model, config.user_base_url, user_key, user_price) == (
        config.model, config.base_url, agent_key, agent_price
    ):  # fmt: skip
        return Endpoints(agent, agent)
    return Endpoints(agent, served(user_model, config.user_base_url, user_key, user_price))


async def preflight(endpoints: Endpoints) -> None:
    """Fail fast, with one clear message, on an unreachable endpoint or a rejected key."""
    checks = [("agent", endpoints.agent)]
    if endpoints.user is not None and endpoints.user is not endpoints.agent:
        checks.append(("user simulator", endpoints.user))
    for role, model in checks:
        try:
            await model.check()  # type: ignore[attr-defined]
        except LLMError as exc:
            raise type(exc)(f"{role} endpoint ({model.name}): {exc}") from None
