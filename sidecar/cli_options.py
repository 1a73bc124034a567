"""What every command's options share: a value from a `SIDECAR_<OPTION>` environment variable, and help that shows
each default.

The environment only moves an option's default (`--es-url` reads `SIDECAR_ES_URL`), so the command line wins and
every value goes through the option's own checks. A value that came from the environment is never printed by
`--help`, only its variable's name: it may be a password.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from typing import Any, NoReturn

PREFIX = "SIDECAR_"
EPILOG = (
    "Every option can also be set in the environment as SIDECAR_<OPTION>: --es-url as SIDECAR_ES_URL, a flag as "
    "true or false, a repeatable option as a comma-separated list. The command line wins."
)
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


class Parser(argparse.ArgumentParser):
    """A mistake is one line on stderr and exit status 2, without the whole usage in front of it."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class HelpFormatter(argparse.HelpFormatter):
    """Each option's default after its help (unless the help already says it); one from the environment by name."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        variable = getattr(action, "environment_variable", None)
        if variable is not None:
            return f"{text} (set by ${variable})"
        if not action.option_strings or "default" in text or action.default is argparse.SUPPRESS:
            return text
        if action.default in (None, []):
            return f"{text} (default: none)"
        if isinstance(action.default, bool):
            return f"{text} (default: {str(action.default).lower()})"
        return f"{text} (default: %(default)s)"


def finish(parser: argparse.ArgumentParser, environ: Mapping[str, str] = os.environ) -> None:
    """On `parser` and every sub-command: defaults from the environment, this help formatter and the epilog."""
    parser.formatter_class = HelpFormatter
    parser.epilog = parser.epilog or EPILOG
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command in dict.fromkeys(action.choices.values()):
                finish(command, environ)
            continue
        variable = variable_for(action)
        if variable is not None and variable in environ:
            action.default = _parse(parser, action, variable, environ[variable])
            action.required = False
            action.environment_variable = variable  # type: ignore[attr-defined]


def variable_for(action: argparse.Action) -> str | None:
    """`--es-url` -> `SIDECAR_ES_URL`; None for positionals, `--help` and `--version`."""
    if isinstance(action, argparse._HelpAction | argparse._VersionAction):
        return None
    long = next((option for option in action.option_strings if option.startswith("--")), None)
    return None if long is None else PREFIX + long[2:].upper().replace("-", "_")


def _parse(parser: argparse.ArgumentParser, action: argparse.Action, variable: str, text: str) -> Any:
    """The option's value from its variable, checked as the command line would check it (exit 2 if wrong)."""
    try:
        if isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction):
            return _flag(text) if isinstance(action, argparse._StoreTrueAction) else not _flag(text)
        if isinstance(action, argparse._AppendAction):
            return [_value(action, item.strip()) for item in text.split(",") if item.strip()]
        return _value(action, text)
    except (argparse.ArgumentTypeError, TypeError, ValueError) as exc:
        parser.error(f"environment variable {variable}: {exc}")


def _flag(text: str) -> bool:
    if text.strip().lower() in _TRUE:
        return True
    if text.strip().lower() in _FALSE:
        return False
    raise ValueError(f"expected true or false, got [{text}]")


def _value(action: argparse.Action, text: str) -> Any:
    value = action.type(text) if callable(action.type) else text
    if action.choices is not None and value not in action.choices:
        raise ValueError(f"invalid choice [{text}] (choose from {', '.join(map(str, action.choices))})")
    return value
