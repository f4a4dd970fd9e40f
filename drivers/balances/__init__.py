"""Laboratory balances (instruments that cannot deliver a drug): the interface, its
errors, the MT-SICS driver and a lazy registry. The controller may import this package."""

from drivers.balances.base import (
    Balance,
    BalanceDisconnected,
    BalanceError,
    BalanceIdentity,
    BalanceNotReady,
    BalanceOverload,
    BalanceProtocolError,
    BalanceRejected,
    BalanceTimeout,
    BalanceUnderload,
    WeightReading,
)
from drivers.balances.registry import known_balances, load_balance

__all__ = [
    "Balance",
    "BalanceDisconnected",
    "BalanceError",
    "BalanceIdentity",
    "BalanceNotReady",
    "BalanceOverload",
    "BalanceProtocolError",
    "BalanceRejected",
    "BalanceTimeout",
    "BalanceUnderload",
    "WeightReading",
    "known_balances",
    "load_balance",
]
