"""The balance served beside an emulated pump, in the pump emulator's own process.

Choice (documented in docs/accuracy.md): the balance and the pump share ONE
``SimulatedPump`` in one process (``emulate ne1000 --pty --balance-pty``). The balance then
weighs exactly the volume the pump model delivered, at the instant it is asked, on the same
clinical clock, with no file or socket between them that could lag or drift; the pump's
truth log stays what the safety checks read. The balance gets its own pty (its own serial
line, thread and wire faults, served by ``BackgroundLine`` like a pump) and, optionally,
its own control socket for balance faults (``bump``, ``no_stability``, ``overload``,
``pan_off``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace

from firmware_bridge.balance.emulator import MtSicsBalanceSide
from firmware_bridge.balance.physics import (
    BalanceFaultError,
    BalanceModel,
    BalanceSpec,
    Bench,
    FluidSource,
)
from firmware_bridge.clock import Clock
from firmware_bridge.emulators.background import BackgroundLine
from firmware_bridge.emulators.endpoints import PtyEndpoint
from firmware_bridge.faults import FaultSpecError, WireFaults, apply_faults


class BalanceSpecError(ValueError):
    """A ``--balance`` setting that does not parse; the message names it."""


_BENCH = {f.name for f in fields(Bench)}
_SPEC = {"noise_mg": "noise_sd_g", "settle_s": "settle_s", "capacity_g": "capacity_g"}


def parse_balance_settings(text: str) -> tuple[BalanceSpec, Bench]:
    """``"temperature_c=22,evaporation_mg_min=0.02,noise_mg=0.1,seed=3,beaker_g=60"``."""
    spec, bench = BalanceSpec(), Bench()
    bench_changes: dict[str, float | int] = {}
    spec_changes: dict[str, float] = {}
    for raw in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = raw.partition("=")
        name = name.strip().lower()
        if not sep:
            raise BalanceSpecError(f"--balance: expected name=value, got {raw!r}")
        try:
            number = float(value)
        except ValueError:
            raise BalanceSpecError(f"--balance: {name} must be a number, got {value!r}") from None
        if name in _BENCH:
            bench_changes[name] = int(number) if name == "seed" else number
        elif name in _SPEC:
            spec_changes[_SPEC[name]] = number / 1000.0 if name == "noise_mg" else number
        else:
            known = ", ".join(sorted(_BENCH | set(_SPEC)))
            raise BalanceSpecError(f"--balance: unknown setting {name!r}; known: {known}")
    try:
        return replace(spec, **spec_changes), replace(bench, **bench_changes)  # type: ignore[arg-type]
    except ValueError as exc:
        raise BalanceSpecError(f"--balance: {exc}") from None


class BalanceControl:
    """The balance's control channel: ``{"fault": "bump=0.5"}`` (balance faults, or wire
    faults of its line), ``{"query": "state"}``."""

    def __init__(self, model: BalanceModel, wire: WireFaults) -> None:
        self._model = model
        self._wire = wire

    def answer(self, message: object) -> dict[str, object]:
        if not isinstance(message, dict):
            return {"ok": False, "error": 'a control message is a JSON object: {"fault": "bump"}'}
        try:
            if "fault" in message or "faults" in message:
                spec = message.get("fault", message.get("faults"))
                if not isinstance(spec, str):
                    return {"ok": False, "error": "'fault' must be a string"}
                for one in filter(None, (s.strip() for s in spec.split(","))):
                    try:
                        self._model.apply_fault(one)
                    except BalanceFaultError:
                        apply_faults(one, None, self._wire)
                return {"ok": True}
            if message.get("query") == "state":
                return {"ok": True, "balance": self._model.describe()}
        except (BalanceFaultError, FaultSpecError) as exc:
            return {"ok": False, "error": str(exc)}
        except Exception as exc:  # a control request must never take the emulator down
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        return {"ok": False, "error": "expected a 'fault', 'faults' or 'query' key"}


@dataclass
class ServedBalance:
    """A balance on its own pty, weighing ``source``."""

    model: BalanceModel
    wire: WireFaults
    line: BackgroundLine

    @property
    def where(self) -> str:
        return self.line.where

    def stop(self) -> None:
        self.line.stop()


def serve_balance(
    clock: Clock,
    source: FluidSource,
    *,
    settings: str = "",
    faults: str = "",
    link: str | None = None,
    log: Callable[[str], None] | None = None,
) -> ServedBalance:
    """Start the balance's line (a daemon thread); ``stop()`` ends it."""
    spec, bench = parse_balance_settings(settings)
    model = BalanceModel(clock, source, spec=spec, bench=bench)
    if faults:
        model.apply_faults(faults)
    wire = WireFaults()
    line = BackgroundLine(MtSicsBalanceSide(model), wire, endpoint=PtyEndpoint(link=link), log=log)
    line.start()
    return ServedBalance(model, wire, line)


__all__ = [
    "BalanceControl",
    "BalanceSpecError",
    "ServedBalance",
    "parse_balance_settings",
    "serve_balance",
]
