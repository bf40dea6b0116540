"""The layout (DESIGN.md): imports point downward only, no module imports itself back through others, a
folder per benchmark that nothing above it names except the CLI's registration, and the shared run loops
typed by the options they read."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import josh

ROOT = Path(josh.__file__).parent
# Highest first. A module may import its own layer and any layer after it in this list.
LAYERS = [
    "cli",
    "loop",
    "benchmarks",
    "train",
    "view",
    "export",
    "integrations",
    "runner",
    "gym",
    "search",
    "rollout",
    "mock",
    "agents",
    "users",
    "envs",
    "llm",
    "types",
    "errors",
]
PEERS = {("agents", "users"), ("users", "agents")}  # independent; neither imports the other


def _layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "josh" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in LAYERS else None


def test_imports_point_downward() -> None:
    problems = []
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT).with_suffix("")
        own = rel.parts[0] if rel.parts[0] in LAYERS else None
        if own is None:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                target = _layer(name)
                if target is None or target == own:
                    continue
                if (own, target) in PEERS or LAYERS.index(target) < LAYERS.index(own):
                    problems.append(f"{rel}: imports {name} ({own} -> {target})")
    assert not problems, "\n".join(problems)


# The JOSH core works on any agent/user/reward triple (DESIGN.md): it may use the shared types, never an
# environment, an agent, a user simulator, a rollout or a model.
SEARCH_MAY_NOT_IMPORT = ("envs", "agents", "users", "rollout", "llm", "mock")


def test_the_search_core_knows_no_environment_agent_or_model() -> None:
    problems = []
    for path in (ROOT / "search").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""] if node.level == 0 else ["<relative import>"]
            for name in names:
                if name == "<relative import>" or _layer(name) in SEARCH_MAY_NOT_IMPORT:
                    problems.append(f"{path.relative_to(ROOT)}: imports {name}")
    assert (ROOT / "search" / "beam.py").exists()
    assert not problems, "\n".join(problems)


# The viewer only reads records (DESIGN.md): run files, tree and rollout records, the shared types.
VIEW_MAY_NOT_IMPORT = ("cli", "benchmarks", "envs", "agents", "users", "llm", "mock")


def test_the_viewer_reads_records_and_runs_nothing() -> None:
    problems = []
    for path in (ROOT / "view").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            problems += [
                f"{path.relative_to(ROOT)}: imports {n}" for n in names if _layer(n) in VIEW_MAY_NOT_IMPORT
            ]
    assert (ROOT / "view" / "page.py").exists()
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------------------------------------- no cycle


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[str]:
    """The josh modules `path` imports, anywhere in it (under TYPE_CHECKING and inside functions too):
    `from josh.a import b` is `josh.a.b` when that is a module, else `josh.a`."""
    modules = {_module_name(p) for p in ROOT.rglob("*.py")}
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names if a.name.startswith("josh.")]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("josh."):
            names += [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else str(node.module)
                      for a in node.names]  # fmt: skip
    return [name for name in names if name in modules]


def _import_graph() -> dict[str, set[str]]:
    return {_module_name(p): set(_imports(p)) - {_module_name(p)} for p in ROOT.rglob("*.py")}


def test_no_module_imports_itself_back() -> None:
    """No import cycle between josh's modules, however indirect, lazy or type-only (a package's
    `__init__` importing its own modules is not one: the import system runs it first anyway)."""
    graph = _import_graph()
    cycles: list[str] = []
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = "open"
        path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                cycles.append(" -> ".join([*path[path.index(target) :], target]))
            elif target not in state:
                visit(target)
        path.pop()
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module)
    assert not cycles, "\n".join(cycles)


# ------------------------------------------------------------------------------------- a folder per benchmark

BENCHMARKS = ROOT / "benchmarks"
# What every benchmark's folder provides (README, Development): the same modules, the same roles.
BENCHMARK_MODULES = ("__init__", "config", "prompts", "setups", "benchmark", "harvest", "commands")
# The one module above `benchmarks/<name>/` that names a benchmark's folder: the CLI's registration.
REGISTRATION = "josh.cli.benchmarks"
# ... and the one exception: the self-training loop runs ToolWOZ's commands (`josh eval toolwoz`, `josh
# harvest toolwoz`) and checks a stage's options against their configs before any work; the registration is
# in the CLI, above the loop, out of its reach.
ALLOWED = {("josh.loop.stages", "josh.benchmarks.toolwoz.config")}


def _benchmark_folders() -> list[str]:
    return sorted(p.name for p in BENCHMARKS.iterdir() if p.is_dir() and (p / "__init__.py").exists())


def _folder_of(module: str) -> str | None:
    """The benchmark folder a module is in, or imports (`josh.benchmarks.tau2.config` -> `tau2`)."""
    parts = module.split(".")
    if parts[:2] == ["josh", "benchmarks"] and len(parts) > 2 and parts[2] in _benchmark_folders():
        return parts[2]
    return None


def test_each_benchmark_is_a_folder_with_the_same_modules() -> None:
    folders = _benchmark_folders()
    assert folders == ["tau2", "toolwoz"]
    for folder in folders:
        missing = [m for m in BENCHMARK_MODULES if not (BENCHMARKS / folder / f"{m}.py").exists()]
        assert not missing, f"benchmarks/{folder}/ lacks {', '.join(m + '.py' for m in missing)}"
    shared = sorted(p.stem for p in BENCHMARKS.glob("*.py"))
    assert not [name for name in shared if any(name.startswith(f) for f in folders)], shared


def test_nothing_above_a_benchmark_folder_names_one_but_the_registration() -> None:
    """A benchmark's folder is imported by its own modules and by the CLI's registration (plus the loop's
    one exception, `ALLOWED`); never by the shared `benchmarks/` modules, another benchmark, or anything
    else, so that adding a benchmark is one folder and one registration line."""
    problems = []
    for path in ROOT.rglob("*.py"):
        module = _module_name(path)
        own = _folder_of(module)
        for target in _imports(path):
            folder = _folder_of(target)
            if folder is None or folder == own or module == REGISTRATION or (module, target) in ALLOWED:
                continue
            problems.append(f"{module}: imports {target} (benchmark folder {folder})")
    assert not problems, "\n".join(problems)
    registered = {_folder_of(t) for t in _imports(ROOT / "cli" / "benchmarks.py")} - {None}
    assert registered == set(_benchmark_folders())  # every folder is registered


def test_the_registration_gives_each_benchmark_its_commands() -> None:
    from josh.cli.benchmarks import BENCHMARKS as REGISTERED
    from josh.cli.eval_cmd import eval_app
    from josh.cli.harvest_cmd import harvest_app

    names = [entry.name for entry in REGISTERED]
    assert names == ["toolwoz", "tau2"]
    assert [c.name for c in eval_app.registered_commands if c.name in names] == names
    assert [c.name for c in harvest_app.registered_commands] == names


# ---------------------------------------------------------------------------------------------- typed options


def test_the_shared_loops_take_the_options_they_read() -> None:
    """The eval and harvest loops and the jobs take a protocol naming the options they read, not `Any`; every
    registered benchmark's configs have them."""
    from josh.benchmarks import evaluation, harvest, jobs
    from josh.cli.benchmarks import BENCHMARKS as REGISTERED

    typed = {
        evaluation.evaluate: "EvalOptions",
        harvest.harvest: "HarvestLoopOptions",
        harvest.harvest_tree: "HarvestLoopOptions",
        jobs.select_tasks: "JobOptions",
        jobs.pending_jobs: "JobOptions",
        jobs.record_jobs: "JobOptions",
    }
    for function, protocol in typed.items():
        assert inspect.signature(function).parameters["config"].annotation == protocol, function.__name__
    for entry in REGISTERED:
        assert isinstance(entry.eval_config(), evaluation.EvalOptions), entry.name
        assert isinstance(entry.harvest_config(), harvest.HarvestLoopOptions), entry.name


# ---------------------------------------------------------------------------------------------- file sizes

LONGEST = 550  # lines: "about 500", a tenth over at most


def test_long_modules_say_why_they_are_whole() -> None:
    """A module over about 500 lines is split by job, unless it reads better whole and its docstring says so
    ("reads better whole", and why)."""
    long = []
    for path in ROOT.rglob("*.py"):
        text = path.read_text()
        said = ast.get_docstring(ast.parse(text)) or ""
        if text.count("\n") > LONGEST and "reads better whole" not in said:
            long.append(f"{path.relative_to(ROOT)}: {text.count(chr(10))} lines")
    assert not long, "\n".join(long)
