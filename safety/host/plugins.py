"""The safety process runs no pydantic plugins, and so never imports ``importlib.metadata``.

pydantic looks for plugins (the ``pydantic`` entry-point group) the first time it builds
a validator, in ``pydantic.plugin._loader``, which imports ``importlib.metadata`` at its
top; that in turn imports ``email``, ``zipfile``, ``csv`` and more, and the search reads
every installed distribution's metadata: about 1.5 MB of the process's heap, for a search
that finds nothing on a bench (no plugin is installed) and that the safety process would
refuse anyway: a plugin is third-party code hooked into every validation of a controller's
message, of the config and of the drug library.

``skip_pydantic_plugins`` puts an empty loader in that module's place before pydantic is
imported: pydantic then gets no plugins, exactly as with ``PYDANTIC_DISABLE_PLUGINS=__all__``
but without the import. Nothing changes when pydantic is already imported (too late to
choose: its own loader may be in use). If a later pydantic no longer imports this module,
the stand-in is never used and the process carries the search again, which
``tests/safety_process/test_start_imports.py`` notices.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterable

#: the module of pydantic (2.x) that imports ``importlib.metadata`` to find plugins
LOADER = "pydantic.plugin._loader"


def _no_plugins() -> Iterable[object]:
    """pydantic's ``get_plugins``: none."""
    return ()


def skip_pydantic_plugins() -> bool:
    """Give pydantic an empty plugin loader; True if done (before pydantic's import)."""
    if LOADER in sys.modules:
        return isinstance(sys.modules[LOADER], _StandIn)
    if "pydantic" in sys.modules:
        return False
    sys.modules[LOADER] = _StandIn(LOADER)
    return True


class _StandIn(types.ModuleType):
    """What pydantic finds in ``pydantic.plugin._loader``: a ``get_plugins`` with none."""

    def __init__(self, name: str) -> None:
        super().__init__(name, "stand-in for pydantic's plugin loader: no plugins")
        self.get_plugins = _no_plugins


__all__ = ["LOADER", "skip_pydantic_plugins"]
