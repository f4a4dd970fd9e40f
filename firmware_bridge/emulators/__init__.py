"""Emulators: the simulated pump served over real wires (pty, serial port, TCP).

``serial_line`` carries a protocol end's bytes with wire faults and frame logging,
``endpoints`` are the wires, ``control`` the runtime fault channel, ``truth_log`` the
ground-truth record, and ``cli`` the ``emulate`` command.
"""
