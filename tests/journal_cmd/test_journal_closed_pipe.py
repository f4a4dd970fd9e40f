"""pumpctl journal show|export|plot whose reader closes standard output early (``| head``):
the command ends quietly with 141, as a shell reports a pipe's reader gone, not with a
BrokenPipeError traceback. In process, over a real pipe whose read end is closed."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import pytest

from cli.commands.output import EXIT_CLOSED_PIPE
from cli.main import main
from tests.journal_cmd.conftest import Relay


@contextlib.contextmanager
def _reader_gone() -> Iterator[TextIO]:
    """Standard output a pipe nobody reads any more (buffered, as a pipe's is). Set in
    the test's body: pytest gives its own capture back to ``sys.stdout`` when a test's
    call begins, over anything a fixture put there."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    stream = open(write_end, "w", encoding="utf-8")  # noqa: SIM115 - closed below
    saved, sys.stdout = sys.stdout, stream
    try:
        yield stream
    finally:
        sys.stdout = saved
        if not stream.closed:
            stream.close()


@pytest.mark.parametrize(
    "args",
    [
        ("show",),
        ("show", "--all"),
        ("show", "--json"),
        ("show", "--channel", "B"),
        ("export",),
        ("export", "--format", "jsonl"),
    ],
    ids=" ".join,
)
def test_a_closed_pipe_ends_the_command_quietly(
    relay: Relay, capsys: pytest.CaptureFixture[str], args: tuple[str, ...]
) -> None:
    with _reader_gone() as stdout:
        code = main(["journal", *args, "--dir", str(relay.dir)])
        # what is left in the buffer goes nowhere at exit instead of raising again there
        stdout.close()
    assert code == EXIT_CLOSED_PIPE == 141
    assert capsys.readouterr().err == ""


def test_a_closed_pipe_after_a_plot_is_written(
    relay: Relay, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    png = tmp_path / "relay.png"
    with _reader_gone() as stdout:
        code = main(["journal", "plot", "--dir", str(relay.dir), "--out", str(png)])
        stdout.close()
    assert code == EXIT_CLOSED_PIPE and capsys.readouterr().err == ""
    assert png.read_bytes().startswith(b"\x89PNG")  # the work was done; only the note was lost


def test_every_command_ends_quietly_on_a_closed_pipe(capsys: pytest.CaptureFixture[str]) -> None:
    """One wrapper around every command's handler (``cli.main``), not one per command: the
    library's listing, piped to a reader gone, ends as the journal's does."""
    with _reader_gone() as stdout:
        code = main(["library", "show"])
        stdout.close()
    assert code == EXIT_CLOSED_PIPE
    assert capsys.readouterr().err == ""
