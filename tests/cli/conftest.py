"""The controller tests' in-process bench (``local``) and session, for the console."""

from tests.controller.conftest import local, session

__all__ = ["local", "session"]
