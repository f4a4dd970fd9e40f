"""``python -m safety --config FILE``: run the safety process (see ``safety.host.process``)."""

from __future__ import annotations

import sys

from safety.host.process import main

if __name__ == "__main__":
    sys.exit(main())
