"""Kernel values <-> JSON, validated by pydantic: the journal's and the wire's format.

Every union member carries a ``kind`` tag, so a payload names its own type; unknown
fields are refused (``extra="forbid"``) so a corrupted or forged record never decodes
into something plausible.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pydantic import ConfigDict, TypeAdapter

from safety.kernel import model
from safety.kernel.model import Event, Request, Verdict

_FORBID = ConfigDict(extra="forbid")
for _value in vars(model).values():
    if isinstance(_value, type) and dataclasses.is_dataclass(_value):
        _value.__pydantic_config__ = _FORBID  # type: ignore[attr-defined]

EVENT: TypeAdapter[Event] = TypeAdapter(Event)
REQUEST: TypeAdapter[Request] = TypeAdapter(Request)
VERDICT: TypeAdapter[Verdict] = TypeAdapter(Verdict)


def encode_event(event: Event) -> str:
    return EVENT.dump_json(event).decode("utf-8")


def decode_event(text: str | bytes) -> Event:
    return EVENT.validate_json(text)


def event_to_dict(event: Event) -> dict[str, Any]:
    result: dict[str, Any] = EVENT.dump_python(event, mode="json")
    return result
