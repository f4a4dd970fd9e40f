"""A pump reading is stamped with the clinical time it came back (S13 accuracy).

On a scaled clock (the demo, the HIL rigs) a reply that takes 50 ms of real time covers
clinical seconds. The pump's volume counter is read at the reply; judging it against the
verified rate up to the *request* counts the reply's time as drug nobody ordered, a
false over-infusion alarm that a loaded machine produces at random.
"""

from __future__ import annotations

from decimal import Decimal

from drivers.pumps.base import PumpStatus
from safety.ipc.local import LocalSafety
from safety.kernel.model import LoadProgram, ProgramSpec, StartInfusion
from safety.library import DrugLibrary

#: clinical seconds each slow reply takes: longer than the accuracy span, so a reading
#: stamped at its request would count over twice the drug the verified rate gives
SLOW_REPLY_S = 400.0


def test_slow_replies_are_not_read_as_over_infusion(
    library: DrugLibrary, spec: ProgramSpec
) -> None:
    with LocalSafety(library=library) as link:
        link.attach()
        assert link.request(LoadProgram(spec)).verdict.accepted
        assert link.request(StartInfusion(Decimal(8))).verdict.accepted
        link.advance(20 * 60)  # a steady baseline: the accuracy check has judged spans
        assert link.snapshot().alarms == ()

        fast = link.driver.read_status
        slow_replies = 2  # two in a row: the second always closes an accuracy span

        def slow_read() -> PumpStatus:
            nonlocal slow_replies
            if slow_replies > 0:
                slow_replies -= 1
                link.clinical.advance(SLOW_REPLY_S)
            return fast()

        link.driver.read_status = slow_read  # type: ignore[method-assign]
        link.advance(30 * 60)
        assert slow_replies == 0

        snapshot = link.snapshot()
        assert snapshot.running and snapshot.alarms == (), snapshot.alarms
