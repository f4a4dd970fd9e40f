"""The operator console, driven by lines on stdin, over the in-process safety process."""

from __future__ import annotations

import io
from collections.abc import Iterator
from decimal import Decimal

import pytest

from controller.console import Console, parse_duration
from controller.errors import BadInput
from controller.machine import State
from controller.session import Session
from safety.ipc.local import LocalSafety
from tests.controller.conftest import drive


def run_console(session: Session, local: LocalSafety, script: str) -> tuple[Console, str]:
    out = io.StringIO()
    console = Console(
        session,
        stdin=io.StringIO(script),
        stdout=out,
        advance=lambda seconds: drive(local, session, seconds),
        echo=True,
    )
    console.cmdloop("console test")
    console.close()
    return console, out.getvalue()


def _blocks(transcript: str) -> Iterator[tuple[str, str]]:
    """(command line, what followed it) for each prompt in the transcript."""
    parts = transcript.split("pumpctl [")
    for part in parts[1:]:
        head, _, rest = part.partition("\n")
        yield head.split("> ", 1)[-1], rest


def output_of(transcript: str, command: str) -> str:
    for line, rest in _blocks(transcript):
        if line == command:
            return rest
    raise AssertionError(f"{command!r} not in transcript:\n{transcript}")


def test_a_whole_infusion_from_the_console(session: Session, local: LocalSafety) -> None:
    script = "\n".join(
        [
            "program norepinephrine 4 mg/250 mL D5W",
            "start 8",
            "wait 2 min",
            "titrate 12 mcg/min",
            "confirm",
            "wait 5 min",
            "status",
            "history",
            "plan stop",
            "estop",
            "ack",
            "quit",
        ]
    )
    console, out = run_console(session, local, script)
    assert "Traceback" not in out
    assert "program loaded: norepinephrine" in output_of(
        out, "program norepinephrine 4 mg/250 mL D5W"
    )
    start = output_of(out, "start 8")
    assert "accepted (start): 8 mcg/min -> 30 mL/h" in start
    # the live status line: drug, dose and rate, infused volume and drug, time to empty
    assert "[infusing] | norepinephrine 4 mg/250 mL | 8 mcg/min @ 30 mL/h | infused" in start
    assert "syringe empty in 1 h 40 min" in start
    titrate = output_of(out, "titrate 12 mcg/min")
    assert "2 steps over 0:01:00" in titrate and "type confirm to execute" in titrate
    assert "PENDING titrate to 12" in titrate
    assert "step 1: accepted" in output_of(out, "confirm")
    status = output_of(out, "status")
    assert "12 mcg/min @ 45 mL/h" in status and "allowed now:" in status
    history = output_of(out, "history")
    assert "45 mL/h  12 mcg/min" in history
    assert "stop: at or below the stop threshold" in output_of(out, "plan stop")
    estop = output_of(out, "estop")
    assert "!! ALARM HIGH estop" in estop and "[emergency_stopped]" in estop
    assert "[stopped]" in output_of(out, "ack")
    assert console.stopped and session.state is State.STOPPED
    assert local.snapshot().rate_ml_h == Decimal(0)


def test_bad_input_is_one_line_naming_the_field(session: Session, local: LocalSafety) -> None:
    script = "\n".join(
        [
            "start 8",  # before any program
            "program norepinephrine",
            "program norepinephrine 4 mg/250 D5W",
            "program norepinephrine 4 mg/250 mL D5W colour=red",
            "program norepinephrine 4 mg/250 mL saline",
            "program norepinephrine 4 mg/250 mL D5W",
            "start",
            "start eight",
            "start 1,5",
            "start 0.1 mcg/kg/min",
            "start 20",
            "start 8",
            "titrate 60",
            "wait forever",
            "confirm maybe",
            "frobnicate",
            'program "unterminated',
            "quit",
        ]
    )
    _, out = run_console(session, local, script)
    assert "Traceback" not in out
    assert "error: cannot start while idle (no program loaded); load a program first" in out
    assert "error: program: give DRUG CONCENTRATION DILUENT" in out
    assert "error: concentration:" in output_of(out, "program norepinephrine 4 mg/250 D5W")
    assert "unknown option 'colour'" in out
    assert "saline" in output_of(out, "program norepinephrine 4 mg/250 mL saline")
    assert "error: dose: start needs a dose" in output_of(out, "start")
    assert "error: dose:" in output_of(out, "start eight")
    assert "comma is ambiguous" in output_of(out, "start 1,5")
    assert "weight-based" in output_of(out, "start 0.1 mcg/kg/min")
    assert "largest allowed start" in output_of(out, "start 20")
    assert "hard maximum of 47 mcg/min" in output_of(out, "titrate 60")
    assert "error: duration:" in output_of(out, "wait forever")
    assert "error: confirm:" in output_of(out, "confirm maybe")
    assert "error: unknown command 'frobnicate'" in out
    assert "cannot read the line" in out


