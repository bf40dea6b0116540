"""Wire messages and their JSON, made once per message rather than once per request.

A conversation's request resends its whole history, and JOSH's branches resend the same prefix (a system
prompt of ~15 KB in ToolWOZ) for every leaf: converting every message to a wire dict, cleaning its text of
lone surrogates and encoding it as JSON on each request cost ~0.5 ms of CPU a call at 20 KB a request
(`bench/josh_orchestration.py`). Here each josh message becomes a read-only wire dict once (`shared_wire`),
which encodes itself once (`SharedWire.json_text`, what `request_json` sends).

Entries are remembered by identity, newest kept, within a budget of about 32 MiB; each holds its
object, so an id is never reused while its entry lives. josh's messages are frozen pydantic models, and a
`SharedWire` refuses changes, so what is remembered stays true.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Generic, NoReturn, TypeVar

from josh.llm.openai_compat.adaptations import sendable
from josh.llm.openai_compat.wire import to_wire
from josh.types import Message

K = TypeVar("K")
V = TypeVar("V")


class IdentityMemo(Generic[K, V]):
    """`derive(obj)`, remembered by `obj`'s identity (for objects that do not hash, or hash slowly): the
    newest entries are kept while the summed `weigh(value)` stays within `budget`."""

    def __init__(
        self, derive: Callable[[K], V], budget: int, weigh: Callable[[V], int] = lambda _: 1
    ) -> None:
        self._derive, self._budget, self._weigh = derive, budget, weigh
        # Ordered by age. Not a plain dict: taking its oldest entry (`next(iter(...))`) walks past every slot
        # emptied since the dict last resized, ~20 µs an insert once the budget is full (a long harvest).
        self._entries: OrderedDict[int, tuple[K, V, int]] = OrderedDict()
        self._weight = 0
        self._lock = threading.Lock()  # Ray workers and `asyncio.to_thread` callers share the module

    def __call__(self, obj: K) -> V:
        entry = self._entries.get(id(obj))
        if entry is not None and entry[0] is obj:
            return entry[1]
        value = self._derive(obj)
        weight = self._weigh(value)
        if weight > self._budget:
            return value
        with self._lock:
            old = self._entries.pop(id(obj), None)
            if old is not None:
                self._weight -= old[2]
            self._entries[id(obj)] = (obj, value, weight)
            self._weight += weight
            while self._weight > self._budget:  # the oldest first
                _, (_, _, dropped) = self._entries.popitem(last=False)
                self._weight -= dropped
        return value

    def __len__(self) -> int:
        return len(self._entries)


class SharedWire(dict):  # type: ignore[type-arg]
    """A wire message shared by every request that sends its josh message (see `shared_wire`), with its JSON
    made once (`json_text`). Read-only, since that JSON must stay true: copy it (`dict(wire)`) to change it."""

    _json: str | None = None

    def json_text(self) -> str:
        """This message as JSON (see `clean_json`), encoded on first use."""
        if self._json is None:
            self._json = clean_json(self)
        return self._json

    def __reduce__(self) -> tuple[type[dict], tuple[dict[str, Any]]]:  # type: ignore[type-arg]
        return dict, (dict(self),)  # a copy or a pickle is a plain dict, free to change

    def _read_only(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("a shared wire message is read-only: copy it with dict(...) to change it")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = __ior__ = _read_only  # type: ignore[assignment]


def clean_json(value: Any) -> str:
    """`value` as JSON (ASCII, as httpx sends it), with lone surrogates replaced by U+FFFD: servers decode
    requests as UTF-8, which cannot hold them (a model may have sent one, and the history replays it). The
    escaped text names every surrogate as `\\udXXX`, so text without that needs no cleaning (nearly all)."""
    text = json.dumps(value)
    return json.dumps(sendable(value)) if "\\ud" in text else text


def _size(wire: SharedWire) -> int:
    """About the bytes an entry holds alive: its JSON (new), the wire dict and the josh message it keeps (their
    texts are the message's own strings, counted once)."""
    content = wire.get("content")
    text = len(content) if isinstance(content, str) else 0
    return 2 * text + 300 * len(wire.get("tool_calls") or ()) + 1000


# The messages of the conversations in flight (ToolWOZ's 20 trees of 8 leaves share a few thousand), never
# all of a long run's: 32 MiB by this count (29,000 short messages; about 47 MiB of the process's memory).
shared_wire: IdentityMemo[Message, SharedWire] = IdentityMemo(
    lambda message: SharedWire(to_wire(message)), 32 << 20, _size
)


def request_json(body: Any) -> bytes:
    """A request body as JSON bytes (see `clean_json`); the messages that are `SharedWire` are encoded once
    for all the requests that send them."""
    messages = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(messages, list):
        return clean_json(body).encode()
    parts = [m.json_text() if type(m) is SharedWire else clean_json(m) for m in messages]
    rest = clean_json({key: value for key, value in body.items() if key != "messages"})
    sep = ", " if rest != "{}" else ""
    return f'{rest[:-1]}{sep}"messages": [{", ".join(parts)}]}}'.encode()
