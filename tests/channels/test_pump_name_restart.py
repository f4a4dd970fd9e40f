"""Across a restart or a reboot of the safety process, a channel's port that now reaches
another pump is refused as after a reconnect: the name the channel's pump gave is in the
journal (``PumpNamed``) and preset on the fresh driver before it connects.

Two NE-1000 channels, each on a port name (``ttyUSB0``, ``ttyUSB1``) behind which any
emulated pump can be plugged (``ne1000_ports.PortBench``): B's pump an NE-500, so the
name check tells the two pumps apart.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from firmware_bridge.ne1000.emulator import FIRMWARE
from safety.kernel.model import (
    AcceptPump,
    CommsFailed,
    JournalRecovered,
    PumpNamed,
    ReadbackReceived,
)
from safety.kernel.state import Handover
from safety.library import DrugLibrary
from safety.reasons import Reason
from tests.channels.ne1000_ports import PORTS, PortBench
from tests.channels.support import ChannelBench, booted
from tests.kernel.support import norepi_standard

pytestmark = pytest.mark.timeout(60)

B_FIRMWARE = "NE500V2.100"
SPARE_FIRMWARE = "NE1000V3.930"  # the spare pump an operator puts in place of A's


@pytest.fixture
def bench(library: DrugLibrary, tmp_path: Path) -> Iterator[PortBench]:
    with booted(PortBench(tmp_path / "bench", library, firmware={"B": B_FIRMWARE})) as bench:
        yield bench


def test_ports_swapped_by_a_reboot_reach_no_pump_with_another_channels_program(
    bench: PortBench,
) -> None:
    """A runs norepinephrine, B stands idle. The board reboots and ``ttyUSB0`` and
    ``ttyUSB1`` come back swapped: each channel's fresh driver finds the other's pump, and
    refuses it as after a reconnect: the name query and nothing else reaches either pump
    (no syringe setting, no rate, no stop of A's running pump by B's channel), both
    channels raise the comms alarm saying what to do. Cabled back, supervision resumes."""
    assert bench.pump_names() == [("A", FIRMWARE), ("B", B_FIRMWARE)]  # heard at the first boot
    assert bench.load_on("A", norepi_standard(bench.library)).verdict.accepted
    assert bench.start_on("A", "8").execution == "applied"
    rate = bench.pumps["A"].snapshot().set_rate_ml_h
    assert rate > 0

    bench.plug(PORTS["A"], "B")
    bench.plug(PORTS["B"], "A")
    since = {pump: len(bench.heard[pump]) for pump in ("A", "B")}
    first = len(bench.events())
    bench.reboot(30)
    bench.core.poll()  # asked again: still the other pump, nothing new to journal

    after = bench.events()[first:]
    assert not any(isinstance(e, ReadbackReceived) for e in after)
    assert bench.pump_names() == [("A", FIRMWARE), ("B", B_FIRMWARE)]  # nothing taken as ours
    failures = {e.channel: e.detail for e in after if isinstance(e, CommsFailed)}
    assert f"names itself {B_FIRMWARE!r}, not {FIRMWARE!r}" in failures["A"]
    assert f"names itself {FIRMWARE!r}, not {B_FIRMWARE!r}" in failures["B"]
    assert len([e for e in after if isinstance(e, CommsFailed)]) == 2  # once per channel
    for channel in ("A", "B"):
        assert not bench.ch(channel).comms_ok
        alarm = bench.core.state.alarms.get("pump_comms", channel)
        assert alarm is not None and alarm.active and alarm.priority.name == "HIGH"
        assert "before the safety process restarted: another pump answers there" in alarm.message
        assert f"newpump {channel}" in alarm.message  # what to do, in the alarm itself
        assert "/dev/serial/by-id/" in alarm.message
    # each pump got the probe and the name query (asked again at each call), nothing else
    assert bench.requests("A", since["A"]) == {"", "VER"}
    assert bench.requests("B", since["B"]) == {"", "VER"}
    a, b = bench.pumps["A"].snapshot(), bench.pumps["B"].snapshot()
    assert a.running and a.set_rate_ml_h == rate  # A's infusion ran on, untouched
    assert not b.running and b.set_rate_ml_h == 0.0

    bench.plug(PORTS["A"], "A")  # cabled as before
    bench.plug(PORTS["B"], "B")
    bench.core.poll()  # the ports vanished under the drivers
    bench.core.poll()  # reopened: each channel's own pump
    assert bench.ch("A").comms_ok and bench.ch("B").comms_ok
    assert bench.change_on("A", "9").execution == "applied"
    assert bench.pumps["A"].snapshot().set_rate_ml_h > rate


def test_the_channels_own_pump_after_a_reboot_is_supervised_as_before(
    bench: PortBench,
) -> None:
    """The same pumps behind the same ports: the preset names match, the infusion is
    resumed and can be changed; the names are not journaled again."""
    assert bench.load_on("A", norepi_standard(bench.library)).verdict.accepted
    assert bench.start_on("A", "8").execution == "applied"
    rate = bench.pumps["A"].snapshot().set_rate_ml_h
    first = len(bench.events())
    bench.reboot(30)
    assert not any(isinstance(e, CommsFailed) for e in bench.events()[first:])
    assert bench.ch("A").comms_ok and bench.ch("B").comms_ok
    assert bench.pumps["A"].snapshot().running
    assert bench.change_on("A", "9").execution == "applied"
    assert bench.pumps["A"].snapshot().set_rate_ml_h > rate
    assert bench.pump_names() == [("A", FIRMWARE), ("B", B_FIRMWARE)]


def test_an_operator_accepts_a_replaced_pump_and_only_then(bench: PortBench) -> None:
    """A's pump is replaced by a spare while the safety process is down: refused at the
    restart like any other pump. ``newpump`` (``AcceptPump``) is refused on a channel
    whose own pump answers; on A it takes the spare: its name is journaled, it is read
    back, and the infusion it never ran is alarmed as stopped, not started on it. From
    then on the spare is A's pump across reboots, and the old one is the other pump."""
    assert bench.load_on("A", norepi_standard(bench.library)).verdict.accepted
    assert bench.start_on("A", "8").execution == "applied"
    spare = bench.add("spare", SPARE_FIRMWARE)
    bench.plug(PORTS["A"], "spare")
    bench.reboot(30)
    assert not bench.ch("A").comms_ok
    assert bench.requests("spare") == {"", "VER"}

    refused = bench.send(AcceptPump("B"))  # B's own pump answers: nothing to accept
    assert not refused.verdict.accepted
    assert refused.verdict.reason == Reason.PUMP_REPLACEMENT
    assert f"own pump ({B_FIRMWARE!r}) answers" in refused.verdict.message

    first = len(bench.events())
    accepted = bench.send(AcceptPump("A"))
    assert accepted.verdict.accepted, accepted.verdict.message
    named = [(e.channel, e.name) for e in bench.events()[first:] if isinstance(e, PumpNamed)]
    assert named == [("A", ""), ("A", SPARE_FIRMWARE)]
    assert bench.ch("A").comms_ok and bench.ch("A").pump_name == SPARE_FIRMWARE
    assert any(isinstance(e, ReadbackReceived) and e.channel == "A" for e in bench.events()[first:])
    assert "RUN" not in bench.requests("spare")  # never started by the acceptance
    assert not spare.snapshot().running
    # the remembered infusion is not running: told, latched until acknowledged
    stopped = bench.core.state.alarms.get("pump_stopped", "A")
    assert stopped is not None and stopped.annunciating and stopped.priority.name == "HIGH"
    assert not bench.ch("A").expected_running
    again = bench.send(AcceptPump("A"))  # the spare answers as A's own now
    assert not again.verdict.accepted and again.verdict.reason == Reason.PUMP_REPLACEMENT

    bench.reboot(30)
    assert bench.ch("A").comms_ok  # the spare, recorded, is A's pump after a reboot
    bench.plug(PORTS["A"], "A")  # the old pump back on the port
    since = len(bench.heard["A"])
    bench.reboot(30)
    assert not bench.ch("A").comms_ok
    assert bench.requests("A", since) == {"", "VER"}


