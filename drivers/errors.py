"""The errors of the line itself, shared by every device family (pumps, balances, monitors).

A reply that does not come and a port that vanishes mean the same on any serial or TCP
device, so the transport (``drivers.transport``) and the scripted test transport
(``drivers.testing``) raise these, and each family's driver lets them through or words
them for its device. What only a pump can say (it refused a rate, it is in alarm) is in
``drivers.pumps.base``.
"""

from __future__ import annotations


class DriverError(Exception):
    """Base of every error a driver raises."""


class DeviceTimeout(DriverError):
    """No (complete) reply within the deadline. After a command that changes the device
    (a pump's set), the outcome is *uncertain*: read back before anything else."""


class DeviceDisconnected(DriverError):
    """The port or socket is gone (unplugged USB adapter, closed pty, dropped TCP)."""
