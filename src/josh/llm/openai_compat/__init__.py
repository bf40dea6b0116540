"""The chat model of any OpenAI-compatible server (OpenAI, vLLM, llama.cpp, the josh mock), by job:

- `model`: `OpenAIChatModel`, the transport: requests, retries, the circuit breaker, the cache;
- `wire`: the wire format: josh's messages as chat dicts, tool calls read back, metadata headers;
- `errors`: every provider error classified into the `LLMError` tree, the API key masked out;
- `adaptations`: what josh adapts to a server: trailing assistant messages, lone surrogates, and the
  server's own routes for its context and token counts (llama.cpp, vLLM).
"""

from josh.llm.openai_compat.model import OpenAIChatModel

__all__ = ["OpenAIChatModel"]
