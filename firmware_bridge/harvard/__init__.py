"""Harvard PHD ULTRA / Pump 11 Elite line protocol: codec and emulated pump side."""
