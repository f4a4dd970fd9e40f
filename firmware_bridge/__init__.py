"""The wire and the pump side of it.

Protocol codecs (NE-1000, Harvard, Modbus register maps), the simulated pump physics,
and emulators that serve that physics over a pty, a serial port or TCP. This room
imports none of the other three, so both ends of every wire can use it.
"""