def test_soft_limit_confirmation_from_the_console(session: Session, local: LocalSafety) -> None:
    script = "\n".join(
        [
            "program norepinephrine 4 mg/250 mL D5W",
            "start 3",
            "wait 10 min",
            "titrate 1.5",
            "confirm",
            "confirm override",
            "cancel",
            "quit",
        ]
    )
    _, out = run_console(session, local, script)
    assert "confirm override" in output_of(out, "titrate 1.5")
    assert "not confirmed: this plan crosses a soft limit" in output_of(out, "confirm")
    assert "step 1: accepted" in output_of(out, "confirm override")
    assert "nothing pending" in output_of(out, "cancel")


def test_help_lists_every_operator_command(session: Session, local: LocalSafety) -> None:
    _, out = run_console(session, local, "help\nhelp titrate\nquit\n")
    for word in (
        "program",
        "start",
        "titrate",
        "wean",
        "stop",
        "estop",
        "ack",
        "status",
        "plan",
        "history",
        "confirm",
        "resume",
    ):
        assert word in out
    assert "Plan the steps to DOSE (nothing is sent)" in out


def test_end_of_input_leaves_and_says_the_infusion_continues(
    session: Session, local: LocalSafety
) -> None:
    console, out = run_console(session, local, "program norepinephrine 4 mg/250 mL D5W\nstart 8\n")
    assert console.stopped
    assert "the infusion continues at its verified rate" in out
    assert local.snapshot().running


def test_live_tick_prints_only_on_change(session: Session, local: LocalSafety) -> None:
    out = io.StringIO()
    console = Console(session, stdin=io.StringIO(""), stdout=out)
    console.live_tick()
    console.live_tick()
    assert out.getvalue().count("[idle]") == 1
    session.program("norepinephrine", "4 mg/250 mL", "D5W")
    console.live_tick()
    assert out.getvalue().count("[programmed]") == 1


@pytest.mark.parametrize(
    ("text", "seconds"), [("30 s", 30.0), ("10 min", 600.0), ("2 h", 7200.0), ("1.5h", 5400.0)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "10", "ten min", "5 years", "0 s", "9999 h"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(BadInput) as info:
        parse_duration(text)
    assert info.value.field == "duration"


# --------------------------------------------------------------------------- the status bar


def test_the_status_bar_keeps_the_live_view_off_the_prompt_line(
    session: Session, local: LocalSafety
) -> None:
    """Typed commands run, the toolbar shows the live status (drug, dose and rate), and
    what the console prints never lands on the prompt's line."""
    pytest.importorskip("prompt_toolkit")
    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput

    from controller.console import run_with_status_bar

    console = Console(session, advance=lambda seconds: drive(local, session, seconds))
    seen: list[str] = []
    real = console.status_bar

    def spy() -> str:
        text = real()
        seen.append(text)
        return text

    console.status_bar = spy  # type: ignore[method-assign]
    with create_pipe_input() as pipe:
        pipe.send_text("program norepinephrine 4 mg/250 mL D5W\rstart 8\rwait 1 min\rquit\r")
        assert run_with_status_bar(console, "hello", input_=pipe, output=DummyOutput())
    console.close()
    assert session.state is State.INFUSING  # the typed commands ran
    assert seen and "[idle] | no program" in seen[0]  # the toolbar was drawn from the start
    live = console.status_bar()
    assert "norepinephrine" in live and "8 mcg/min" in live, live
    assert "pumpctl [" not in live  # the prompt is never part of the status


def test_the_patient_from_the_console(session: Session, local: LocalSafety) -> None:
    """S16 at the bedside: who the limits protect, a weight correction (confirmed, and the
    running program loaded again for it), and a new patient only when nothing infuses."""
    script = "\n".join(
        [
            "patient",
            "program norepinephrine 4 mg/250 mL D5W weight=70 therapy=weight_based",
            "patient",
            "start 0.1",
            "wait 2 min",
            "patient update adult_icu weight=60",
            "patient update adult_icu weight=60 confirm",
            "titrate 0.12",
            "reprogram norepinephrine 4 mg/250 mL D5W weight=60 therapy=weight_based",
            "patient new adult_icu weight=80 confirm",
            "patient update adult_icu weight=abc",
            "quit",
        ]
    )
    _, out = run_console(session, local, script + "\n")
    assert "no patient yet" in output_of(out, "patient")
    assert "adult_icu, 70 kg (first program)" in out
    assert "refused until confirmed" in output_of(out, "patient update adult_icu weight=60")
    assert "patient updated: adult_icu, 60 kg" in output_of(
        out, "patient update adult_icu weight=60 confirm"
    )
    assert "re-program" in output_of(out, "titrate 0.12")
    reprogrammed = output_of(
        out, "reprogram norepinephrine 4 mg/250 mL D5W weight=60 therapy=weight_based"
    )
    assert "re-programmed in place" in reprogrammed
    assert "already_infusing" in output_of(out, "patient new adult_icu weight=80 confirm") or (
        "nothing infuses" in output_of(out, "patient new adult_icu weight=80 confirm")
    )
    assert "weight" in output_of(out, "patient update adult_icu weight=abc")
    assert local.snapshot().running
