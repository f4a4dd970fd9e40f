"""``pumpctl emulate``: the simulated pumps, served on a pty, a serial port or TCP.

The emulators belong to ``firmware_bridge`` (the pump side of the wire); this command
only hands its arguments over, so ``pumpctl emulate ...`` and
``python -m firmware_bridge.emulators ...`` are the same program.
"""

from __future__ import annotations

import argparse

from cli.commands.output import SubParsers


def add_parser(sub: SubParsers) -> None:
    p = sub.add_parser(
        "emulate",
        help="serve a simulated NE-1000, Harvard or Modbus pump (pty, serial port or TCP)",
        description="Serve the simulated pump over its wire protocol. The first line on "
        "stdout says where to connect. See 'pumpctl emulate --help'.",
        add_help=False,
    )
    p.add_argument("args", nargs=argparse.REMAINDER, help="emulator arguments")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    # lazy: the emulator stack (and pymodbus for Modbus) loads only for this command
    from firmware_bridge.emulators.cli import main as emulator_main  # noqa: PLC0415

    return emulator_main(list(args.args))
