"""The service thread calls ``service`` until stopped, survives errors, reports them."""

from __future__ import annotations

import logging
import threading

import pytest

from controller.errors import ControllerError
from controller.service_thread import ServiceThread


class FakeSession:
    def __init__(self, failures: list[Exception]) -> None:
        self.calls = 0
        self.failures = failures
        self.faults: list[str] = []
        self.enough = threading.Event()

    def service(self) -> float | None:
        self.calls += 1
        if self.calls >= 5:
            self.enough.set()
        if self.failures:
            raise self.failures.pop(0)
        return 0.0

    def real_seconds(self, clinical_s: float) -> float:
        return clinical_s

    def raise_fault(self, message: str) -> None:
        self.faults.append(message)


def test_the_service_thread_services_until_stopped_and_reports_errors(
    caplog: pytest.LogCaptureFixture,
) -> None:
    session = FakeSession([ControllerError("refused"), RuntimeError("bug")])
    thread = ServiceThread(session, period_s=0.001)
    with caplog.at_level(logging.CRITICAL):
        thread.start()
        assert session.enough.wait(20)  # bounded: fails the test instead of hanging
        thread.stop()
    assert not thread.alive
    assert session.calls >= 5
    assert session.faults == ["service thread: RuntimeError('bug')"]  # not the refusal


def test_the_service_thread_period_is_checked() -> None:
    with pytest.raises(ValueError, match="period_s"):
        ServiceThread(FakeSession([]), period_s=0)
