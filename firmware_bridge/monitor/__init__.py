"""The pumpctl monitor line protocol (MAP numerics): codec and the monitor's side."""
