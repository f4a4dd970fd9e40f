"""What a channel's view says of a prime to waste: nothing reached the patient. The pump
runs fast during a prime (the mock: its top rate), and its volume counter counts the
prime; neither is a dose (the status showed 533 mcg/min against a hard maximum of 47, and
the prime's mL as infused drug, before and after a handover)."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

from controller.session import Session
from safety.ipc.local import LocalChannel, LocalSafety
from safety.library import DrugLibrary
from safety.status import ChannelView
from tests.controller.conftest import drive


@pytest.fixture
def bench(library: DrugLibrary) -> Iterator[LocalSafety]:
    channels = (LocalChannel("A", loaded_volume_ml=10.0), LocalChannel("B"))
    with LocalSafety(library=library, channels=channels) as link:
        yield link


def _view(session: Session, name: str) -> ChannelView:
    view = session.status().channel(name)
    assert view is not None
    return view


def test_a_prime_is_no_dose_and_no_infused_volume(bench: LocalSafety, library: DrugLibrary) -> None:
    with Session.open(bench, library, clinical=bench.clinical) as session:
        session.program("norepinephrine", "4 mg/250 mL", "D5W")
        session.start(8)  # 30 mL/h: A's 10 mL last 20 min
        session.program("norepinephrine", "4 mg/250 mL", "D5W", channel="B")
        bench.pumps["B"].connect_line(False)
        session.prime("2", "B", confirm_line_disconnected=True)
        priming = _view(session, "B")
        assert priming.role == "priming" and priming.running  # the pump's truth, fast
        assert priming.dose == Decimal(0) and priming.infused_ml == 0.0  # the patient's
        drive(bench, session, 60)
        primed = _view(session, "B")
        assert primed.primed and not primed.running
        assert primed.infused_ml == pytest.approx(0.0, abs=1e-9)
        bench.pumps["B"].connect_line(True)
        session.arm_standby("B", "A")
        drive(bench, session, 25 * 60)
        after = _view(session, "B")
        assert after.role == "active" and after.dose == Decimal(8)
        pumped = bench.pumps["B"].snapshot().infused_ml  # the pump's own counter
        assert pumped > 2.0
        assert after.infused_ml == pytest.approx(pumped - 2.0, abs=0.01)
