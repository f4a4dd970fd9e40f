"""The safety kernel: pure decisions over an event-sourced state (S1-S17)."""