def test_a_journal_without_pump_names_opens_and_takes_the_pumps_as_before(
    bench: PortBench,
) -> None:
    """A journal written before names were recorded (here: the same journal with its
    ``pump_named`` entries deleted) is replayed whole; with no name on record the fresh
    drivers take the pumps that answer, as they always did, and record their names."""
    db = sqlite3.connect(bench.journal.path)
    with db:
        db.execute("DELETE FROM entries WHERE kind = 'pump_named'")
    db.close()
    bench.plug(PORTS["A"], "B")
    bench.plug(PORTS["B"], "A")
    first = len(bench.events())
    bench.reboot(30)
    after = bench.events()[first:]
    assert not any(isinstance(e, JournalRecovered | CommsFailed) for e in after)
    assert bench.ch("A").comms_ok and bench.ch("B").comms_ok
    named = [(e.channel, e.name) for e in after if isinstance(e, PumpNamed)]
    assert named == [("A", B_FIRMWARE), ("B", FIRMWARE)]


def test_nothing_to_accept_where_no_pump_name_is_on_record(two: ChannelBench) -> None:
    """Simulated pumps give no name: the first pump on the port is the channel's, as ever,
    and a replacement is refused as having nothing to accept (not judged on comms)."""
    refused = two.send(AcceptPump("B"))
    assert not refused.verdict.accepted
    assert refused.verdict.reason == Reason.PUMP_REPLACEMENT
    assert "no pump name is on record for channel B's pump" in refused.verdict.message
    assert not [e for e in two.events() if isinstance(e, PumpNamed)]


