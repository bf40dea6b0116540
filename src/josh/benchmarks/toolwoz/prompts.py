"""The prompt sets of a ToolWOZ evaluation: the paper's own text (read from the wheel) or josh's wording.

Defined in `josh.rollout.prompt_sets`, below `josh.gym`, which uses the same sets; named here, where the
run commands and users have always imported them."""

from josh.rollout.prompt_sets import PromptSet, ToolWOZPrompts, toolwoz_prompts

__all__ = ["PromptSet", "ToolWOZPrompts", "toolwoz_prompts"]
