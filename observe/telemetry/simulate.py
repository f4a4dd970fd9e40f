"""Simulated benches for the fleet's tests and benchmarks: the real telemetry schema,
the real outbox and the real publisher, with the safety process replaced by a counter.

Each ``SimulatedBench.tick()`` writes one numbered journal event (and, every
``alarm_every`` ticks, an alarm) into its own outbox, exactly as ``BenchTelemetry`` does
for a real bench; ``status()`` publishes a retained status with one channel. Nothing
here is used by a real bench.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Literal

from observe.telemetry import schema
from observe.telemetry.outbox import Outbox
from observe.telemetry.publisher import Publisher
from safety.observer_config import TelemetrySection

CHANNEL = "channel 1"


def _journal(bench: str, n: int, seq: int, at: float) -> dict[str, Any]:
    entry = {"id": n, "kind": "readback", "clinical": float(n), "text": f"read-back {n}"}
    return schema.journal(bench, seq, at, CHANNEL, entry)


def _alarm(bench: str, n: int, seq: int, at: float) -> dict[str, Any]:
    view = {
        "key": f"sim:{n}",
        "priority": "medium",
        "reason": "pump_alarm",
        "message": f"simulated alarm {n}",
        "raised_at": float(n),
        "active": True,
        "acknowledged": False,
        "scope": "",
    }
    return schema.alarm(bench, seq, at, CHANNEL, view)


class SimulatedBench:
    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        directory: Path,
        *,
        alarm_every: int = 0,
        external_loop: bool = False,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
        status_period_s: float = 5.0,
    ) -> None:
        self.name = name
        self.settings = TelemetrySection(
            bench=name,
            host=host,
            port=port,
            outbox=str(directory / f"{name}.sqlite"),
            status_period_s=status_period_s,
            dashboard_url=f"http://127.0.0.1:1/{name}",
        )
        self.outbox = Outbox(directory / f"{name}.sqlite", synchronous=synchronous)
        self.publisher = Publisher(
            self.settings, self.outbox, external_loop=external_loop, client_id=f"sim-{name}"
        )
        self.alarm_every = alarm_every
        self.ticks = 0
        self.produced = {"journal": 0, "alarm": 0}

    def start(self) -> SimulatedBench:
        self.publisher.start()
        self.status()
        return self

    def tick(self) -> None:
        self.ticks += 1
        n = self.ticks
        self.publisher.event("journal", functools.partial(_journal, self.name, n))
        self.produced["journal"] += 1
        if self.alarm_every and n % self.alarm_every == 0:
            self.publisher.event("alarm", functools.partial(_alarm, self.name, n))
            self.produced["alarm"] += 1

    def status(self) -> None:
        channel: dict[str, Any] = {
            "name": CHANNEL,
            "state": "infusing",
            "drug": "norepinephrine",
            "dose_text": f"{8 + self.ticks % 3} mcg/min",
            "worst_alarm": "medium" if self.produced["alarm"] else None,
            "alarms": [],
        }
        self.publisher.status(
            lambda seq, at: schema.status(
                self.name,
                seq,
                at,
                live=True,
                problem="",
                clinical_time=float(self.ticks),
                library="simulated",
                channels=[channel],
                dashboard_url=self.settings.dashboard_url,
            )
        )

    def drained(self) -> bool:
        return self.outbox.count() == 0

    def close(self) -> None:
        self.publisher.close()
        self.outbox.close()


__all__ = ["SimulatedBench"]
