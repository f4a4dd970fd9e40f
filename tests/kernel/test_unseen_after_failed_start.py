"""Delivery the safety process could not see is counted even when the pump cannot be
read at the restart itself (S3, S16; found by the state machine).

The board reboots with the pump running on; the timeline can credit only a lower bound of
the gap, so what the pump gave meanwhile is counted from its own volume counter
(``observe.count_unseen_delivery``). That count used to be made only from the reading taken
at the start: one lost reply at that first contact, and the gap's delivery was never
counted, so the cap guard let the pump run past the cap (here until the syringe ran dry
at 68.1 mg of the 68 mg per 24 h).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from safety.library import DrugLibrary
from tests.kernel.support import Bench, norepi_weight_based


@pytest.mark.parametrize("fault", ["lose_ack", "drop"])
def test_the_gap_is_counted_at_the_first_reading_after_a_failed_start(
    make_bench: Callable[..., Bench], library: DrugLibrary, fault: str
) -> None:
    spec = norepi_weight_based(library)
    bench = make_bench()
    rate = float(bench.pump_rate_for(spec, "0.9"))  # 63 mcg/min at 70 kg
    per_s = rate * 16 / 3600
    bench.seed(spec, [(0.0, "0.9")], boot_at=67_300 / per_s)
    bench.boot()
    bench.advance(5)
    getattr(bench.wire, f"{fault}_next")(1)  # the new process's first contact is lost
    bench.reboot(6 * 60.0, wall_synced=False)
    assert not bench.core.state.comms_ok
    assert bench.core.state.history.boluses == ()  # nothing to count it from yet

    bench.advance(15 * 60)  # the pump answers again at the next poll

    unseen = bench.core.state.history.boluses
    assert len(unseen) == 1
    assert unseen[0].amount == pytest.approx(per_s * (6 * 60.0 - 5.0), rel=0.05)
    delivered = 67_300 + bench.pump.truth.delivered_ml(bench.clinical.now()) * 16
    assert delivered <= 68_000
    report = bench.judge()
    assert report.ok, report.violations
