"""The paper's own prompts, read at run time from the verified josh-train 0.1.4 wheel, never copied into josh.

`prompts/prompts.yaml` holds the ReAct prompt and the customer's prompts. The function-calling system prompt
and the guide's coach prompt are string constants in the reference's code; they are read here with `ast`
(the modules are never imported: they need torch, transformers and an OpenAI client).
"""

from __future__ import annotations

import ast
import functools
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from josh.errors import DataError

PROMPTS_MEMBER = "prompts/prompts.yaml"
FC_AGENT_MEMBER = "josh_train/agents/fc_agent.py"
GUIDE_USER_MEMBER = "josh_train/users/guide_user_simulator.py"
# The reference fills this with `json.dumps(<data/tools.json>, indent=2)`, which equals ToolWOZ's tool schemas.
REACT_TOOLS_PLACEHOLDER = "{example_filled}"

_YAML_KEYS = {
    "react": "react_prompt",
    "user_opening": "user_simulator_opening_message_prompt",
    "user_system": "user_simulator_system_prompt",
    "user_turn": "user_simulator_prompt",
}
_PLACEHOLDERS = {
    "react": (REACT_TOOLS_PLACEHOLDER,),
    "user_opening": ("{goals}",),
    "user_system": ("{goals}",),
    "guide": ("{goals}", "{goal_convo}", "{current_convo}"),
}


@dataclass(frozen=True)
class ReferencePrompts:
    """The paper's prompt texts, with the reference's placeholders left in."""

    react: str  # ReAct system prompt; REACT_TOOLS_PLACEHOLDER marks where the tool schemas go
    fc_system: str  # function-calling system prompt (`FCAgentSimulator.MONO_PROMPT`)
    user_opening: str  # goal customer, first message; {goals}
    user_system: str  # goal customer, later messages; {goals}
    user_turn: str  # goal customer, the system message after the conversation
    guide: str  # the guide's coach prompt (`guide_prompt`); {goals}, {goal_convo}, {current_convo}
    react_tools_placeholder: str = REACT_TOOLS_PLACEHOLDER


@functools.cache
def reference_prompts() -> ReferencePrompts:
    """The paper's prompts from the cached, verified wheel (downloaded first if missing). Read once a process."""
    from josh.envs.toolwoz.fetch import download_wheel

    return read_reference_prompts(download_wheel())


def read_reference_prompts(wheel: Path) -> ReferencePrompts:
    """The paper's prompts from the josh-train wheel at `wheel`; `DataError` when it does not hold them."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            sources = {
                m: zf.read(m).decode("utf-8") for m in (PROMPTS_MEMBER, FC_AGENT_MEMBER, GUIDE_USER_MEMBER)
            }
    except (OSError, zipfile.BadZipFile, KeyError, UnicodeDecodeError) as exc:
        raise _missing(wheel, f"cannot read it ({exc})") from exc
    try:
        prompts: Any = yaml.safe_load(sources[PROMPTS_MEMBER])
    except yaml.YAMLError as exc:
        raise _missing(wheel, f"{PROMPTS_MEMBER} is not YAML ({exc})") from exc
    if not isinstance(prompts, dict):
        raise _missing(wheel, f"{PROMPTS_MEMBER} is not a mapping of prompts")
    texts: dict[str, str] = {}
    for field, key in _YAML_KEYS.items():
        value = prompts.get(key)
        if not isinstance(value, str):
            raise _missing(wheel, f"{PROMPTS_MEMBER} has no text {key!r}")
        texts[field] = value
    fc = _self_attribute(sources[FC_AGENT_MEMBER], "FCAgentSimulator", "__init__", "MONO_PROMPT")
    if fc is None:
        raise _missing(
            wheel, f"{FC_AGENT_MEMBER} has no string `self.MONO_PROMPT` in FCAgentSimulator.__init__"
        )
    guide = _module_constant(sources[GUIDE_USER_MEMBER], "guide_prompt")
    if guide is None:
        raise _missing(wheel, f"{GUIDE_USER_MEMBER} has no module-level string `guide_prompt`")
    texts.update(fc_system=fc, guide=guide)
    for field, needed in _PLACEHOLDERS.items():
        absent = [p for p in needed if p not in texts[field]]
        if absent:
            raise _missing(wheel, f"the {field} prompt lacks its placeholder {absent[0]}")
    return ReferencePrompts(**texts)


def _missing(wheel: Path, why: str) -> DataError:
    return DataError(
        f"the paper's prompts could not be read from {wheel}: {why}. It should be the official josh-train 0.1.4 "
        "wheel; run `josh data fetch --force`, or use josh's own wording (--prompts josh)."
    )


def _string(node: ast.AST | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _module_constant(source: str, name: str) -> str | None:
    """The string assigned to `name` at module level, or None."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            return _string(node.value)
    return None


def _self_attribute(source: str, cls: str, method: str, attribute: str) -> str | None:
    """The string assigned to `self.<attribute>` in `<cls>.<method>`, or None."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    for node in tree.body:
        if not (isinstance(node, ast.ClassDef) and node.name == cls):
            continue
        for item in node.body:
            if not (isinstance(item, ast.FunctionDef) and item.name == method):
                continue
            for statement in ast.walk(item):
                if isinstance(statement, ast.Assign) and any(
                    isinstance(t, ast.Attribute)
                    and t.attr == attribute
                    and isinstance(t.value, ast.Name)
                    and t.value.id == "self"
                    for t in statement.targets
                ):
                    return _string(statement.value)
    return None
