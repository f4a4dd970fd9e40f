"""pumpctl journal show and plot on a bench of two pumps: read-backs condensed per
channel, and a plot whose every line runs, forward in time, to the end of the journal."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

import cli.commands.journal as journal_cmd
from cli.main import main
from controller.journal_plot import PlotData, drawn_steps, plot_data, time_range
from controller.journal_timeline import Row, condensed, load_journals, locate
from tests.journal_cmd.conftest import LIBRARY, Relay


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["journal", *args])
    out, err = capsys.readouterr()
    return code, out, err


def _readback(t: float, channel: str, running: bool, rate: str) -> Row:
    reading: dict[str, Any] = {"running": running, "set_rate_ml_h": rate, "alarms": []}
    return Row(
        t, t, "safety", int(t), "readback", f"{channel}: {rate}", {"reading": reading},
        seq=t, channel=channel,
    )  # fmt: skip


def test_condensed_compares_a_readback_with_its_own_channels_last() -> None:
    rows = [
        _readback(0, "A", True, "30"),
        _readback(0.5, "B", False, "0"),
        _readback(5, "A", True, "30"),
        _readback(5.5, "B", False, "0"),
        _readback(10, "A", True, "22.5"),
        _readback(10.5, "B", True, "7.5"),
        _readback(15, "A", True, "22.5"),
        _readback(15.5, "B", True, "7.5"),
    ]
    shown = condensed(rows, both=False)
    assert [(r.clinical, r.channel) for r in shown] == [
        (0, "A"), (0.5, "B"), (10, "A"), (10.5, "B")
    ]  # fmt: skip


def _shown_readbacks(out: str) -> list[str]:
    return [
        line.split("  safety  ", 1)[1].strip() for line in out.splitlines() if "read-back:" in line
    ]


def test_show_hides_each_channels_unchanged_readbacks(
    relay: Relay, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(capsys, "show", "--dir", str(relay.dir))
    assert code == 0
    shown = _shown_readbacks(out)
    _, everything, _ = _run(capsys, "show", "--dir", str(relay.dir), "--all")
    journaled = _shown_readbacks(everything)
    assert len(journaled) > 150  # a read-back of each pump every 5 s for 7.5 min
    assert {s.split(":")[0] for s in shown} == {"A", "B"}
    assert len(shown) <= 12
    for channel in ("A", "B"):
        own = [s for s in shown if s.startswith(f"{channel}: ")]
        assert all(a != b for a, b in itertools.pairwise(own)), own
    # one channel alone is condensed the same way
    code, out, _ = _run(capsys, "show", "--dir", str(relay.dir), "--channel", "B")
    only_b = _shown_readbacks(out)
    assert code == 0 and only_b == [s for s in shown if s.startswith("B: ")]


def _at(corners: Sequence[tuple[float, float]], t: float) -> float:
    """A step line's value at ``t``: that of its last corner at or before ``t``, in the
    order it is drawn (a corner drawn back in time counts, as it would on the plot)."""
    value = 0.0
    for when, v in corners:
        if when <= t:
            value = v
    return value


def _plotted(
    relay: Relay, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> PlotData:
    """The data ``pumpctl journal plot`` draws (the drawing itself left out)."""
    seen: list[PlotData] = []

    def keep(data: PlotData, out: str | Path) -> Path:
        seen.append(data)
        return Path(out)

    monkeypatch.setattr(journal_cmd, "plot", keep)
    code, _, _ = _run(capsys, "plot", "--dir", str(relay.dir), "--out", "unused.png", *args)
    assert code == 0 and len(seen) == 1
    return seen[0]


def _journal_end(relay: Relay) -> float:
    journals = load_journals(locate(directory=relay.dir), LIBRARY)
    return max([e.clinical for e, _ in journals.safety] + [e.clinical for e in journals.controller])


def test_the_plot_ends_where_the_journal_ends(
    relay: Relay, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _plotted(relay, monkeypatch, capsys)
    end = _journal_end(relay)
    assert end == pytest.approx(450)  # 7:30, long after the last alarm and change
    assert max(a.time for a in data.alarms) < 60
    assert data.end == end and time_range(data) == (0.0, end)
    lines = [data.dose, *data.channel_rate.values(), *data.channel_dose.values()]
    assert set(data.channel_rate) == {"A", "B"} and len(lines) == 5
    for series in lines:
        corners = drawn_steps(series, end)
        times = [t for t, _ in corners]
        assert times == sorted(times), corners  # never drawn back in time
        assert corners[-1] == (end, series[-1][1])  # held to the end of the run
    assert _at(drawn_steps(data.dose, end), end) == pytest.approx(8)  # the patient's total


def test_the_plot_of_one_channel_steps_it_from_stopped_to_running(
    relay: Relay, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _plotted(relay, monkeypatch, capsys, "--channel", "B")
    end = _journal_end(relay)
    assert data.end == end and time_range(data) == (0.0, end)
    assert set(data.channel_rate) == {"B"}
    rate = drawn_steps(data.channel_rate["B"], end)
    dose = drawn_steps(data.channel_dose["B"], end)
    takeover = next(t for t, v in rate if v > 0)
    assert takeover == pytest.approx(90, abs=1)  # the handover, after the prime at 0:30
    for t in (0.0, 20.0, 40.0, 60.0, takeover - 1):  # B stopped (its prime is no dose)
        assert _at(rate, t) == 0 and _at(dose, t) == 0, t
    for t in (takeover, 200.0, end):
        assert _at(rate, t) == pytest.approx(30) and _at(dose, t) == pytest.approx(8), t
    assert [t for t, _ in rate] == sorted(t for t, _ in rate)
    assert _at(drawn_steps(data.dose, end), end) == pytest.approx(8)


def test_without_an_end_every_line_still_reaches_the_last_change(relay: Relay) -> None:
    """A caller that gives no end (the demo): the axis reaches the last change of any
    line, each channel's included, not the last alarm (here B's reset at 0:00)."""
    journals = load_journals(locate(directory=relay.dir), LIBRARY)
    data = plot_data(journals.events, alarms=journals.alarms(cleared=True), channel="B")
    assert data.end is None and max(a.time for a in data.alarms) == 0
    start, end = time_range(data)
    assert (start, end) == (0.0, data.channel_rate["B"][-1][0]) and end == pytest.approx(90)
    for series in (data.dose, data.channel_rate["B"], data.channel_dose["B"]):
        times = [t for t, _ in drawn_steps(series, end)]
        assert times == sorted(times) and times[-1] == end