@pytest.mark.parametrize("factor", [0.5, 1.0])
def test_a_running_replacement_is_stopped_not_handed_the_old_infusion(
    bench: PortBench, factor: float
) -> None:
    """A spare started at its keypad (at half A's rate, or at A's very rate) is accepted
    on A: the old infusion ends with the old pump, so the spare is a pump nobody started
    (stopped, readback_over), never raised to A's rate by the under-rate retry nor
    silently adopted at the same rate."""
    assert bench.load_on("A", norepi_standard(bench.library)).verdict.accepted
    assert bench.start_on("A", "8").execution == "applied"
    rate = bench.pumps["A"].snapshot().set_rate_ml_h
    spare = bench.add("spare", SPARE_FIRMWARE)
    spare.set_rate(rate * factor)
    spare.start()
    bench.plug(PORTS["A"], "spare")
    bench.reboot(30)
    since = len(bench.heard["spare"])
    accepted = bench.send(AcceptPump("A"))
    assert accepted.verdict.accepted and "its infusion ends with the old pump" in (
        accepted.verdict.message
    )
    assert not spare.snapshot().running
    sent = bench.sent_to("spare", since)
    assert not [c for c in sent if c.startswith("RAT ")]  # no rate set on it
    # stopped first (a running pump is never set up), then given the channel's syringe
    assert "STP" in sent and "DIA" not in sent[: sent.index("STP")]
    assert any(c.startswith("DIA ") for c in sent[sent.index("STP") :])
    over = bench.core.state.alarms.get("readback_over", "A")
    assert over is not None and "not started by the safety process" in over.message
    stopped = bench.core.state.alarms.get("pump_stopped", "A")
    assert stopped is not None and "replaced" in stopped.message
    assert not bench.ch("A").expected_running
    assert not bench.core.channels["A"].replaced


def test_a_replacement_during_a_run_is_given_the_syringe_before_any_rate(
    bench: PortBench,
) -> None:
    """Plugged in while the safety process runs (no restart): accepted, the spare is
    configured for the channel's syringe at its first reading, and only then can a rate
    be asked of it; until then the range is unknown and a start is refused."""
    assert bench.load_on("A", norepi_standard(bench.library)).verdict.accepted
    spare = bench.add("spare", SPARE_FIRMWARE)
    bench.plug(PORTS["A"], "spare")
    bench.core.poll()
    assert not bench.ch("A").comms_ok
    assert bench.send(AcceptPump("A")).verdict.accepted
    heard = bench.sent_to("spare")
    # named, then set up at its first reading
    assert "VER" in heard and heard.index("VER") < heard.index(
        next(c for c in heard if c.startswith("DIA "))
    )
    assert bench.start_on("A", "8").execution == "applied"
    assert spare.snapshot().running
    assert not bench.core.channels["A"].replaced


