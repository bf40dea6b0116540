"""An on-disk cache of model responses in one SQLite file.

The key is the sha256 of the whole request (model, endpoint, wire messages, tools, sampling settings and
metadata), so a sampled reply is reused only for an identical request: vary `seed` or `metadata` (e.g. the
trial number) to draw fresh samples. A cache that cannot be read never stops a run: it logs a warning and
behaves as a miss from then on.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from josh.types import AssistantMessage, Usage

log = logging.getLogger(__name__)

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL NOT NULL)"
)


class ResponseCache:
    """Cached `chat` replies keyed by request; safe to share between coroutines, threads and processes.

    One connection is guarded by a lock (calls are short); WAL mode lets several processes read while one
    writes. Replies come back with `usage.cached=True`, cost 0 and `latency_s=0` (token counts kept).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False, isolation_level=None)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute(_SCHEMA)
            except sqlite3.Error:
                conn.close()
                raise
            self._conn = conn
        except (sqlite3.Error, OSError) as exc:
            log.warning("response cache %s is unusable (%s); running without it", self.path, exc)

    def __repr__(self) -> str:
        return f"ResponseCache({str(self.path)!r})"

    @property
    def enabled(self) -> bool:
        """False once the cache file proved unusable; every lookup is then a miss."""
        return self._conn is not None

    @staticmethod
    def make_key(request: Mapping[str, Any]) -> str:
        """sha256 hex of the canonical JSON of a request (sorted keys, no whitespace)."""
        canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        # surrogatepass: a lone surrogate a model sent (and the history replays) must not break the key;
        # valid text encodes exactly as before, so existing cache files keep their keys.
        return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()

    def get(self, key: str) -> list[AssistantMessage] | None:
        """The cached replies for `key`, marked as cached, or None on a miss or an unreadable entry."""
        with self._lock:
            if self._conn is None:
                return None
            try:
                row = self._conn.execute("SELECT value FROM responses WHERE key = ?", (key,)).fetchone()
            except sqlite3.Error as exc:
                self._disable(exc)
                return None
        if row is None:
            return None
        try:
            dumps = json.loads(row[0])
            if not isinstance(dumps, list):
                raise ValueError("entry is not a list of messages")
            messages = [AssistantMessage.model_validate(dump) for dump in dumps]
        except ValueError as exc:  # json and pydantic errors are both ValueErrors
            log.warning("ignoring unreadable response cache entry %s… in %s (%s)", key[:12], self.path, exc)
            return None
        return [_as_cached(message) for message in messages]

    def put(self, key: str, messages: Sequence[AssistantMessage]) -> None:
        """Store the replies for `key`, replacing any earlier entry."""
        # ASCII escapes keep lone surrogates (`\ud800`), which sqlite cannot store as UTF-8, and load back exactly.
        try:
            value = json.dumps([message.model_dump(mode="json") for message in messages], ensure_ascii=True)
        except (ValueError, TypeError, RecursionError) as exc:  # a reply that cannot be stored is not cached
            log.warning("not caching a reply that cannot be serialised (%s)", exc)
            return
        with self._lock:
            if self._conn is None:
                return
            try:
                self._conn.execute(
                    "INSERT OR REPLACE INTO responses (key, value, created) VALUES (?, ?, ?)",
                    (key, value, time.time()),
                )
            except sqlite3.Error as exc:
                self._disable(exc)

    def close(self) -> None:
        """Close the database; later lookups are misses."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _disable(self, exc: sqlite3.Error) -> None:
        """Give up on the file for this run (called with the lock held): one warning, then plain misses."""
        log.warning("response cache %s failed (%s); continuing without it", self.path, exc)
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None


def _as_cached(message: AssistantMessage) -> AssistantMessage:
    usage = message.usage or Usage()
    cached_usage = usage.model_copy(update={"cost": 0.0, "cached": True})
    return message.model_copy(update={"usage": cached_usage, "latency_s": 0.0})
