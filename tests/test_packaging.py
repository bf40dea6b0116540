"""The distribution users install: it builds, installs into a fresh venv, and gives a working `josh`."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_distribution_name_is_not_the_unrelated_pypi_josh() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == "josh-toolkit"  # `pip install josh` fetches an unrelated 2013 package
    assert project["scripts"] == {"josh": "josh.cli.main:main"}


@pytest.mark.slow
def test_sdist_and_wheel_build_and_the_wheel_installs_with_a_working_command(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    build = subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(dist), str(ROOT)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    wheels = list(dist.glob("josh_toolkit-*.whl"))
    sdists = list(dist.glob("josh_toolkit-*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, sorted(p.name for p in dist.iterdir())

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    # The fresh venv must not see this checkout: with PYTHONPATH=src, pip finds src/*.egg-info, calls the
    # wheel "already satisfied" and installs no `josh` command.
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheels[0])],
        capture_output=True, text=True, timeout=600, env=clean,
    )  # fmt: skip
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-2000:]
    helped = subprocess.run(
        [str(env_dir / "bin" / "josh"), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=clean,
    )
    assert helped.returncode == 0, helped.stderr
    assert "eval" in helped.stdout and "data" in helped.stdout
    located = subprocess.run(
        [str(python), "-c", "import josh, sys; print(josh.__file__)"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=clean,
    )
    assert str(env_dir) in located.stdout  # the installed copy, not this checkout
