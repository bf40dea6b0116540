"""Agents: prompts and output parsing for the ReAct text protocol and native function calling."""

from josh.agents.base import (
    Agent,
    AgentProtocolError,
    AgentTurn,
    AgentTurnError,
    ExecutedCall,
    ModelAgent,
    ResultText,
    ToolExecutor,
    json_result_text,
)
from josh.agents.function_calling import FunctionCallingAgent
from josh.agents.react import ReactAgent

__all__ = [
    "Agent",
    "AgentProtocolError",
    "AgentTurn",
    "AgentTurnError",
    "ModelAgent",
    "ExecutedCall",
    "FunctionCallingAgent",
    "ReactAgent",
    "ResultText",
    "ToolExecutor",
    "json_result_text",
]
