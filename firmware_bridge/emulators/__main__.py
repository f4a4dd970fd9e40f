"""``python -m firmware_bridge.emulators ne1000|harvard|modbus ...``"""

from firmware_bridge.emulators.cli import main

raise SystemExit(main())
