"""``pumpctl bench``: the figures issue 6 asks for, measured on the machine at hand.

One module per benchmark: ``latency`` (command path through a real safety process, for
the mock, an NE-1000 pty and Modbus TCP), ``overhead`` (over bare pyserial and over the
wire time at 19200 baud), ``death`` (controller and safety-process deaths seen, with the
``controller_child`` process it kills), ``simulation`` (a 24 h course on the virtual
clock), ``resources`` (start-up, the journal's flush time; peak memory is read from
every child). ``processes`` starts and always ends the children; ``suite`` runs them
and ``report`` renders the figures with their goals. Nothing here asserts speed: the
tests check the plumbing, the figures are for people (docs/benchmarks.md).
"""
