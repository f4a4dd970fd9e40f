"""``pumpctl journal show|export|plot``: both journals of a bench, merged by clinical time.

Reads the safety process's journal and the controller's (either or both), read-only, so
it is safe on the journals of a running bench. ``show`` prints a readable timeline
(requests with their verdicts and reasons, pump commands, read-backs only when something
changed, alarms raised and cleared, operator actions, plans, state changes); ``export``
writes every entry as CSV or JSON Lines; ``plot`` draws dose and rate over time with the
therapy's limits and the alarms (needs matplotlib).

The safety process's alarms are not journaled as such: they are rebuilt by replaying its
events through the kernel (as the safety process does at a restart), with the drug
library given by ``--library`` (default: the bench's).

On a bench of several pumps every line names its channel (``B: read-back ...``; an alarm
by ``B/pump:occlusion``), ``--channel B`` keeps that channel's entries and the bench's
(the patient, the link, a handover), the exports gain a ``channel`` column, and the plot
draws a line per channel and the patient's total (with ``--channel B``: B's lines and
alarms beside the total).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path

from cli.commands.output import (
    EXIT_BAD_INPUT,
    EXIT_OK,
    CommandError,
    SubParsers,
    bad_input,
    library_from_option,
    print_json,
)
from controller.journal_plot import PlotUnavailable, plot, plot_data
from controller.journal_timeline import (
    Journals,
    Row,
    condensed,
    format_time,
    journal_channels,
    load_journals,
    locate,
)
from safety.journal_read import JournalReadError

CSV_COLUMNS = (
    "clinical_s",
    "time",
    "wall",
    "process",
    "id",
    "kind",
    "summary",
    "derived",
    "payload",
)


def add_parser(sub: SubParsers) -> None:
    p = sub.add_parser(
        "journal",
        help="show, export or plot the journals (safety + controller, merged by time)",
        description="Read the safety process's and the controller's journals (read-only, "
        "safe while they run), merged by clinical time. Exit 0, or 2 for a missing or "
        "unreadable journal (or no matplotlib for plot), or 141 (quietly) when the reader "
        "of the output closes it early, as `| head` does.",
    )
    jsub = p.add_subparsers(dest="journal_command", metavar="ACTION")
    jsub.required = True

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("--safety", metavar="FILE", help="the safety process's journal")
        q.add_argument("--controller", metavar="FILE", help="the controller's journal")
        q.add_argument(
            "--dir",
            metavar="DIR",
            help="a folder holding safety-journal.sqlite and/or controller-journal.sqlite",
        )
        q.add_argument(
            "--library", metavar="FILE", help="drug library (default config/drug_library.toml)"
        )

    def channel(q: argparse.ArgumentParser) -> None:
        q.add_argument(
            "--channel",
            metavar="NAME",
            help="a bench of several pumps: this channel's entries and the bench's only",
        )

    show = jsub.add_parser("show", help="print a readable timeline")
    common(show)
    show.add_argument(
        "--all", action="store_true", help="every entry (every read-back and tick, duplicates)"
    )
    show.add_argument("--json", action="store_true", help="the rows as one JSON object")
    channel(show)
    show.set_defaults(handler=run_show)

    export = jsub.add_parser("export", help="every entry as CSV or JSON Lines")
    common(export)
    export.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    export.add_argument("--out", metavar="FILE", help="write here (default: standard output)")
    channel(export)
    export.set_defaults(handler=run_export)

    plot_p = jsub.add_parser("plot", help="dose and rate over time, limits and alarms, as PNG")
    common(plot_p)
    plot_p.add_argument("--out", metavar="FILE.png", required=True, help="the PNG to write")
    plot_p.add_argument("--title", default="pumpctl journal", help="title of the plot")
    channel(plot_p)
    plot_p.set_defaults(handler=run_plot)


def _load(args: argparse.Namespace) -> Journals:
    library = library_from_option(args.library)
    try:
        files = locate(args.safety, args.controller, args.dir)
        return load_journals(files, library)
    except JournalReadError as exc:
        raise CommandError("bad_journal", str(exc), EXIT_BAD_INPUT) from None


def _rows(journals: Journals, channel: str | None) -> list[Row]:
    """Every row, or ``channel``'s and the bench's."""
    rows = journals.rows()
    if channel is None:
        return rows
    _check_channel(journals, channel)
    return [r for r in rows if r.channel in (None, channel)]


def _check_channel(journals: Journals, channel: str) -> None:
    """A channel the journal does not have is bad input naming those it has."""
    names = journal_channels(journals.events)
    if channel not in names:
        bad_input(
            f"--channel {channel!r}: the journal has no such channel; channels: "
            f"{', '.join(names) or 'none (no safety journal read)'}",
            field="channel",
        )


def run_show(args: argparse.Namespace) -> int:
    journals = _load(args)
    rows = _rows(journals, args.channel)
    both = journals.files.safety is not None and journals.files.controller is not None
    shown = rows if args.all else condensed(rows, both=both)
    problem = journals.replay.problem if journals.replay is not None else None
    if args.json:
        print_json(
            {
                "safety": str(journals.files.safety) if journals.files.safety else None,
                "controller": str(journals.files.controller) if journals.files.controller else None,
                "problem": problem,
                "rows": [r.to_json() for r in shown],
            }
        )
        return EXIT_OK
    for label, path, count in (
        ("safety journal", journals.files.safety, len(journals.safety)),
        ("controller journal", journals.files.controller, len(journals.controller)),
    ):
        if path is not None:
            print(f"{label}: {path} ({count} entries)")
    if problem:
        print(f"note: {problem}")
    print("clinical time, process, what happened (read-backs shown only when they change):")
    for row in shown:
        print(_line(row))
    return EXIT_OK


def _line(row: Row) -> str:
    return f"{format_time(row.clinical):>10}  {row.process:<10}  {row.summary}"


def run_export(args: argparse.Namespace) -> int:
    journals = _load(args)
    rows = _rows(journals, args.channel)
    several = len(journal_channels(journals.events)) > 1
    if args.format == "jsonl":
        text = "".join(json.dumps(r.to_json(), sort_keys=True, default=str) + "\n" for r in rows)
    else:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        # a one-pump bench's export keeps its columns; several pumps add the channel's
        writer.writerow((*CSV_COLUMNS, "channel") if several else CSV_COLUMNS)
        for r in rows:
            cells = (
                repr(r.clinical),
                format_time(r.clinical),
                repr(r.wall),
                r.process,
                "" if r.id is None else r.id,
                r.kind,
                r.summary,
                "true" if r.derived else "false",
                json.dumps(r.payload, sort_keys=True, default=str),
            )
            writer.writerow((*cells, r.channel or "") if several else cells)
        text = buffer.getvalue()
    if args.out:
        out = Path(args.out)
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text, encoding="utf-8")
        except OSError as exc:
            bad_input(f"--out {out}: cannot write ({exc})", field="out")
        print(f"{len(rows)} rows written to {out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def run_plot(args: argparse.Namespace) -> int:
    journals = _load(args)
    if journals.files.safety is None:
        bad_input("plot needs the safety journal (--safety FILE or --dir DIR)", field="safety")
    assert journals.library is not None
    if args.channel is not None:
        _check_channel(journals, args.channel)
    data = plot_data(
        journals.events,
        alarms=journals.alarms(cleared=True),
        title=args.title,
        end=journals.end,
        channel=args.channel,
    )
    try:
        path = plot(data, args.out)
    except PlotUnavailable as exc:
        raise CommandError("plot_unavailable", str(exc), EXIT_BAD_INPUT) from None
    except OSError as exc:
        bad_input(f"--out {args.out}: cannot write ({exc})", field="out")
    print(f"plot written to {path}")
    return EXIT_OK
