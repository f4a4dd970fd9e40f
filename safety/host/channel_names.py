"""What a channel may be called: one definition for the safety config and the scenarios.

A channel's name is typed at the console (``start 8 @B``), names every alarm's scope and
is the key of ``[channels.NAME]`` in the safety config; a scenario names the same
channels in ``[[channels]]`` and in its steps. Two patterns would let a scenario run a
bench its safety config refuses ("1B"), so both check names here. Pure (``re`` only): the
scenario loader imports it without the safety host's drivers.
"""

from __future__ import annotations

import re

#: the pattern: a letter, then letters, digits, ``_`` or ``-``: at most 16 in all
CHANNEL_NAME = r"^[A-Za-z][A-Za-z0-9_-]{0,15}$"
#: the longest name the pattern allows
CHANNEL_NAME_MAX = 16
#: the rule in words, for error messages ("channel name '1B' must ...")
CHANNEL_NAME_RULE = (
    "start with a letter, followed by letters, digits, '_' or '-' only, "
    f"{CHANNEL_NAME_MAX} characters at most"
)

_PATTERN = re.compile(CHANNEL_NAME)


def channel_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a channel, in plain words; None when it can.

    ``fullmatch`` rather than ``match``: ``$`` alone would also accept a trailing newline.
    """
    if _PATTERN.fullmatch(name):
        return None
    return f"channel name {name!r} must {CHANNEL_NAME_RULE}"


def check_channel_name(name: str) -> str:
    """``name`` when it can name a channel; else ``ValueError`` with the rule (a pydantic
    ``AfterValidator``: the message reaches the author as it is)."""
    problem = channel_name_problem(name)
    if problem is not None:
        raise ValueError(problem)
    return name


__all__ = [
    "CHANNEL_NAME",
    "CHANNEL_NAME_MAX",
    "CHANNEL_NAME_RULE",
    "channel_name_problem",
    "check_channel_name",
]
