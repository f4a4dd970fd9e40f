"""Loading a library file: TOML -> validated model -> content hash, or every problem.

Numbers are read as ``Decimal`` straight from the TOML text (``parse_float=Decimal``), so
0.1 in the file is exactly 0.1. The content hash is taken over the validated content in a
canonical form, so reformatting or comments do not change it but any figure does; the
safety process refuses a program whose library hash differs from its own.
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
import tomllib
from decimal import Decimal
from pathlib import Path

from pydantic import ValidationError

from safety.library.models import DrugLibraryModel
from safety.library.sanity import Problem, check_library
from safety.units import format_decimal

#: The repository's config/ folder (the project is installed in editable mode).
CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
DEFAULT_LIBRARY_PATH = CONFIG_DIR / "drug_library.toml"


def default_library_path() -> Path:
    override = os.environ.get("PUMPCTL_LIBRARY")
    return Path(override) if override else DEFAULT_LIBRARY_PATH


class LibraryError(Exception):
    """The library file cannot be used; ``problems`` lists each one by field path."""

    def __init__(self, path: str, problems: list[Problem]) -> None:
        self.path = path
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"drug library {path} is invalid ({len(problems)} problem(s)):\n{lines}")


def parse_library(text: str, origin: str = "<text>") -> tuple[DrugLibraryModel, str]:
    """Validate library text; return the model and its content hash."""
    try:
        raw = tomllib.loads(text, parse_float=Decimal)
    except ValueError as exc:  # TOMLDecodeError, and int() refusing a 5000-digit integer
        raise LibraryError(origin, [Problem("(file)", f"not valid TOML: {exc}")]) from None
    try:
        model = DrugLibraryModel.model_validate(raw)
    except ValidationError as exc:
        problems = [
            Problem(_loc(err["loc"]), err["msg"].removeprefix("Value error, "))
            for err in exc.errors()
        ]
        raise LibraryError(origin, problems) from None
    problems = check_library(model)
    if problems:
        raise LibraryError(origin, problems)
    return model, content_hash(model)


def load_library_file(path: str | Path | None = None) -> tuple[DrugLibraryModel, str]:
    target = Path(path) if path is not None else default_library_path()
    try:
        text = target.read_text(encoding="utf-8")
    except OSError as exc:
        raise LibraryError(str(target), [Problem("(file)", exc.strerror or str(exc))]) from None
    except UnicodeDecodeError as exc:
        raise LibraryError(str(target), [Problem("(file)", f"not UTF-8 text: {exc}")]) from None
    return parse_library(text, str(target))


def content_hash(model: DrugLibraryModel) -> str:
    """sha256 over the validated content with every number in one canonical spelling,
    so ``1.0`` and ``1`` (the same figure) hash alike but ``1`` and ``1.5`` never do."""
    content = model.model_dump(mode="python", by_alias=True)
    if not content.get("test_fluids"):
        # a library without test fluids hashes as it did before they existed
        content.pop("test_fluids", None)
    canonical = json.dumps(
        _canonical(content),
        sort_keys=True,
        separators=(",", ":"),
    )
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _canonical(node: object) -> object:
    if isinstance(node, Decimal):
        return format_decimal(node)
    if isinstance(node, enum.Enum):
        return node.value
    if isinstance(node, dict):
        return {str(k): _canonical(v) for k, v in node.items()}
    if isinstance(node, list | tuple):
        return [_canonical(v) for v in node]
    return node


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(root)"
