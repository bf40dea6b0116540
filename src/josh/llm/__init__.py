"""One async chat interface over OpenAI-compatible servers, local Hugging Face models (`hf:`, torch imported
only when one is loaded) and scripted test models."""

from josh.llm.base import (
    ChatModel,
    ContextLengthError,
    EndpointDownError,
    EndpointError,
    EndpointOutageError,
    FatalLLMError,
    LLMError,
    RetryableLLMError,
)
from josh.llm.breaker import EndpointBreaker
from josh.llm.cache import ResponseCache
from josh.llm.context import ContextWindow, PromptSize
from josh.llm.hf import HFChatModel, parse_hf_spec
from josh.llm.ledger import CallLedger
from josh.llm.openai_compat import OpenAIChatModel
from josh.llm.pool import EndpointPool
from josh.llm.retry import RetryPolicy
from josh.llm.scripted import ScriptedChatModel
from josh.llm.siblings import SiblingGroup, SiblingModel

__all__ = [
    "CallLedger",
    "ChatModel",
    "ContextLengthError",
    "ContextWindow",
    "EndpointBreaker",
    "EndpointDownError",
    "EndpointError",
    "EndpointOutageError",
    "EndpointPool",
    "FatalLLMError",
    "HFChatModel",
    "LLMError",
    "OpenAIChatModel",
    "PromptSize",
    "ResponseCache",
    "RetryPolicy",
    "RetryableLLMError",
    "ScriptedChatModel",
    "SiblingGroup",
    "SiblingModel",
    "parse_hf_spec",
]
