"""How the mock tells the parts of a request apart by their prompts: text found only in the first message of
each part (the ReAct system prompt, the customer's or the guide's coach prompt), in josh's wording or the
paper's, whose markers are derived at run time from the text read from the wheel."""

from __future__ import annotations

from dataclasses import dataclass

from josh.agents.prompts import REACT_MARKER
from josh.envs.toolwoz.reference_text import reference_prompts
from josh.errors import DataError
from josh.users.prompts import GUIDE_MARKER, GUIDE_PROMPT, USER_MARKER


@dataclass(frozen=True)
class PromptMarkers:
    """How to recognise one prompt set in a request: text found only in the first message of each part, and
    the lines around the current conversation in the guide's coach prompt."""

    react: tuple[str, ...]
    goal: tuple[str, ...]
    guide: tuple[str, ...]
    guide_convo: tuple[str, str]  # (the line before {current_convo}, the line after it)


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _convo_bounds(guide_prompt: str) -> tuple[str, str]:
    before, _, after = guide_prompt.partition("{current_convo}")
    lines_before = [line.strip() for line in before.splitlines() if line.strip()]
    return (lines_before[-1] if lines_before else "", _first_line(after))


JOSH_MARKERS = PromptMarkers(
    react=(REACT_MARKER,),
    goal=(USER_MARKER,),
    guide=(GUIDE_MARKER,),
    guide_convo=_convo_bounds(GUIDE_PROMPT),
)


def paper_markers() -> PromptMarkers | None:
    """The markers of the paper's prompts, from their text in the wheel; None when it cannot be read."""
    try:
        paper = reference_prompts()
    except DataError:
        return None
    return PromptMarkers(
        react=(_first_line(paper.react),),
        goal=tuple(dict.fromkeys((_first_line(paper.user_opening), _first_line(paper.user_system)))),
        guide=(_first_line(paper.guide),),
        guide_convo=_convo_bounds(paper.guide),
    )


def current_convo(prompt: str, markers: PromptMarkers) -> str | None:
    """The current conversation in a filled coach prompt (without the source conversation before it)."""
    start, end = markers.guide_convo
    at = prompt.find(start) if start else -1
    if at < 0:
        return None
    rest = prompt[at + len(start) :]
    return rest.split(end, 1)[0] if end else rest


def part(first: str, markers: PromptMarkers) -> tuple[str, str] | None:
    """(role, kind) when the first message of a request is one of `markers`' prompts."""
    if any(m in first for m in markers.react):
        return "agent", "react"
    if any(m in first for m in markers.guide):
        return "user", "guide"
    if any(m in first for m in markers.goal):
        return "user", "goal"
    return None


