"""The README says what the CLI does: its set-up commands are CI's, and it names every option of the commands."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer

from josh.cli.main import app

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


def test_the_readme_points_at_nothing_outside_the_repository() -> None:
    """A user's clone has nothing beside it: no `../` paths, and the scripts the README names are here."""
    assert re.findall(r"\.\./\S+", README) == []
    scripts = re.findall(r"scripts/[\w.]+\.py", README)
    assert scripts and all((ROOT / script).is_file() for script in scripts), scripts
