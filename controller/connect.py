"""Reaching a bench's safety process: connect to it over its socket, or start it first.

``connect(config)`` is the research script's one-liner: read the bench config, open the
authenticated socket link (``safety.ipc.client.SafetyClient``), load the same drug
library as the safety process, follow its clinical clock, attach and re-synchronise.

``start_safety(config)`` runs ``python -m safety --config FILE`` as a child process and
waits for its ``ready <socket>`` line. The child runs in its own session (process group):
it outlives the controller on purpose, because a safety process that died with its
controller would leave a running infusion unsupervised. ``SafetyChild.stop()`` ends it
(SIGTERM: the safety process leaves the pump as it is and closes cleanly).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from controller.bench_config import BenchConfig, load_bench_config
from controller.errors import ControllerError
from controller.planner import PlannerSettings
from controller.session import Session
from controller.session_link import LinkUnavailable
from firmware_bridge.clock import Clock, clock_from_spec
from safety.ipc.client import SafetyClient
from safety.ipc.launch import SafetyChild, start_safety_process
from safety.ipc.link import SafetyLinkError, SafetyStartFailed, SafetyUnavailable
from safety.library import LibraryError, load_library

#: how long a safety process may take to become ready (journal replay, pump connect)
READY_TIMEOUT_S = 30.0


def open_link(bench: BenchConfig, *, name: str = "pumpctl-controller") -> SafetyClient:
    """The authenticated socket link to the bench's safety process."""
    if not bench.key_file.exists():
        raise LinkUnavailable(
            f"no safety process has run with {bench.path}: its key file {bench.key_file} "
            "does not exist yet (the safety process creates it at start)"
        )
    try:
        return SafetyClient(bench.socket, key_file=bench.key_file, name=name)
    except SafetyUnavailable as exc:
        raise LinkUnavailable(
            f"no safety process answers on {bench.socket} ({exc}); start it with "
            f"'python -m safety --config {bench.path}' or use 'pumpctl run --start-safety'"
        ) from None
    except SafetyLinkError as exc:
        raise LinkUnavailable(f"safety process on {bench.socket}: {exc}") from None
    except Exception as exc:
        # a bad key file (safety.ipc.auth.KeyFileError: the auth module is not one the
        # controller may import) or a socket path the OS refuses
        raise ControllerError(
            f"cannot open the safety link ({bench.socket}, key {bench.key_file}): {exc}",
            code="bad_config",
            field="paths.key_file" if "Key" in type(exc).__name__ else "paths.socket",
        ) from None


def clinical_clock(spec: str) -> Clock | None:
    """The safety process's clinical clock, from the spec it announced (None: virtual, or
    unknown here: the session then reads clinical time from the snapshots)."""
    if spec == "virtual":
        return None
    try:
        return clock_from_spec(spec)
    except ValueError:
        return None


def connect(
    config: str | os.PathLike[str] | None = None,
    *,
    journal: str | os.PathLike[str] | None = None,
    planner: PlannerSettings | None = None,
    name: str = "pumpctl-controller",
) -> Session:
    """A session attached to the bench's running safety process.

    ``config``: the bench's safety config (default ``$PUMPCTL_CONFIG`` or the demo
    bench); ``journal``: the controller journal (default: beside the safety journal)."""
    bench = load_bench_config(config)
    try:
        library = load_library(bench.library)
    except LibraryError as exc:
        raise ControllerError(str(exc), code="bad_library", field="paths.library") from None
    link = open_link(bench, name=name)
    if link.info.library_hash != library.content_hash:
        link.close()
        raise ControllerError(
            f"the safety process runs drug library {link.info.library_hash[:19]}, the file "
            f"{bench.library or 'config/drug_library.toml'} is {library.content_hash[:19]}; "
            "use the same library on both",
            code="library_hash_mismatch",
        )
    return Session.open(
        link,
        library,
        journal=Path(journal) if journal is not None else bench.controller_journal,
        clinical=clinical_clock(link.info.clinical_clock),
        planner=planner,
    )


def start_safety(
    config: str | os.PathLike[str] | None = None,
    *,
    timeout_s: float = READY_TIMEOUT_S,
    log_path: str | os.PathLike[str] | None = None,
    python: str = sys.executable,
) -> SafetyChild:
    """Start ``python -m safety --config FILE`` (``safety.ipc.launch.start_safety_process``:
    its own process group, waits for ``ready <socket>``). Its log (stderr) goes to
    ``log_path``, default ``safety.log`` beside its journal."""
    bench = load_bench_config(config)
    log = Path(log_path) if log_path is not None else bench.safety_journal.parent / "safety.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as log_file:
        try:
            return start_safety_process(
                bench.path.resolve(),
                python=python,
                timeout_s=timeout_s,
                stderr=log_file.fileno(),
                log_path=log,
            )
        except SafetyStartFailed as exc:
            raise ControllerError(
                f"{exc}; its log: {log}\n{_tail(log)}", code="safety_not_ready"
            ) from None


def _tail(path: Path, lines: int = 8) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(f"  {line}" for line in text[-lines:])
