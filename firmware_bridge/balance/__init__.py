"""The balance side of an accuracy test: MT-SICS codec, balance physics, its emulator.

``codec`` is the pure MT-SICS line format, ``physics`` the balance weighing what a
simulated pump really delivered, ``water`` the density of water, ``emulator`` the
balance's end of the serial line (served like the pumps' by ``firmware_bridge.emulators``).
"""
