"""The README says what the CLI does: its set-up commands are CI's, and it names every option of the commands."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
import pytest
import typer
import typer.rich_utils
from typer.testing import CliRunner

from josh.cli.main import app
from josh.envs.tau2.paths import INSTALL_COMMAND as TAU2_INSTALL

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def options(*path: str) -> list[str]:
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    flags = []
    for param in command.params:
        flags += [o for o in [*param.opts, *getattr(param, "secondary_opts", [])] if o.startswith("--")]
    return [f for f in flags if f != "--help"]


def test_the_two_setup_commands_are_the_ones_ci_runs() -> None:
    block = re.search(r"```bash\n(.*?)\n```", README, re.S)
    assert block is not None
    commands = block.group(1).splitlines()
    assert len(commands) == 2
    ci = (ROOT / ".ci" / "run").read_text()
    assert all(command in ci for command in commands)


@pytest.mark.parametrize(
    "command",
    [
        ("eval", "toolwoz"),
        ("eval", "tau2"),
        ("harvest", "toolwoz"),
        ("export", "sft"),
        ("export", "kto"),
        ("export", "dpo"),
        ("train", "sft"),
        ("train", "kto"),
        ("train", "dpo"),
        ("serve-mock",),
        ("report",),
        ("score",),
        ("view",),
        ("loop",),
    ],
)
def test_the_readme_names_every_option(command: tuple[str, ...]) -> None:
    missing = [flag for flag in options(*command) if flag not in README]
    assert not missing, f"josh {' '.join(command)}: the README does not mention {missing}"


# One `pip install` command: options, quoted or bare requirements (with extras and a pinned version), chained
# with `&&`; it ends at the first word that is none of these (`. Run file`, `)`, a backtick).
_REQUIREMENT = r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*(?:\[[\w,]+\])?(?:==\d+(?:\.\d+)*)?"
_ARGUMENT = rf"(?:-[\w-]+|'[^'\s]+'|\"[^\"\s]+\"|{_REQUIREMENT})"
_ONE_INSTALL = rf"pip install(?: {_ARGUMENT})+"
INSTALL_LINE = re.compile(rf"{_ONE_INSTALL}(?: && {_ONE_INSTALL})*")
EXTRA = re.compile(r"\[[a-z0-9][a-z0-9,_-]*\]")  # `[train]`, `[dev,train,tau2]`: what Rich markup would eat


def _commands(command: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, command
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from _commands(sub, (*path, name))


def _source_help(command: click.Command) -> list[str]:
    """The help texts as written (Rich escapes `\\[` undone), one line of text each."""
    texts = [command.help, command.short_help, *(getattr(p, "help", None) for p in command.params)]
    return [" ".join(text.replace("\\[", "[").split()) for text in texts if text]


@pytest.fixture
def wide_help(monkeypatch: pytest.MonkeyPatch) -> Callable[[tuple[str, ...]], str]:
    """`josh ... --help` as shown, on a terminal wide enough that no help line wraps."""
    monkeypatch.setattr(typer.rich_utils, "MAX_WIDTH", 2000)

    def shown(path: tuple[str, ...]) -> str:
        result = CliRunner().invoke(app, [*path, "--help"])
        assert result.exit_code == 0, result.output
        return result.output

    return shown


def test_every_install_line_of_the_help_renders_its_extras_and_is_in_the_readme(
    wide_help: Callable[[tuple[str, ...]], str],
) -> None:
    """Typer's Rich markup took `[train]` and `[tau2]` for styles ("needs the  extra", `pip install -e "."`)."""
    seen = set()
    for path, command in _commands(typer.main.get_command(app)):
        shown = wide_help(path)
        own = {line.group(0) for text in _source_help(command) for line in INSTALL_LINE.finditer(text)}
        listed = {  # a group's --help also lists its commands' help, perhaps cut short
            line.group(0)
            for sub in getattr(command, "commands", {}).values()
            for text in _source_help(sub)
            for line in INSTALL_LINE.finditer(text)
        }
        lines = {line.group(0) for line in INSTALL_LINE.finditer(shown)}
        name = " ".join(("josh", *path))
        assert own <= lines <= own | listed, f"{name} --help shows {lines}, written {own | listed}"
        for extra in {e for text in _source_help(command) for e in EXTRA.findall(text)}:
            assert extra in shown, f"{name} --help drops {extra}"
        missing = [line for line in lines if line not in README]
        assert not missing, f"{name} --help: the README does not have {missing}"
        seen.update(lines)
    assert TAU2_INSTALL in seen  # the install line of tau2's error messages is the help's
    assert any("josh-toolkit[train]" in line for line in seen)


def test_the_help_names_tau2_and_its_three_domains(wide_help: Callable[[tuple[str, ...]], str]) -> None:
    assert "tau2-bench" in wide_help(())
    for path in (("eval", "tau2"), ("harvest", "tau2")):
        shown = wide_help(path)
        assert "(--domain airline, retail or telecom)" in shown and "airline or retail" not in shown


def test_the_readme_points_at_nothing_outside_the_repository() -> None:
    """A user's clone has nothing beside it: no `../` paths, and the scripts the README names are here."""
    assert re.findall(r"\.\./[\w.-]+", README) == []  # a path beside the checkout (`../` alone is a prefix)
    scripts = re.findall(r"scripts/[\w.]+\.py", README)
    assert scripts and all((ROOT / script).is_file() for script in scripts), scripts


def test_the_readmes_runs_leave_no_untracked_file_in_a_checkout() -> None:
    """`--out trees.jsonl` in the repository root writes trees.summary.json, trees.config.json and
    trees.jsonl.lock beside it: git ignores them, as it ignores the run file, and ignores no tracked file."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)

    side_files = ["trees.jsonl", "trees.summary.json", "trees.config.json", "trees.jsonl.lock"]
    ignored = git("check-ignore", "--no-index", *side_files, "runs/x/run.summary.json").stdout.split()
    assert ignored == [*side_files, "runs/x/run.summary.json"]
    assert git("check-ignore", "--no-index", "tests/fixtures/run.config.json").stdout == ""  # fixtures stay
    assert git("ls-files", "--cached", "--ignored", "--exclude-standard").stdout == ""
