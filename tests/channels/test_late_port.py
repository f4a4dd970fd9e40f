"""A channel whose serial port is missing when the safety process starts (a USB-serial
adapter plugged in late, or unplugged across a reboot) is reached by the next poll once
the port appears, exactly as a pump first heard after start: its name is checked first
(another pump than the journal's record is refused as after a reconnect), then it is
read, its rate range is learned and its comms alarm clears. While the port is missing,
the channel's comms alarm stays as it is and nothing reaches any pump for it.

Channels A and B on NE-1000 drivers made afresh by every safety process
(``ne1000_ports.PortBench``): each on a port of its own, or both at addresses 0 and 1 on
one line (``ttyUSB2``); the ports in ``missing`` are not there at the first boot. Ports
are opened without the pacing pause (``prompt_reopening``): what is tested is that a port
appearing is taken up, not when.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware_bridge.ne1000.emulator import FIRMWARE
from safety.alarms import Alarm
from safety.kernel.model import CommsFailed, PumpNamed, ReadbackReceived
from safety.library import DrugLibrary
from tests.channels.ne1000_ports import LINE, PORTS, PortBench
from tests.channels.support import booted
from tests.kernel.support import norepi_standard

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("prompt_reopening")]

B_FIRMWARE = "NE500V2.100"
SPARE_FIRMWARE = "NE1000V3.930"  # a pump that is not A's


class LateBench(PortBench):
    """B's pump an NE-500, so that a pump named at a late start is told from its
    neighbour; which ports are ``missing`` and whether A and B share a line (``one_line``)
    is what every test here chooses."""

    def __init__(
        self, root: Path, library: DrugLibrary, *, missing: tuple[str, ...], one_line: bool
    ) -> None:
        super().__init__(
            root, library, firmware={"B": B_FIRMWARE}, one_line=one_line, missing=missing
        )

    def comms_alarm(self, channel: str) -> Alarm | None:
        return self.core.state.alarms.get("pump_comms", channel)


def _late(tmp_path: Path, library: DrugLibrary, *, one_line: bool) -> LateBench:
    missing = (LINE,) if one_line else (PORTS["A"],)
    return LateBench(tmp_path / "bench", library, missing=missing, one_line=one_line)


@pytest.fixture(params=["own-port", "one-line"])
def late(
    request: pytest.FixtureRequest, library: DrugLibrary, tmp_path: Path
) -> Iterator[LateBench]:
    """A's port (or the line of A and B) missing at the first start."""
    with booted(_late(tmp_path, library, one_line=request.param == "one-line")) as bench:
        yield bench


def test_a_port_plugged_in_after_start_is_opened_by_the_next_poll(late: LateBench) -> None:
    """A's port is missing at start: the high comms alarm, nothing journaled as A's pump.
    It stays so, unchanged and not journaled again, while the port is missing. Plugged in,
    the next poll opens it: the pump names itself first, its name is journaled, it is read
    and given the channel's syringe after that reading (its range learned), the alarm
    clears; a program then runs on it."""
    late_channels = ("A", "B") if late.one_line else ("A",)
    for channel in late_channels:
        assert not late.ch(channel).comms_ok
        alarm = late.comms_alarm(channel)
        assert alarm is not None and alarm.active and alarm.priority.name == "HIGH"
        assert "not reachable at start" in alarm.message
        assert not late.core.channels[channel].known
    assert ("A", FIRMWARE) not in late.pump_names()

    first = len(late.events())
    late.core.poll()  # still missing: the alarm stands, nothing new to journal
    late.core.poll()
    missing = [
        e
        for e in late.events()[first:]
        if isinstance(e, CommsFailed | ReadbackReceived) and e.channel in late_channels
    ]
    assert not missing
    for channel in late_channels:
        alarm = late.comms_alarm(channel)
        assert alarm is not None and alarm.active and "not reachable at start" in alarm.message

    if late.one_line:
        late.plug(LINE, "A", "B")
    else:
        late.plug(PORTS["A"], "A")
    first = len(late.events())
    late.core.poll()
    after = late.events()[first:]
    for channel, name in (("A", FIRMWARE), ("B", B_FIRMWARE)):
        assert late.ch(channel).comms_ok
        alarm = late.comms_alarm(channel)
        assert alarm is None or not alarm.active
        assert late.core.channels[channel].known  # the rate range is learned
        assert late.ch(channel).pump_name == name
    named = [(e.channel, e.name) for e in after if isinstance(e, PumpNamed)]
    assert named == [("A", FIRMWARE), ("B", B_FIRMWARE)][: len(late_channels)]
    assert {e.channel for e in after if isinstance(e, ReadbackReceived)} == {"A", "B"}
    sent = late.sent_to("A")
    # the probe and the name question first; the syringe only after the pump was read
    assert sent[:2] == ["", "VER"]
    dia = next(i for i, c in enumerate(sent) if c.startswith("DIA "))
    assert "DIS" in sent[:dia]

    assert late.load_on("A", norepi_standard(late.library)).verdict.accepted
    assert late.start_on("A", "8").execution == "applied"
    assert late.pumps["A"].snapshot().running


def test_a_late_pump_that_is_not_the_channels_is_refused_as_after_a_reconnect(
    library: DrugLibrary, tmp_path: Path
) -> None:
    """A's pump was named at the first boot (journaled). Its adapter is unplugged across
    a reboot, and another pump is plugged in on A's port after the start: at the next
    poll it is asked its name and refused as after a reconnect (probe and name question,
    nothing else; the comms alarm says another pump answers there, with what to do); A's
    own pump plugged back is taken up again."""
    bench = LateBench(tmp_path / "bench", library, missing=(), one_line=False)
    with booted(bench):
        assert bench.pump_names() == [("A", FIRMWARE), ("B", B_FIRMWARE)]
        bench.unplug(PORTS["A"])
        bench.reboot(30)
        alarm = bench.comms_alarm("A")
        assert alarm is not None and alarm.active and "not reachable at start" in alarm.message

        spare = bench.add("spare", SPARE_FIRMWARE)
        bench.plug(PORTS["A"], "spare")
        first = len(bench.events())
        bench.core.poll()
        bench.core.poll()  # asked again: still the other pump, nothing new to journal
        after = bench.events()[first:]
        assert not [e for e in after if isinstance(e, ReadbackReceived) and e.channel == "A"]
        failures = [e for e in after if isinstance(e, CommsFailed)]
        assert [(e.channel, e.other_pump) for e in failures] == [("A", SPARE_FIRMWARE)]
        assert f"names itself {SPARE_FIRMWARE!r}, not {FIRMWARE!r}" in failures[0].detail
        assert not bench.ch("A").comms_ok
        alarm = bench.comms_alarm("A")
        assert alarm is not None and alarm.active
        assert "before the safety process restarted: another pump answers there" in alarm.message
        assert "newpump A" in alarm.message
        assert set(bench.sent_to("spare")) == {"", "VER"}
        assert not spare.snapshot().running and spare.snapshot().set_rate_ml_h == 0.0
        assert bench.pump_names() == [("A", FIRMWARE), ("B", B_FIRMWARE)]  # nothing taken

        bench.plug(PORTS["A"], "A")  # A's own pump back on its port
        bench.core.poll()  # the port vanished under the driver
        bench.core.poll()  # reopened: the channel's own pump
        assert bench.ch("A").comms_ok
        alarm = bench.comms_alarm("A")
        assert alarm is None or not alarm.active
