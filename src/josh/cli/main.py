"""Entry point of the `josh` command."""

from __future__ import annotations

import typer

from josh import __version__
from josh.cli import data_cmd, eval_cmd, export_cmd, harvest_cmd, loop_cmd, score_cmd, train_cmd, view_cmd
from josh.cli.console import setup_logging
from josh.cli.help_text import reflow_help
from josh.loop.child_process import die_with_parent

app = typer.Typer(
    name="josh",
    help=(
        "JOSH, ToolWOZ and tau2-bench: benchmark tool-calling agents on ToolWOZ (the paper's protocol, its "
        "official data) or tau2-bench (airline, retail, telecom) with a simulated customer, harvest JOSH trees "
        "from sparse rewards, export them as training data, train LoRA adapters on them (TRL), and inspect "
        "the results."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(data_cmd.app, name="data")
app.command("score")(score_cmd.score)
app.add_typer(eval_cmd.eval_app, name="eval")
app.add_typer(harvest_cmd.harvest_app, name="harvest")
app.add_typer(export_cmd.export_app, name="export")
app.add_typer(train_cmd.train_app, name="train")
app.command("report")(eval_cmd.report_cmd)
app.command("serve-mock")(eval_cmd.serve_mock)
app.command("view")(view_cmd.view)
app.command("loop")(loop_cmd.loop)
reflow_help(app)  # each help paragraph one line, for Rich to wrap at any width


def _version(value: bool) -> None:
    if value:
        typer.echo(f"josh {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version."
    ),
    verbose: int = typer.Option(
        0,
        "--verbose",
        "-v",
        count=True,
        help="Show more log lines: -v for progress details, -vv for debugging.",
    ),
) -> None:
    setup_logging(verbose)


def main() -> None:
    die_with_parent()  # a stage of `josh loop` ends with the loop, however the loop ends
    app()


if __name__ == "__main__":
    main()
