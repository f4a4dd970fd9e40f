"""What a long-running process of the bench does once its start-up is done.

The safety process, the operator's controller (``pumpctl run``) and a benchmark's client
each build a great deal before they serve (modules, config, drug library, a replayed
journal's state, a session) that never becomes garbage. Python's cyclic collector walked
all of it in every full collection: a pause of 20-30 ms once in a few hundred commands on
the 2-core machine, the tail of an emergency stop's or a command's round trip (measured in
process, 4 channels: a command's max 24-30 -> 6-8 ms once frozen).
"""

from __future__ import annotations

import gc


def freeze_start_up() -> None:
    """Collect what start-up left behind, then move every object alive now out of the
    collector's sight: a full collection walks only what the process made since.
    Reference counting frees the serving loop's garbage as before, and the collector
    still runs for its cycles."""
    gc.collect()
    gc.freeze()


__all__ = ["freeze_start_up"]
