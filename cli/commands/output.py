"""How every sub-command reports: plain text for people, one JSON object for scripts.

Exit codes are shared by every command: 0 done (warnings possible), 1 a check or an
expectation failed, 2 bad input or usage, 3 refused by the library or the safety rules,
141 the reader of standard output closed it early (``pumpctl journal show | head``).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import signal
import sys
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from safety.library import DrugLibrary, LibraryError, load_library

#: what each command module's ``add_parser`` receives
if TYPE_CHECKING:
    SubParsers = argparse._SubParsersAction[Any]
else:
    SubParsers = argparse._SubParsersAction

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_REFUSED = 3
#: what a shell reports for a program its closed pipe ended (128 + SIGPIPE)
EXIT_CLOSED_PIPE = 128 + int(signal.SIGPIPE)

#: a sub-command's handler, as ``set_defaults(handler=...)`` names it
Handler = Callable[[argparse.Namespace], int]


class CommandError(Exception):
    """Ends a command with a clear message, a reason code and an exit code."""

    def __init__(self, code: str, message: str, exit_code: int, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.exit_code = exit_code
        self.field = field


def bad_input(message: str, field: str | None = None, code: str = "bad_input") -> NoReturn:
    raise CommandError(code, message, EXIT_BAD_INPUT, field)


def report_error(error: CommandError, as_json: bool) -> int:
    if as_json:
        body: dict[str, Any] = {"code": error.code, "message": error.message}
        if error.field:
            body["field"] = error.field
        print(json.dumps({"error": body}))
    else:
        print(f"pumpctl: {error.message}", file=sys.stderr)
    return error.exit_code


def json_text(obj: object, indent: int | None = None) -> str:
    """``obj`` as strict JSON: a figure that is not a number (NaN, as a ratio to 0 is
    here) or infinite, float or Decimal, is null, since JSON has no such value and strict
    readers (jq, browsers, most languages' parsers) refuse Python's ``NaN``."""
    return json.dumps(_finite(obj), indent=indent, sort_keys=False, default=str, allow_nan=False)


def _finite(obj: object) -> object:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Decimal):  # written as its text (``default=str``), as exact as it is
        return obj if obj.is_finite() else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def print_json(obj: object) -> None:
    print(json_text(obj))


def library_from_option(path: str | Path | None) -> DrugLibrary:
    """The drug library a command's ``--library`` names (None: the default library); an
    invalid one ends the command with every problem by field path (code invalid_library)."""
    try:
        return load_library(path)
    except LibraryError as exc:
        bad_input(str(exc), "library", code="invalid_library")


def stdout_may_close(handler: Handler) -> Handler:
    """``handler``, ending quietly with ``EXIT_CLOSED_PIPE`` when the reader of standard
    output goes away (``| head``, ``| less`` quit early).

    Python ignores SIGPIPE, so a write to a closed pipe raises BrokenPipeError: a
    traceback for what is the reader's choice, not a fault. Standard output is flushed
    here, while the error can still be caught: what a short output leaves in the buffer
    would otherwise meet the closed pipe at interpreter exit, past any handler."""

    @functools.wraps(handler)
    def wrapped(args: argparse.Namespace) -> int:
        try:
            code = handler(args)
            sys.stdout.flush()
        except BrokenPipeError:
            _discard_stdout()
            return EXIT_CLOSED_PIPE
        return code

    return wrapped


def _discard_stdout() -> None:
    """Point standard output's file descriptor at /dev/null: the interpreter flushes it
    once more at exit, and what is still buffered must go nowhere, not raise again.
    A stream with no descriptor (a test's capture) has nothing to flush at exit."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)
