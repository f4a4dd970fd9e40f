"""The closed vocabulary of diluents, with the names people type for them.

A library entry lists the diluents allowed for each concentration (invariant S6). The
property that matters for norepinephrine is whether the fluid contains dextrose: the
label requires it, because saline alone lets the drug oxidise and lose potency.
"""

from __future__ import annotations

import enum


class Diluent(enum.StrEnum):
    D5W = "D5W"
    D10W = "D10W"
    D5NS = "D5NS"
    D5_HALF_NS = "D5-0.45NS"
    NS = "NS"
    HALF_NS = "0.45NS"
    LR = "LR"
    SWFI = "SWFI"

    @property
    def description(self) -> str:
        return _DESCRIPTIONS[self]

    @property
    def contains_dextrose(self) -> bool:
        return self in (Diluent.D5W, Diluent.D10W, Diluent.D5NS, Diluent.D5_HALF_NS)


_DESCRIPTIONS = {
    Diluent.D5W: "5% dextrose in water",
    Diluent.D10W: "10% dextrose in water",
    Diluent.D5NS: "5% dextrose in 0.9% sodium chloride",
    Diluent.D5_HALF_NS: "5% dextrose in 0.45% sodium chloride",
    Diluent.NS: "0.9% sodium chloride (normal saline)",
    Diluent.HALF_NS: "0.45% sodium chloride",
    Diluent.LR: "lactated Ringer's",
    Diluent.SWFI: "sterile water for injection",
}

_ALIASES: dict[str, Diluent] = {
    "d5w": Diluent.D5W,
    "d5": Diluent.D5W,
    "5% dextrose": Diluent.D5W,
    "dextrose 5%": Diluent.D5W,
    "dextrose": Diluent.D5W,
    "glucose 5%": Diluent.D5W,
    "g5": Diluent.D5W,
    "d10w": Diluent.D10W,
    "d10": Diluent.D10W,
    "10% dextrose": Diluent.D10W,
    "d5ns": Diluent.D5NS,
    "d5-ns": Diluent.D5NS,
    "d5 0.9ns": Diluent.D5NS,
    "d5-0.45ns": Diluent.D5_HALF_NS,
    "d5 0.45ns": Diluent.D5_HALF_NS,
    "d5 1/2ns": Diluent.D5_HALF_NS,
    "ns": Diluent.NS,
    "0.9ns": Diluent.NS,
    "0.9% nacl": Diluent.NS,
    "0.9% sodium chloride": Diluent.NS,
    "normal saline": Diluent.NS,
    "saline": Diluent.NS,
    "nacl 0.9%": Diluent.NS,
    "0.45ns": Diluent.HALF_NS,
    "1/2ns": Diluent.HALF_NS,
    "half normal saline": Diluent.HALF_NS,
    "lr": Diluent.LR,
    "lactated ringer's": Diluent.LR,
    "lactated ringers": Diluent.LR,
    "ringer's lactate": Diluent.LR,
    "swfi": Diluent.SWFI,
    "water for injection": Diluent.SWFI,
    "sterile water": Diluent.SWFI,
}


class DiluentError(ValueError):
    pass


def parse_diluent(text: str) -> Diluent:
    key = " ".join(text.strip().lower().split())
    if not key:
        raise DiluentError("diluent: is empty")
    if key in _ALIASES:
        return _ALIASES[key]
    for diluent in Diluent:
        if key == diluent.value.lower():
            return diluent
    known = ", ".join(f"{d.value} ({d.description})" for d in Diluent)
    raise DiluentError(f"diluent: unknown {text!r}; known: {known}")
