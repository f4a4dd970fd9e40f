"""The settings every MAP source checks, and the bench config's ``[monitor]`` table checks
the same way before anything is opened (``drivers.monitors.config``).

Their own module, free of the sources, because the safety process checks that table too
and must not import what it never uses (a replay's ``csv``, the monitor codec: its
import footprint is its memory, tests/safety_process/test_start_imports.py).
"""

from __future__ import annotations

#: the wire monitor's reply deadline, s: default and allowed range
DEFAULT_REPLY_TIMEOUT_S = 0.5
REPLY_TIMEOUT_RANGE_S = (0.01, 30.0)
#: the wire monitor's serial speed when it is on a real serial port
DEFAULT_BAUD = 115200
#: the fastest replay of a recorded trace (x the recorded pace)
MAX_SPEED = 1e6
