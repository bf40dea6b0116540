"""Shared fixtures. Tests marked `data` use the real ToolWOZ data, fetched into the cache on first use."""

from __future__ import annotations

import pytest

from josh.envs.toolwoz import ToolWOZEnvironment


@pytest.fixture(scope="session")
def toolwoz_env() -> ToolWOZEnvironment:
    return ToolWOZEnvironment.load()
