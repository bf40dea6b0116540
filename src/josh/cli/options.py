"""Command-line options built from a pydantic config: one declaration per option, one vocabulary.

`with_options(Config)` adds one `--flag` per field of `Config` to a Typer command (name, type, choices, help
text, default and help panel all come from the field), so every command that shares a config shares its
options without a second copy of the list. `resolve(Config, typed, config_file)` merges the field defaults,
a YAML file whose keys are the flag names, and the flags the user typed, and names the flag (or the YAML key)
in any error.
"""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

import typer
import yaml
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from rich.markup import escape

from josh.errors import JoshError, did_you_mean

M = TypeVar("M", bound=BaseModel)
F = TypeVar("F", bound=Callable[..., Any])


def flag_name(field: str) -> str:
    """`max_tokens` -> `--max-tokens`."""
    return "--" + field.replace("_", "-")


def _extra(info: FieldInfo) -> dict[str, Any]:
    extra = info.json_schema_extra
    return extra if isinstance(extra, dict) else {}


def _cli_type(annotation: Any) -> Any:
    """The field's type without `None` (every option defaults to None on the command line: "not typed")."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation


def _help(field: str, info: FieldInfo) -> str:
    """The field's description and its default (`[default: ...]`), escaped from Rich markup: Typer's help
    would take `[train]` for a style and drop it."""
    text = escape(info.description or "")
    default = info.default
    if default is None:
        return text
    if isinstance(default, bool):
        flags = _extra(info).get("flag") or f"{flag_name(field)}/--no-{field.replace('_', '-')}"
        on, off = flags.split("/")
        shown = on if default else off
    else:
        shown = str(default)
    return f"{text} \\[default: {shown}]"


def _parameter(field: str, info: FieldInfo) -> inspect.Parameter:
    kind = _cli_type(info.annotation)
    flags = _extra(info).get("flag")
    if kind is bool and not flags:
        flags = f"{flag_name(field)}/--no-{field.replace('_', '-')}"
    option = typer.Option(
        flags or flag_name(field),
        help=_help(field, info),
        show_default=False,
        rich_help_panel=_extra(info).get("panel"),
    )
    return inspect.Parameter(
        field, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[kind | None, option]
    )


def with_options(config: type[BaseModel], shared: Sequence[inspect.Parameter] = ()) -> Callable[[F], F]:
    """Give a command one option per field of `config`; the command receives them as `options: dict`
    (only the flags the user typed; the others are None and left out). `shared` adds options that several
    commands declare once (e.g. the run file's), passed to the command under their own names."""

    def decorate(func: F) -> F:
        names = {p.name for p in shared}
        own = [
            p
            for p in inspect.signature(func, eval_str=True).parameters.values()
            if p.name != "options" and p.name not in names
        ]
        own = [*own, *shared]
        panels = list(getattr(config, "PANELS", ()))
        fields = sorted(
            config.model_fields.items(),
            key=lambda item: (
                panels.index(p) if (p := _extra(item[1]).get("panel")) in panels else len(panels)
            ),
        )
        generated = [_parameter(name, info) for name, info in fields]

        @functools.wraps(func)
        def command(**kwargs: Any) -> Any:
            fields = config.model_fields
            typed = {k: v for k, v in kwargs.items() if k in fields and v is not None}
            rest = {k: v for k, v in kwargs.items() if k not in fields}
            return func(options=typed, **rest)

        command.__signature__ = inspect.Signature([*own, *generated])  # type: ignore[attr-defined]
        return command  # type: ignore[return-value]

    return decorate


# Keys a run adds to its RUN.config.json that record facts, not options: skipped when the file is fed back.
ADAPTATIONS_KEY = "endpoint-adaptations"
# `recorded`: what `josh train` learnt (versions, the optimiser used, losses) in OUT/train_config.json.
RECORDED_KEYS = frozenset({ADAPTATIONS_KEY.replace("-", "_"), "recorded"})


def load_config_file(path: Path) -> dict[str, Any]:
    """A YAML (or JSON) file of options, keys as the flag names (`max-tokens` or `max_tokens`)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise JoshError(f"cannot read the config file {path}: {exc}") from None
    if not isinstance(data, dict):
        raise JoshError(f"{path} must hold a mapping of options (flag names as keys)")
    options = {str(key).replace("-", "_"): value for key, value in data.items()}
    return {key: value for key, value in options.items() if key not in RECORDED_KEYS}


def resolve(config: type[M], typed: dict[str, Any], config_file: Path | None = None) -> M:
    """Defaults, then `config_file`, then the typed flags; errors name the flag or the file's key."""
    from_file = load_config_file(config_file) if config_file is not None else {}
    unknown = sorted(set(from_file) - set(config.model_fields))
    if unknown:
        hints = [f"'{key.replace('_', '-')}'" + did_you_mean(key, config.model_fields) for key in unknown]
        raise JoshError(
            f"{config_file}: unknown option {', '.join(hints)}; keys are the flag names of --help"
        )
    try:
        return config.model_validate({**from_file, **typed})
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else ""
            message = error["msg"].removeprefix("Value error, ")
            if not field:
                problems.append(message)
            elif field in typed:
                problems.append(f"{flag_name(field)}: {message}")
            else:
                problems.append(f"'{field.replace('_', '-')}' in {config_file}: {message}")
        raise JoshError("invalid options: " + "; ".join(problems)) from None


def config_for_file(config: BaseModel) -> dict[str, Any]:
    """A resolved config in the file vocabulary (flag names, dashes), ready to save and feed back."""
    return {name.replace("_", "-"): value for name, value in config.model_dump(mode="json").items()}
