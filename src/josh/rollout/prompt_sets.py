"""The prompt sets of ToolWOZ's agents and customers: the paper's own text (read from the wheel) or josh's
wording. Here, with the conversation that brings agent and customer together (the lowest layer that sees
both), so that the run commands (`josh.benchmarks.toolwoz.prompts`, where users import it from) and
`josh.gym` use the same sets."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from josh.agents import prompts as agent_prompts
from josh.envs.toolwoz.reference_text import reference_prompts
from josh.users import prompts as user_prompts

PromptSet = Literal["paper", "josh"]


@dataclass(frozen=True)
class ToolWOZPrompts:
    """The six prompt texts of agents and customers, and which set they come from."""

    name: PromptSet
    react: str  # ReAct system prompt, `react_tools_placeholder` standing for the tool schemas
    react_tools_placeholder: str
    fc_system: str  # function-calling system prompt
    user_opening: str  # goal customer, first request ({goals})
    user_system: str  # goal customer, later requests, before the conversation ({goals})
    user_turn: str  # goal customer, later requests, after the conversation
    guide: str  # guide coach ({goals}, {goal_convo}, {current_convo})

    def agent_options(self, strategy: Literal["react", "fc"]) -> dict[str, Any]:
        """Keyword arguments giving `ReactAgent` (react) or `FunctionCallingAgent` (fc) these prompts."""
        if strategy == "react":
            return {"prompt": self.react, "tools_placeholder": self.react_tools_placeholder}
        return {"system_prompt": self.fc_system}

    def user_options(self, mode: Literal["goal", "guide", "replay"]) -> dict[str, Any]:
        """Keyword arguments giving `GoalUserSimulator` (goal) or `GuideUserSimulator` (guide) these prompts."""
        if mode == "goal":
            return {
                "opening_prompt": self.user_opening,
                "system_prompt": self.user_system,
                "turn_prompt": self.user_turn,
            }
        if mode == "guide":
            return {"guide_prompt": self.guide}
        return {}


def toolwoz_prompts(kind: PromptSet) -> ToolWOZPrompts:
    """The paper's prompts (from the verified josh-train wheel; `DataError` when it cannot be read) or josh's."""
    if kind == "paper":
        return ToolWOZPrompts(name="paper", **asdict(reference_prompts()))
    if kind == "josh":
        return ToolWOZPrompts(
            name="josh",
            react=agent_prompts.REACT_PROMPT,
            react_tools_placeholder=agent_prompts.TOOLS_PLACEHOLDER,
            fc_system=agent_prompts.FC_SYSTEM_PROMPT,
            user_opening=user_prompts.OPENING_PROMPT,
            user_system=user_prompts.SYSTEM_PROMPT,
            user_turn=user_prompts.TURN_PROMPT,
            guide=user_prompts.GUIDE_PROMPT,
        )
    raise ValueError(f"unknown prompt set {kind!r}: 'paper' or 'josh'")
