"""Modbus on both ends of the wire: register maps, value and frame codecs, the emulator.

A Modbus pump publishes its own register map, so everything here is driven by a map
loaded from ``config/pumps/*.toml``: the emulator serves the simulated pump through it
and the host driver (``drivers.pumps.modbus``) reads and writes through the same map. The
codecs are pure so both ends, and the tests, share one definition of the bytes.
"""
