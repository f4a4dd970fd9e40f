"""The demo's plot (``demo.png``) draws what ``pumpctl journal plot`` draws for the same
journals: each channel apart, the prime, the handover, the alarms, and the pumps' ground
truth as the delivered flow; never one summed "bench" pump whose handover would show
only as spikes. In process, on a two-pump bench on the virtual clock."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cli.demo.summary import demo_plot_data
from controller.journal_plot import plot_data
from controller.journal_timeline import load_journals, locate
from tests.journal_cmd.conftest import LIBRARY, Relay, relay_bench


@pytest.fixture(scope="module")
def relay() -> Iterator[Relay]:
    """A (3 mL) hands over to B at 1:30; B primed to waste before."""
    with relay_bench(3.0, 3 * 60, "pumpctl-test-demo-plot-") as r:
        yield r


def test_the_demo_plot_is_the_journal_plot_with_the_delivered_flow(relay: Relay) -> None:
    journals = load_journals(locate(directory=relay.dir), LIBRARY)
    truths = {name: list(pump.truth.events) for name, pump in relay.local.pumps.items()}
    data = demo_plot_data(journals, truths)
    # the channels apart, each in the bench's colours, not one summed "bench" line
    assert set(data.channel_rate) == set(data.channel_dose) == {"A", "B"}
    assert data.channels == ["A", "B"] and not data.rate
    assert [c for _, _, c in data.primes] == ["B"]
    assert [(h.from_channel, h.to_channel) for h in data.handovers] == [("A", "B")]
    assert any(a.ident == "B/pump:reset" for a in data.alarms)
    # the ground truth, summed over the pumps, in both panels
    assert max(v for _, v in data.truth_rate) == pytest.approx(30, rel=1e-3)
    assert max(v for _, v in data.truth_dose) == pytest.approx(8, rel=1e-3)
    # and everything else as journal plot has it
    shown = plot_data(journals.events, alarms=journals.alarms(cleared=True), end=journals.end)
    assert (data.channel_rate, data.channel_dose, data.dose) == (
        shown.channel_rate,
        shown.channel_dose,
        shown.dose,
    )
    assert (data.alarms, data.handovers, data.primes, data.end) == (
        shown.alarms,
        shown.handovers,
        shown.primes,
        shown.end,
    )