def test_a_replacements_counter_is_its_own(bench: PortBench) -> None:
    """A spare with 10 mL on its counter from earlier use: none of it is the patient's
    drug (no unseen delivery), nor displaced from the channel's syringe."""
    assert bench.load_on("A", norepi_standard(bench.library)).verdict.accepted
    assert bench.start_on("A", "8").execution == "applied"
    spare = bench.add("spare", SPARE_FIRMWARE)
    spare.set_rate(600.0)
    spare.start()
    bench.clinical.advance(60)  # 10 mL elsewhere
    spare.stop()
    bench.plug(PORTS["A"], "spare")
    bench.reboot(30)
    drug = bench.ch("A").drug
    assert drug is not None
    used = bench.ch("A").container.used_ml
    t = bench.core.now().clinical
    before = bench.core.state.history_of(drug).amount(0, t)
    assert bench.send(AcceptPump("A")).verdict.accepted
    bench.core.poll()
    after = bench.core.state.history_of(drug).amount(0, bench.core.now().clinical)
    # the old rate until the acceptance at most (well under 1 mcg here), not the 10 mL
    # (160 mcg) on the spare's counter
    assert before <= after < before + 1.0
    assert bench.ch("A").container.used_ml == pytest.approx(used, abs=0.05)


def test_no_replacement_during_a_relay_handover(two: ChannelBench) -> None:
    """The safety process is driving both pumps of a handover: neither is replaced
    under it (the refusal comes before any other check)."""
    two.core.state = replace(two.core.state, handover=Handover("A", "B", "overlap", 0.0, 4))
    for channel in ("A", "B"):
        refused = two.send(AcceptPump(channel))
        assert not refused.verdict.accepted
        assert refused.verdict.reason == Reason.PUMP_REPLACEMENT
        assert "a relay handover A -> B is running" in refused.verdict.message


def test_a_replacement_accepted_while_the_own_pump_was_only_silent_names_it_again(
    bench: PortBench,
) -> None:
    """Accepted while A's own pump was silent for a moment (its link up all along): the
    driver asks the name again at its next exchange, so the pump that answers, A's own,
    is recorded again and a later swap of the ports is still refused."""
    assert bench.load_on("A", norepi_standard(bench.library)).verdict.accepted
    bench.core.state = bench.core.state.with_channel("A", comms_ok=False)  # a silent moment
    since = len(bench.heard["A"])
    assert bench.send(AcceptPump("A")).verdict.accepted
    bench.core.poll()
    assert "VER" in bench.requests("A", since)  # asked again, though the link stayed up
    assert bench.ch("A").pump_name == FIRMWARE and bench.ch("A").comms_ok
    bench.plug(PORTS["A"], "B")
    bench.plug(PORTS["B"], "A")
    bench.reboot(30)
    assert not bench.ch("A").comms_ok and not bench.ch("B").comms_ok  # the swap is seen


def test_ports_swapped_are_not_accepted_as_a_replacement(bench: PortBench) -> None:
    """After a reboot that swapped the ports, each channel hears the other's pump: an
    operator who answers A's refusal with ``newpump A`` would drive B's pump as A's.
    Refused, naming the swap; a spare of B's very model on A's port, while B's own pump
    answers on B's, is a replacement and accepted."""
    assert bench.load_on("A", norepi_standard(bench.library)).verdict.accepted
    assert bench.start_on("A", "8").execution == "applied"
    bench.plug(PORTS["A"], "B")
    bench.plug(PORTS["B"], "A")
    bench.reboot(30)
    assert bench.ch("A").other_pump == B_FIRMWARE
    refused = bench.send(AcceptPump("A"))
    assert not refused.verdict.accepted
    assert refused.verdict.reason == Reason.PUMP_REPLACEMENT
    assert (
        f"names itself {B_FIRMWARE!r}, as channel B's pump, which does not answer on its "
        "own port: the ports look swapped"
    ) in refused.verdict.message
    assert bench.pumps["A"].snapshot().running  # A's pump runs on, untouched

    bench.add("spare", B_FIRMWARE)  # the same model and firmware as B's pump
    bench.plug(PORTS["A"], "spare")
    bench.plug(PORTS["B"], "B")
    bench.reboot(30)
    assert bench.ch("B").comms_ok and bench.ch("A").other_pump == B_FIRMWARE
    assert bench.send(AcceptPump("A")).verdict.accepted
