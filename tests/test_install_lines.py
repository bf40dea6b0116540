"""Every command that needs the [train] extra says how to install it, with the README's one line: in its
--help, and in its error when torch is missing (`josh train`, an hf: model)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import typer.rich_utils
from typer.testing import CliRunner

from josh.cli.main import app
from josh.llm.hf.spec import TRAIN_INSTALL
from tests.test_readme import README


def test_the_install_line_is_the_readmes() -> None:
    assert TRAIN_INSTALL == "pip install torch==2.13.0 && pip install 'josh-toolkit[train]'"
    assert TRAIN_INSTALL in README


@pytest.mark.parametrize(
    "path", [("loop",), ("train",), ("train", "sft"), ("train", "kto"), ("train", "dpo")]
)
def test_the_commands_that_train_show_the_install_line(
    path: tuple[str, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(typer.rich_utils, "MAX_WIDTH", 2000)  # no help line wraps
    shown = CliRunner().invoke(app, [*path, "--help"]).output
    assert TRAIN_INSTALL in shown


def josh_without_torch(*args: str) -> subprocess.CompletedProcess[str]:
    """`josh ARGS` in a Python where `import torch` fails, as in an install without the [train] extra."""
    script = "import sys; sys.modules['torch'] = None; from josh.cli.main import main; main()"
    return subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=120)


def test_josh_train_without_torch_gives_the_install_line(tmp_path: Path) -> None:
    proc = josh_without_torch(
        "train", "kto", "--data", str(tmp_path), "--model", "m", "--out", str(tmp_path / "o")
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: training needs torch") and proc.stderr.rstrip().endswith(
        TRAIN_INSTALL
    )


@pytest.mark.data
def test_an_hf_model_without_torch_gives_the_install_line(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    proc = josh_without_torch("eval", "toolwoz", "--model", f"hf:{tmp_path / 'model'}", "--user-model", "scripted",
                              "--limit", "1", "--out", str(tmp_path / "run.jsonl"))  # fmt: skip
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "torch is missing" in proc.stderr and proc.stderr.rstrip().endswith(TRAIN_INSTALL)


def test_the_kto_help_says_what_the_readme_says_about_kto_ft() -> None:
    """kto_ft.py accumulates 16 batches of 1; at josh's batch of 2 that is --grad-accum 8, as the README says."""
    shown = " ".join(CliRunner().invoke(app, ["train", "kto", "--help"]).output.replace("│", " ").split())
    follow = "--grad-accum 8 --beta 0.1 --desirable-weight 1.0 --undesirable-weight 2.71"
    assert follow in " ".join(README.split()) and follow in shown
    assert "--grad-accum 16" not in shown and "8, not 16, at batch 2" in shown
