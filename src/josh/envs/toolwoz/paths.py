"""Every path of the ToolWOZ data, defined once.

The data comes from the official `josh-train==0.1.4` wheel on PyPI and is cached under the user cache
directory (or `$JOSH_CACHE`); nothing of it lives in this package.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

REFERENCE_PACKAGE = "josh-train"
REFERENCE_VERSION = "0.1.4"
WHEEL_NAME = "josh_train-0.1.4-py3-none-any.whl"
WHEEL_SHA256 = "e905d1d28e28cb809011d3b5651ecb45eda5721df08cd1126d50c4990af205fa"
DATASET_MEMBER = "data/dataset.zip"
DATASET_SHA256 = "8cc9aa20b9eeb342ced649ed196a6d1302423ca19539e64df002c545995100bb"

# Bump when the layout or content of the built cache changes: old caches are then rebuilt.
CACHE_FORMAT_VERSION = 1


def cache_root() -> Path:
    """The root of josh's cache: `$JOSH_CACHE`, else the platform's user cache directory."""
    env = os.environ.get("JOSH_CACHE")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_cache_dir("josh", appauthor=False))


def toolwoz_dir() -> Path:
    """Folder of the ToolWOZ cache."""
    return cache_root() / f"toolwoz-{REFERENCE_VERSION}"


def wheel_path() -> Path:
    """The verified reference wheel, kept so the cache can be rebuilt offline."""
    return toolwoz_dir() / WHEEL_NAME


def database_path() -> Path:
    """The built SQLite file: domain databases, tasks and metadata."""
    return toolwoz_dir() / f"toolwoz-v{CACHE_FORMAT_VERSION}.sqlite"


def digest_path() -> Path:
    """Sidecar holding the sha256 of the built database, to detect a corrupt cache."""
    return database_path().with_suffix(".sqlite.sha256")


def lock_path() -> Path:
    """Lock file held while the cache is written (a build, a wheel download or copy)."""
    return toolwoz_dir() / ".write.lock"
