"""Simulated cohorts for the closed loop: one run (``run``), the manual arm (``nurse``),
Varvel's metrics (``metrics``), the Monte Carlo cohort on every core (``cohort``) and its
table and plots (``report``). docs/closed-loop.md."""
