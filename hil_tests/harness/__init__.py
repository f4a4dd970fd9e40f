"""The hardware-in-the-loop harness: processes, benches, pump kinds, truth queries."""
