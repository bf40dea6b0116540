"""USD prices of common OpenAI models, per 1M input and output tokens.

A dated variant (`gpt-4o-2024-08-06`) is priced as its base model; the longest matching name wins, so
`gpt-4o-mini-2024-07-18` is `gpt-4o-mini`, not `gpt-4o`. Unknown models (a local vLLM or llama.cpp
server) are unpriced: their cost is None, not 0, because josh cannot know it. Pass `price_override` to price
them. josh's own models (the mock endpoint's and the in-process `scripted` one) are free.
"""

from __future__ import annotations

# (input, output) USD per 1M tokens.
PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "o4-mini": (1.10, 4.40),
    "gpt-5": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
}

# josh's own test doubles: the mock endpoint's two models and the in-process `scripted` backend.
FREE_MODELS = frozenset({"josh-mock-agent", "josh-mock-user", "scripted"})

_PROVIDER_PREFIX = "openai/"  # how routers such as OpenRouter or LiteLLM name OpenAI models


def price_for(model: str) -> tuple[float, float] | None:
    """The (input, output) price per 1M tokens of `model`, or None when it is not a known model.

    A known name matches exactly or as a prefix followed by `-` (so `gpt-5` does not price `gpt-50`).
    """
    name = model.strip().lower()
    if name in FREE_MODELS:
        return (0.0, 0.0)
    name = name.removeprefix(_PROVIDER_PREFIX)
    best: str | None = None
    for known in PRICES:
        if (name == known or name.startswith(known + "-")) and (best is None or len(known) > len(best)):
            best = known
    return PRICES[best] if best is not None else None


def cost(
    model: str,
    prompt_tokens: int,
    completion_tokens: int,
    price_override: tuple[float, float] | None = None,
) -> float | None:
    """USD cost of one call; `price_override` is (input, output) per 1M tokens and prices any model.

    Returns None (unpriced) for a model `price_for` does not know and no override.
    """
    prices = price_override if price_override is not None else price_for(model)
    if prices is None:
        return None
    input_price, output_price = prices
    return (prompt_tokens * input_price + completion_tokens * output_price) / 1_000_000
