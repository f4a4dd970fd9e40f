"""The safety process's host: pump ownership, journal, GPIO, timers (not importable by the
controller; it talks to this only over IPC)."""
