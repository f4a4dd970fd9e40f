"""MAP sources for the closed loop: the interface (``base``) and its implementations.

Instruments that cannot deliver a drug: the controller may import this package
(ARCHITECTURE.md); only the safety process touches what can.
"""

from drivers.monitors.base import (
    MapSample,
    MapSource,
    MonitorError,
    MonitorProtocolError,
    MonitorUnavailable,
)

__all__ = ["MapSample", "MapSource", "MonitorError", "MonitorProtocolError", "MonitorUnavailable"]
