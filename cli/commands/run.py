"""``pumpctl run``: the operator console, attached to the bench's safety process.

Attaches to the safety process named by the bench config (its socket and key); if none
answers, starts one as a child (``python -m safety --config FILE``, waiting for its
``ready`` line) unless ``--no-start``. The attach re-synchronises the console from the
safety process and never changes the rate. On quit, a safety process this command
started is stopped only if nothing on the bench needs it: no channel running, priming,
paused for a container change or handing over, no infusion of the console's channel in
progress and no alarm active. Otherwise it stays and supervises (software leaving must
never stop a vasopressor, on whichever channel it runs).

When the bench config names a MAP monitor (``[monitor]``), the console also has the
closed loop (``loop`` commands): its monitor is opened at start and read on its own
thread, so the loop has fresh MAP when it is engaged; a monitor that is not there yet is
tried again every few seconds and is no reason to refuse the console.
"""

from __future__ import annotations

import argparse
import sys
import threading

from cli.commands.output import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_OK,
    CommandError,
    SubParsers,
)
from controller.bench_config import BenchConfig, load_bench_config
from controller.closed_loop.service import LoopService
from controller.connect import connect, start_safety
from controller.console import BANNER, Console, run_with_status_bar
from controller.errors import ControllerError
from controller.machine import State
from controller.session import Session
from controller.session_link import LinkUnavailable
from safety.ipc.launch import SafetyChild
from safety.start_up import freeze_start_up
from safety.status import Snapshot

#: real seconds between two looks for a status change worth printing
LIVE_PERIOD_S = 1.0


def add_parser(sub: SubParsers) -> None:
    p = sub.add_parser(
        "run",
        help="interactive operator console, attached to the safety process",
        description="Attach to the bench's safety process (start it if none is running) "
        "and open the operator console: program, start, titrate, wean, stop, estop, ack, "
        "status, plan, history, help; loop (the closed loop) when the bench config names a "
        "MAP monitor ([monitor]). Exit 0 on quit, 1 if the safety process cannot be "
        "reached or started, 2 for a bad config.",
    )
    p.add_argument(
        "--config",
        metavar="FILE",
        help="bench config: the safety process's TOML (default $PUMPCTL_CONFIG, else "
        "config/bench/demo-safety.toml)",
    )
    p.add_argument(
        "--journal", metavar="PATH", help="controller journal (default: beside the safety one)"
    )
    p.add_argument(
        "--no-start",
        action="store_true",
        help="only attach to a running safety process; never start one",
    )
    p.add_argument("--quiet", action="store_true", help="no live status line between commands")
    p.add_argument(
        "--channel",
        metavar="NAME",
        help="a bench of several pumps: the channel the console works on first "
        "(default the first; 'channel NAME' switches later)",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        bench = load_bench_config(args.config)
    except ControllerError as exc:
        raise CommandError(exc.code, exc.message, EXIT_BAD_INPUT, exc.field) from None
    child: SafetyChild | None = None
    try:
        try:
            session = connect(bench.path, journal=args.journal)
        except LinkUnavailable as exc:
            if args.no_start:
                raise CommandError("safety_unavailable", exc.message, EXIT_FAILED) from None
            print(f"no safety process on {bench.socket}: starting one ...", flush=True)
            child = start_safety(bench.path)
            print(f"safety process started (pid {child.pid}, log {child.log_path})", flush=True)
            session = connect(bench.path, journal=args.journal)
    except ControllerError as exc:
        if child is not None:
            child.stop()
        code = EXIT_BAD_INPUT if exc.code == "bad_config" else EXIT_FAILED
        raise CommandError(exc.code, exc.message, code, exc.field) from None
    if args.channel is not None:
        try:
            session.select_channel(args.channel)
        except ControllerError as exc:  # an unknown name: the message lists the channels
            busy = _supervising(session)
            session.close()
            _leave(child, busy)
            raise CommandError(exc.code, exc.message, EXIT_BAD_INPUT, "channel") from None
    loop = _closed_loop(bench, session)
    freeze_start_up()  # the session is built: see safety.start_up
    try:
        return _console(session, quiet=args.quiet, loop=loop)
    finally:
        if loop is not None:
            loop.close()
        busy = _supervising(session)
        session.close()
        _leave(child, busy)


def _closed_loop(bench: BenchConfig, session: Session) -> LoopService | None:
    """The closed loop on the bench's monitor, reading it already (None: no monitor)."""
    if bench.monitor is None:
        return None
    loop = LoopService(session, bench.monitor.source(session.clinical_now))
    problem = loop.open()
    where = bench.monitor.describe()
    if problem is None:
        print(f"closed loop available: MAP from {where} (loop engage ...)", flush=True)
    else:
        print(f"closed loop: the monitor ({where}) cannot be read yet: {problem}; "
              "trying again every few seconds", flush=True)  # fmt: skip
    return loop


def _console(session: Session, *, quiet: bool, loop: LoopService | None = None) -> int:
    interactive = sys.stdin.isatty()
    console = Console(
        session, stdin=None if interactive else sys.stdin, echo=not interactive, loop=loop
    )
    session.run_in_background()
    if loop is not None:
        loop.run_in_background()
    if interactive and not quiet:
        # the live status in a bottom toolbar, never over what is being typed
        try:
            shown = run_with_status_bar(console, BANNER)
        except BaseException:
            console.close()
            raise
        if shown:
            console.close()
            return EXIT_OK
    stop = threading.Event()
    if not quiet:
        threading.Thread(target=_live, args=(console, stop), daemon=True).start()
    intro: str | None = BANNER
    try:
        while not console.stopped:
            try:
                console.cmdloop(intro)
            except KeyboardInterrupt:
                console.say("\n(interrupted: type estop to stop the pump, quit to leave)")
            intro = None
    finally:
        stop.set()
        console.close()
    return EXIT_OK


def _live(console: Console, stop: threading.Event) -> None:
    while not stop.wait(LIVE_PERIOD_S):
        try:
            console.live_tick()
        except Exception:  # the live line is a convenience; never kill the console
            continue


#: what the console's channel is doing when its infusion needs the safety process
_BUSY_STATES = (State.INFUSING, State.TITRATING, State.WEANING, State.HOLD, State.ALARM)
#: a channel in one of these relay roles has a pump to watch or a deadline to keep
_BUSY_ROLES = ("active", "priming", "paused", "handing over")


def _supervising(session: Session) -> str | None:
    """Why the safety process must outlive this console (None: nothing needs it). The
    whole bench counts, not the channel the console is on: quitting while on channel B
    must not leave channel A's pump running unsupervised. Asks the safety process for
    its state now; when it cannot be asked, the last state seen decides, and none at
    all is a reason to stay."""
    if session.state in _BUSY_STATES:
        return f"the infusion is {session.state.value}"
    try:
        snapshot: Snapshot | None = session.status()
    except ControllerError:
        snapshot = session.snapshot
    if snapshot is None:
        return "the bench's state is not known"
    for view in snapshot.channels:
        if view.running:
            return f"channel {view.name}'s pump is running"
        if view.role in _BUSY_ROLES:
            return f"channel {view.name} is {view.role}"
    active = [a.ident for a in snapshot.alarms if a.active]
    if active:
        return f"alarms are active ({', '.join(active)})"
    return None


def _leave(child: SafetyChild | None, busy: str | None) -> None:
    if child is None:
        return
    if busy is not None:
        print(
            f"the safety process (pid {child.pid}) keeps running and supervising the "
            f"bench ({busy}); its log: {child.log_path}",
            flush=True,
        )
        return
    status = child.stop()
    print(f"safety process stopped (status {status})", flush=True)
