"""``python -m safety --config FILE``: run the safety process (see ``safety.host.process``)."""

from __future__ import annotations

import sys

from safety.host.hashes import prefer_builtin_hashes
from safety.host.plugins import skip_pydantic_plugins

prefer_builtin_hashes()  # before the first import of hashlib: see safety.host.hashes
skip_pydantic_plugins()  # before the first import of pydantic: see safety.host.plugins

from safety.host.process import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
