"""Checking a run from outside: the ground-truth oracle (``verification.ground_truth``)
judges what the pump really delivered against the safety invariants, and the scenario
runner (``verification.scenario``) plays declarative scenarios on a bench and judges their
expectations. Used by the demo, the tests and the hardware-in-the-loop suite; the
controller never imports it."""
