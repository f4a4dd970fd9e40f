"""The operator console on a bench of several pumps: commands name a channel (``@B``),
``channel B`` selects one, the relay and the container change have their own commands,
``status`` shows every channel and drug; and a one-pump bench reads as before."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest

from controller.console import Console
from controller.session import Session
from safety.ipc.local import LocalChannel, LocalSafety
from safety.library import DrugLibrary
from tests.controller.conftest import drive
from tests.controller.test_console import output_of


@pytest.fixture
def bench(library: DrugLibrary) -> Iterator[LocalSafety]:
    channels = (LocalChannel("A", loaded_volume_ml=10.0), LocalChannel("B"))
    with LocalSafety(library=library, channels=channels) as link:
        yield link


@pytest.fixture
def two(bench: LocalSafety, library: DrugLibrary) -> Iterator[Session]:
    with Session.open(bench, library, clinical=bench.clinical) as s:
        yield s


def run(session: Session, link: LocalSafety, *lines: str) -> str:
    out = io.StringIO()
    console = Console(
        session,
        stdin=io.StringIO("\n".join([*lines, "quit"])),
        stdout=out,
        advance=lambda seconds: drive(link, session, seconds),
        echo=True,
    )
    console.cmdloop("console test")
    console.close()
    text = out.getvalue()
    assert "Traceback" not in text and "internal error" not in text, text
    return text


NOREPI = "program norepinephrine 4 mg/250 mL D5W"


def test_a_relay_set_up_and_watched_from_the_console(two: Session, bench: LocalSafety) -> None:
    out = run(
        two,
        bench,
        NOREPI,
        "start 8",  # 30 mL/h: A's 10 mL last 20 min
        f"{NOREPI} @B",
        "prime 2 @B line-disconnected",
        "channel",
        "wait 1 min",
        "standby B for A quick",
        "channel A",
        "status",
        "wait 20 min",
        "status",
    )
    # naming a channel moves the console there; the prompt and status line say which
    assert "program loaded" in output_of(out, f"{NOREPI} @B")
    assert "pumpctl [programmed @B]>" in out
    assert "working on channel A" in output_of(out, "channel A")
    # a prime runs the pump to waste: no dose, no time to empty, said so
    priming = _row(output_of(out, "channel"), "* B ")
    assert "priming" in priming and "to waste, not to the patient" in priming
    assert "empty in" not in priming and "mcg/min" not in priming
    first, second = [rest for line, rest in _blocks(out) if line == "status"]
    assert "| channel A |" in first and "8 mcg/min @ 30 mL/h" in first
    # per channel: role, program, dose and rate, container left, time to empty
    a_row = _row(first, "* A ")
    assert "active" in a_row and "8 mcg/min @ 30 mL/h" in a_row and "empty in" in a_row
    b_row = _row(first, "  B ")
    assert "standby for A (quick)" in b_row and "not running" in b_row and "primed" in b_row
    # per drug: the patient's total, what was given, the next handover
    drug = _row(first, "norepinephrine: total")
    assert "total 8 mcg/min on A, B" in drug and "given" in drug and "next handover in" in drug
    # after the handover the console follows the infusion to B, and says so
    assert "handed over from channel A to B: the console now works on channel B" in (
        output_of(out, "wait 20 min")
    )
    assert "| channel B |" in second and "8 mcg/min @ 30 mL/h" in second
    assert "handed over to B" in _row(second, "  A ")
    assert "active" in _row(second, "* B ")
    assert bench.pumps["B"].snapshot().running and not bench.pumps["A"].snapshot().running


def test_bad_channel_words_name_the_field_and_what_is_allowed(
    two: Session, bench: LocalSafety
) -> None:
    out = run(
        two,
        bench,
        NOREPI,
        "start 8 @C",
        "channel C",
        "titrate 10 @A @B",
        "standby B for A sideways",
        "standby B A",
        "standby A for A",
        "disarm",
        "prime two @B line-disconnected",
        "prime 2 @B",
        "prime -1 @B line-disconnected",
        "container 50 colour=red",
        "container pause now",
    )
    assert "error: channel: there is no channel 'C'; channels: A, B" in output_of(out, "start 8 @C")
    assert "error: channel: there is no channel 'C'; channels: A, B" in output_of(out, "channel C")
    assert "acts on one channel" in output_of(out, "titrate 10 @A @B")
    assert "strategy: 'sideways' is not a relay strategy; one of quick, overlap" in output_of(
        out, "standby B for A sideways"
    )
    assert "standby CHANNEL for ACTIVE [quick|overlap]" in output_of(out, "standby B A")
    assert "cannot relieve itself" in output_of(out, "standby A for A")
    assert "give the standby channel" in output_of(out, "disarm")
    assert "'two' is not a volume" in output_of(out, "prime two @B line-disconnected")
    assert "disconnect it from the patient" in output_of(out, "prime 2 @B")
    assert "above 0" in output_of(out, "prime -1 @B line-disconnected")
    assert "unknown option 'colour'; allowed: concentration" in output_of(
        out, "container 50 colour=red"
    )
    assert "takes only a channel" in output_of(out, "container pause now")
    assert not bench.pumps["A"].snapshot().running  # nothing was started on a bad line


def test_a_refused_relay_request_says_why(two: Session, bench: LocalSafety) -> None:
    out = run(two, bench, NOREPI, "start 8", "program norepinephrine 8 mg/250 mL D5W @B",
              "standby B for A")  # fmt: skip
    answer = output_of(out, "standby B for A")
    assert answer.startswith("error: refused") and "concentration" in answer


def test_a_container_change_on_a_one_pump_bench(session: Session, local: LocalSafety) -> None:
    out = run(
        session,
        local,
        NOREPI,
        "start 8",
        "wait 5 min",
        "container pause",
        "container 50 mL",
        "prime 1 line-disconnected",
        "wait 1 min",
        "container resume",
        "status",
        "container",
    )
    assert "accepted" in output_of(out, "container pause")
    assert "container changed on channel A: 50 mL" in output_of(out, "container 50 mL")
    assert "priming 1 mL to waste (not to the patient)" in output_of(
        out, "prime 1 line-disconnected"
    )
    assert "pumpctl [stopped]> prime 1" in out and "pumpctl [stopped]> wait 1 min" in out
    assert "accepted" in output_of(out, "prime 1 line-disconnected")
    assert "accepted" in output_of(out, "container resume")
    status = output_of(out, "status")
    assert "8 mcg/min @ 30 mL/h" in status
    # a one-pump bench looks as it did: no channel in the prompt, line or table
    assert "channels:" not in status and "| channel A" not in status
    assert "pumpctl [infusing]>" in out
    assert "syringe 49.0 of 50 mL" in output_of(out, "container")
    assert local.pump.snapshot().running


def _blocks(transcript: str) -> Iterator[tuple[str, str]]:
    for part in transcript.split("pumpctl [")[1:]:
        head, _, rest = part.partition("\n")
        yield head.split("> ", 1)[-1], rest


def _row(text: str, start: str) -> str:
    for line in text.splitlines():
        if line.strip().startswith(start.strip()) and line.lstrip().startswith(start.lstrip()):
            return line
    raise AssertionError(f"no line starting {start!r} in:\n{text}")


def test_help_and_a_scoped_acknowledgement(two: Session, bench: LocalSafety) -> None:
    bench.inject_faults("power_cycle", "B")
    drive(bench, two, 30)
    out = run(two, bench, "help", "help standby", "status", "ack B/pump:reset", "status")
    listed = output_of(out, "help")
    for word in ("channel", "standby", "disarm", "prime", "container"):
        assert word in listed
    assert "standby CH for ACTIVE [quick|overlap]" in output_of(out, "help standby")
    before, after = [rest for line, rest in _blocks(out) if line == "status"]
    # on a bench of several pumps an alarm names its pump
    assert "HIGH B/pump:reset" in before and "acknowledged" not in _row(before, "alarm:")
    assert "alarms acknowledged" in output_of(out, "ack B/pump:reset")
    assert "acknowledged" in _row(after, "alarm: HIGH B/pump:reset")


#: A infusing, B loaded, primed and armed as A's overlap relief
A_RUNS_B_RELIEVES = (
    NOREPI,
    "start 8",
    f"{NOREPI} @B",
    "prime 2 @B line-disconnected",
    "wait 1 min",
    "standby B for A overlap",
)


def test_an_overlap_handover_under_way_is_shown(two: Session, bench: LocalSafety) -> None:
    out = run(
        two,
        bench,
        *A_RUNS_B_RELIEVES,
        "channel A",
        "wait 11 min",
        "status",
    )
    status = output_of(out, "status")
    # the status line and the table: which handover, its step, the next one
    assert "HANDOVER A -> B (overlap), step" in status and "of 4, next in" in status
    assert "handing over" in _row(status, "* A ") or "handing over" in _row(status, "  B ")
    drug = _row(status, "norepinephrine: total")
    assert "total 8 mcg/min on A, B" in drug


def test_an_unknown_alarm_key_is_named_with_what_can_be_acknowledged(
    two: Session, bench: LocalSafety
) -> None:
    """The safety process answers "alarms acknowledged" to a key naming nothing: the
    console must not repeat it. Known keys given beside an unknown one are acknowledged."""
    bench.inject_faults("power_cycle", "B")
    drive(bench, two, 30)
    out = run(two, bench, "ack B/nosuch", "ack B/pump:reset B/nosuch", "ack B/nosuch")
    first = output_of(out, "ack B/nosuch")
    assert "alarms acknowledged" not in first
    assert (
        "error: keys: no alarm 'B/nosuch'; alarms that can be acknowledged now: B/pump:reset; "
        "nothing was acknowledged"
    ) in first
    both = output_of(out, "ack B/pump:reset B/nosuch")
    assert "alarms acknowledged: B/pump:reset" in both
    assert (
        "not acknowledged: no alarm 'B/nosuch'; alarms that can be acknowledged now: B/pump:reset"
    ) in both
    assert "acknowledged]" in _row(both, "[")  # the status line shows it acknowledged
    assert two.status().alarms[0].acknowledged


def _allowed(status: str) -> str:
    return _row(status, "allowed now:")


def _allowed_words(status: str) -> list[str]:
    listed = _allowed(status).split("(", 1)[0].strip().removeprefix("allowed now:")
    return [word.strip() for word in listed.split(",")]


def test_allowed_now_says_what_a_relay_leaves_the_operator(
    two: Session, bench: LocalSafety
) -> None:
    """A standby takes no orders and a handover refuses every plan: the list must not
    offer them (it offered start on the standby, titrate_to, wean and stop meanwhile)."""
    out = run(
        two,
        bench,
        *A_RUNS_B_RELIEVES,
        "status",  # on B, the armed standby
        "start 8",
        "channel A",
        "wait 11 min",  # the overlap handover is under way
        "status",
        "titrate 9",
        f"re{NOREPI}",
    )
    standby, handover = [rest for line, rest in _blocks(out) if line == "status"]
    allowed = _allowed(standby)
    assert "start" not in allowed and "program" not in allowed
    assert "disarm B" in allowed and "emergency_stop" in allowed
    assert "channel B is armed as the standby of channel A" in allowed
    on_standby = [rest for line, rest in _blocks(out) if line == "start 8"][1]
    assert on_standby.startswith("error: refused")  # as the list says
    assert "HANDOVER A -> B (overlap)" in handover
    words = _allowed_words(handover)
    assert "emergency_stop" in words
    assert not {"titrate_to", "wean", "stop", "start"} & set(words)
    allowed = _allowed(handover)
    assert "handing the infusion over from channel A to B: no dose change" in allowed
    assert output_of(out, "titrate 9").startswith("error: ")  # as the list says
    # a program reloaded in place is no dose change: the list offers it, and it is taken
    assert "reprogram" in words and "program loaded" in output_of(out, f"re{NOREPI}")


def test_allowed_now_on_a_channel_paused_for_a_container_change(
    session: Session, local: LocalSafety
) -> None:
    out = run(session, local, NOREPI, "start 8", "container pause", "status")
    words = _allowed_words(output_of(out, "status"))
    assert "start" not in words  # the safety process refuses it: resume the channel
    assert {"container VOLUME", "container resume", "emergency_stop"} <= set(words)


def test_newpump_names_the_channel_and_is_refused_where_no_pump_name_is_on_record(
    two: Session, bench: LocalSafety
) -> None:
    """``newpump CH`` accepts a replaced pump (``AcceptPump``; the whole case with NE-1000
    emulators is tests/channels/test_pump_name_restart.py). A simulated pump gives no name:
    the first pump on its port is taken as ever, and there is nothing to accept."""
    out = run(two, bench, "newpump", "newpump C", "newpump @B", "help newpump")
    assert "give the channel whose pump was replaced, e.g. newpump A" in output_of(out, "newpump")
    assert "there is no channel 'C'; channels: A, B" in output_of(out, "newpump C")
    refused = output_of(out, "newpump @B")
    assert "refused: no pump name is on record for channel B's pump" in refused, refused
    assert "replaced on purpose" in output_of(out, "help newpump")


def test_newpump_on_a_one_pump_bench_needs_no_channel(session: Session, local: LocalSafety) -> None:
    """A one-pump bench has one pump to replace: ``newpump`` alone asks for it (refused
    here only because a simulated pump gives no name: nothing is on record)."""
    out = run(session, local, "newpump")
    assert "refused: no pump name is on record for channel A's pump" in output_of(out, "newpump")
