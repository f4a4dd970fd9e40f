"""pumpctl journal show|export|plot on a bench of several pumps: every entry names its
channel, --channel keeps one channel's entries, alarms are told apart by scope, and the
plot has a line per channel and the patient's total."""

from __future__ import annotations

import csv
import io
import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cli.main import main
from controller.journal_plot import channel_colour, dose_axis, plot_data, sum_steps, time_range
from controller.journal_timeline import load_journals, locate
from firmware_bridge.pump_model import TruthSegment
from safety.kernel.model import HandoverEnded, HandoverStarted
from tests.journal_cmd.conftest import LIBRARY, Relay, relay_bench


@pytest.fixture(scope="module")
def relay() -> Iterator[Relay]:
    """A (10 mL) empties into a handover to B."""
    with relay_bench(10.0, 20 * 60, "pumpctl-test-journal-ch-") as r:
        yield r


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["journal", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_show_names_each_entrys_channel_and_the_handover(
    relay: Relay, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(capsys, "show", "--dir", str(relay.dir))
    assert code == 0
    assert "bench: channels A (mock" in out
    assert "A: read-back: running 30 mL/h" in out and "B: read-back: running 30 mL/h" in out
    assert "RELAY A -> B (quick" in out
    # the same condition on one pump of several names its pump
    assert "ALARM high B/pump:reset" in out and "alarm cleared: B/pump:reset" in out


def test_one_channel_at_a_time(relay: Relay, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "show", "--dir", str(relay.dir), "--channel", "B")
    assert code == 0
    assert "B: read-back" in out and "A: read-back" not in out
    assert "RELAY A -> B" in out  # a handover concerns the bench, shown with either
    code, _, err = _run(capsys, "show", "--dir", str(relay.dir), "--channel", "C")
    assert code == 2 and "--channel 'C'" in err and "channels: A, B" in err
    assert "Traceback" not in err


def test_exports_carry_the_channel(relay: Relay, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "export", "--dir", str(relay.dir), "--format", "csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0])[-1] == "channel"
    readbacks = [r for r in rows if r["kind"] == "readback"]
    assert {r["channel"] for r in readbacks} == {"A", "B"}
    assert all(r["summary"].startswith(f"{r['channel']}: ") for r in readbacks)
    raised = [r for r in rows if r["kind"] == "alarm_raised" and "pump:reset" in r["summary"]]
    assert {r["channel"] for r in raised} == {"B"}
    assert json.loads(raised[0]["payload"])["scope"] == "B"
    code, out, _ = _run(
        capsys, "export", "--dir", str(relay.dir), "--format", "jsonl", "--channel", "A"
    )
    records = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and {r["channel"] for r in records} <= {"A", None}
    assert any(r["channel"] == "A" for r in records)


def test_the_plot_has_a_line_per_channel_and_the_total(
    relay: Relay, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journals = load_journals(locate(directory=relay.dir), LIBRARY)
    data = plot_data(journals.events, alarms=journals.alarms(cleared=True))
    assert set(data.channel_rate) == {"A", "B"} and not data.rate
    # A ran 30 mL/h, then B took over: the total dose stays 8 mcg/min throughout, and
    # B's prime to waste is no dose at all (shaded instead)
    assert max(v for _, v in data.channel_dose["B"]) == pytest.approx(8)
    assert [v for _, v in data.dose] == [pytest.approx(8)]
    assert [c for _, _, c in data.primes] == ["B"]
    truths = {name: list(pump.truth.events) for name, pump in relay.local.pumps.items()}
    with_truth = plot_data(journals.events, truth=truths)
    assert max(v for _, v in with_truth.truth_dose) == pytest.approx(8, rel=1e-3)
    pytest.importorskip("matplotlib")
    png = tmp_path / "relay.png"
    code, _, _ = _run(capsys, "plot", "--dir", str(relay.dir), "--out", str(png))
    assert code == 0 and png.read_bytes().startswith(b"\x89PNG")


steps_st = st.lists(
    st.tuples(st.integers(0, 100).map(float), st.integers(0, 50).map(float)), max_size=6
).map(lambda xs: sorted(xs, key=lambda p: p[0]))


@given(st.lists(steps_st, max_size=4), st.integers(0, 110).map(float))
def test_summed_steps_are_the_sum_at_every_instant(
    series: list[list[tuple[float, float]]], t: float
) -> None:
    def at(steps: list[tuple[float, float]], when: float) -> float:
        value = 0.0
        for start, v in steps:
            if start <= when:
                value = v
        return value

    total = sum_steps(series)
    assert at(total, t) == sum(at(s, t) for s in series)
    assert all(a[1] != b[1] for a, b in itertools.pairwise(total))


def test_the_plot_of_one_channel_keeps_the_patients_total(
    relay: Relay, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journals = load_journals(locate(directory=relay.dir), LIBRARY)
    everything = plot_data(journals.events, alarms=journals.alarms(cleared=True))
    data = plot_data(journals.events, alarms=journals.alarms(cleared=True), channel="B")
    assert set(data.channel_rate) == set(data.channel_dose) == {"B"}
    assert data.dose == everything.dose  # the total binds the limits: always every channel
    assert [c for _, _, c in data.primes] == ["B"]
    assert all(a.scope != "A" for a in data.alarms)
    assert any(a.scope == "A" for a in everything.alarms)  # A's alarms are left out
    assert data.title.endswith("(channel B; total: every channel)")
    code, _, err = _run(
        capsys, "plot", "--dir", str(relay.dir), "--out", str(tmp_path / "x.png"), "--channel", "Z"
    )
    assert code != 0 and "--channel 'Z': the journal has no such channel; channels: A, B" in err
    pytest.importorskip("matplotlib")
    png = tmp_path / "b.png"
    code, _, _ = _run(capsys, "plot", "--dir", str(relay.dir), "--out", str(png), "--channel", "B")
    assert code == 0 and png.read_bytes().startswith(b"\x89PNG")


def test_the_plot_marks_the_handover_with_its_time_and_journal_words(relay: Relay) -> None:
    journals = load_journals(locate(directory=relay.dir), LIBRARY)
    started = next(e for e in journals.events if isinstance(e, HandoverStarted))
    ended = next(e for e in journals.events if isinstance(e, HandoverEnded))
    data = plot_data(journals.events, alarms=journals.alarms(cleared=True))
    [mark] = data.handovers
    assert (mark.from_channel, mark.to_channel, mark.outcome) == ("A", "B", "done")
    assert (mark.start, mark.end) == (started.now.clinical, ended.now.clinical)
    assert mark.label == "RELAY A -> B (quick, 1 step, 30 mL/h)"  # as journal show words it
    assert mark.end is not None and time_range(data)[1] >= mark.end
    # a handover concerns both its channels: kept with either
    for channel in ("A", "B"):
        assert plot_data(journals.events, channel=channel).handovers == [mark]
    # one still under way when the journal ends has no end (its band runs to the edge)
    cut = journals.events.index(ended)
    [open_mark] = plot_data(journals.events[:cut]).handovers
    assert open_mark.end is None and open_mark.outcome == ""


def test_alarms_are_spans_from_raised_to_cleared_named_with_their_channel(
    relay: Relay,
) -> None:
    journals = load_journals(locate(directory=relay.dir), LIBRARY)
    assert journals.replay is not None
    cleared = [a for a in journals.replay.alarms if a.event == "cleared"]
    data = plot_data(journals.events, alarms=journals.alarms(cleared=True))
    [reset] = [a for a in data.alarms if a.ident == "B/pump:reset"]  # journal show's name
    [clear] = [a for a in cleared if a.ident == "B/pump:reset"]
    assert reset.until == clear.time and reset.until > reset.time  # acknowledged at 0:30
    # the journal cut before the clear: the alarm is still active at its end
    cut = next(n for n, e in enumerate(journals.events) if e.now.clinical >= clear.time)
    early = [a for a in journals.alarms() if a.time < clear.time]
    data = plot_data(journals.events[:cut], alarms=early)
    [active] = [a for a in data.alarms if a.ident == "B/pump:reset"]
    assert active.until is None


def test_a_channel_keeps_its_colour_when_drawn_alone(relay: Relay) -> None:
    journals = load_journals(locate(directory=relay.dir), LIBRARY)
    everything = plot_data(journals.events)
    only_b = plot_data(journals.events, channel="B")
    assert everything.channels == only_b.channels == ["A", "B"]
    assert channel_colour(only_b, "B") == channel_colour(everything, "B")
    assert channel_colour(everything, "A") != channel_colour(everything, "B")


def test_the_delivered_flow_of_a_bench_is_the_channels_summed(relay: Relay) -> None:
    journals = load_journals(locate(directory=relay.dir), LIBRARY)
    truths = {name: list(pump.truth.events) for name, pump in relay.local.pumps.items()}
    data = plot_data(journals.events, truth=truths)
    segments = [
        [(e.start, e.rate_ml_h) for e in events if isinstance(e, TruthSegment)]
        for events in truths.values()
    ]
    assert data.truth_rate and data.truth_rate == sum_steps(segments)
    # A, then B, at 30 mL/h: the patient's flow stays 30 mL/h across the handover
    assert max(v for _, v in data.truth_rate) == pytest.approx(30, rel=1e-3)


def test_the_dose_axis_is_scaled_to_the_doses_with_far_limits_listed(relay: Relay) -> None:
    journals = load_journals(locate(directory=relay.dir), LIBRARY)
    data = plot_data(journals.events)
    axis = dose_axis(data)
    # 8 mcg/min against soft min 2, soft max 35, hard max 47: the detail is not squashed
    # under a limit six times the dose, and that limit is still named (legend)
    assert set(axis.drawn) == {"soft min"} and set(axis.above) == {"soft max", "hard max"}
    assert axis.top is not None and 8 < axis.top < 10
    assert dose_axis(plot_data([])).top is None  # nothing to scale to
