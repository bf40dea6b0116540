"""tau2's tools seen from josh: schemas, which calls may write, the arguments tau2 can take, and cheap copies
of a tau2 environment's state for copy-on-first-write branching.

tau2 declares each tool once on a `ToolKit` class (`@is_tool(ToolType.READ | WRITE | ...)`); the schemas are
its `Tool.openai_schema` and the executor is its `Environment.get_response`, unchanged.
"""

from __future__ import annotations

import copy
import json
import pickle
from typing import Any

from josh.types import bounded, clean_text

# tau2 tool types that never change an environment: `read` tools and `think` (tau2's own contract; `generic`
# tools such as `transfer_to_human_agents` are pure too, but nothing promises it, so they count as writes).
PURE_TOOL_TYPES = frozenset({"read", "think"})


def tool_schemas(toolkit: Any) -> list[dict[str, Any]]:
    """The OpenAI function schemas of a tau2 toolkit's tools (`Tool.openai_schema`), in tau2's order."""
    if toolkit is None:
        return []
    return [tool.openai_schema for tool in toolkit.get_tools().values()]


def pure_tools(environment: Any, toolkit: Any) -> frozenset[str]:
    """Tools of `toolkit` whose calls cannot change `environment`: tagged read (or think) by tau2, in an
    environment that does not re-sync its state after every call. Telecom's `sync_tools` does (a read call
    can settle a paid bill), so there every call counts as a write; its state is tiny, copies are cheap."""
    from tau2.environment.environment import Environment

    if toolkit is None or type(environment).sync_tools is not Environment.sync_tools:
        return frozenset()
    return frozenset(name for name in toolkit.tools if _tool_type(toolkit, name) in PURE_TOOL_TYPES)


def _tool_type(toolkit: Any, name: str) -> str:
    kind = toolkit.tool_type(name)
    return str(getattr(kind, "value", kind))


class ArgumentsError(ValueError):
    """Arguments tau2 cannot take (its tool calls carry a JSON object): the call gets an error result."""


def tau2_arguments(arguments: Any) -> dict[str, Any]:
    """The JSON object tau2 gets for `arguments` (a dict, JSON text of one, or None for no arguments).

    Everything else raises `ArgumentsError`: tau2 only ever sees arguments parsed from JSON, so objects no
    JSON parser makes (locks, generators, integers too long to print, containers nested deeper than josh
    records) never reach its tools, and what reaches them is exactly what the trajectory records and tau2's
    evaluator replays. Never raises anything else, whatever the object.
    """
    if arguments is None:
        return {}
    kind = type(arguments)  # not isinstance(): a hostile `__class__` can raise
    if issubclass(kind, str | bytes | bytearray):
        try:
            arguments = json.loads(arguments)
        except (ValueError, RecursionError) as exc:  # not JSON (or nested too deep, or a number too long)
            raise ArgumentsError("arguments are not valid JSON") from exc
    elif not issubclass(kind, dict):
        raise ArgumentsError(f"arguments must be a JSON object, got {kind.__name__}")
    try:
        plain = json.loads(json.dumps(arguments, allow_nan=False))
    except Exception as exc:  # TypeError, ValueError, RecursionError, or whatever a hostile object raises
        raise ArgumentsError("arguments must be a JSON object of JSON values") from exc
    if not isinstance(plain, dict):
        raise ArgumentsError(f"arguments must be a JSON object, got {type(plain).__name__}")
    if bounded(plain) != plain:  # nested deeper than josh records, or text with lone surrogates
        raise ArgumentsError("arguments nested too deep or holding text that is not valid Unicode")
    return plain


def tool_name(name: Any) -> str | None:
    """`name` as plain text tau2 can take (lone surrogates replaced), or None when it is not a string."""
    kind = type(name)
    if not issubclass(kind, str):
        return None
    return clean_text(str.__str__(name))


def error_result(reason: str) -> str:
    """An error result in tau2's words (`Environment.get_response` answers `f"Error: {e}"`)."""
    return f"Error: {reason}"


class SharedState:
    """A tau2 environment that nothing may change any more: shared by snapshots, forks and fresh sessions.

    `thaw()` gives a private copy to write on. Each toolkit's database is dumped to JSON once and validated
    back for each copy (fresh objects, and pydantic-core is faster at it than `deepcopy` or pickle for
    tau2's databases: airline ~0.25 s, retail ~0.04 s, telecom ~5 ms); the toolkits' other attributes (e.g.
    telecom's id generator) are pickled.
    """

    __slots__ = ("environment", "_frozen")

    def __init__(self, environment: Any) -> None:
        self.environment = environment
        self._frozen: dict[str, tuple[Any, str | None, bytes]] | None = None

    def thaw(self) -> Any:
        if self._frozen is None:
            frozen = {}
            for attr in ("tools", "user_tools"):
                kit = getattr(self.environment, attr, None)
                if kit is None:
                    continue
                rest = {k: v for k, v in kit.__dict__.items() if k != "db"}
                db = kit.__dict__.get("db")
                text = db.model_dump_json() if db is not None else None
                frozen[attr] = (type(db), text, pickle.dumps(rest, protocol=pickle.HIGHEST_PROTOCOL))
            self._frozen = frozen
        clone = copy.copy(self.environment)
        for attr, (db_type, text, rest) in self._frozen.items():
            kit = copy.copy(getattr(self.environment, attr))
            state = pickle.loads(rest)
            if text is not None:
                state["db"] = db_type.model_validate(json.loads(text))
            kit.__dict__ = state
            setattr(clone, attr, kit)
        return clone
