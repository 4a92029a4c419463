"""Search spaces and PBT mutations as plain data, checked against a workload's hyperparameters.

A dimension is written as a call: ``uniform(0, 1)``, ``loguniform(1e-4, 1e-2)``,
``randint(0, 8)`` (both ends included), ``choice(sgd, adam)`` or ``grid(0.8, 0.9, 0.99)``
(an ordered list: every value in a search, neighbouring values when PBT perturbs). The
same text is used on the command line (``--space dropout=uniform(0,1)``) and in the
workloads' defaults; only the Ray backend turns it into Ray objects, so planning a study
needs no Ray.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

from bench.core.errors import UsageError
from bench.core.hparams import HParam

KINDS = ("uniform", "loguniform", "randint", "choice", "grid")
_CALL = re.compile(r"^\s*([a-z]+)\s*\((.*)\)\s*$")


@dataclass(frozen=True)
class Dimension:
    name: str
    kind: str
    values: tuple[Any, ...]     # (low, high) for ranges; the values for choice and grid

    @property
    def low(self) -> Any:
        return self.values[0] if self.is_range else min(self.values)

    @property
    def high(self) -> Any:
        return self.values[1] if self.is_range else max(self.values)

    @property
    def is_range(self) -> bool:
        return self.kind in ("uniform", "loguniform", "randint")

    def clamp(self, value: Any) -> Any:
        """Keep a perturbed value inside the range this dimension was declared with."""
        if not self.is_range or isinstance(value, str):
            return value
        return type(value)(min(max(value, self.low), self.high))

    def text(self) -> str:
        return f"{self.kind}({', '.join(map(str, self.values))})"


def parse(name: str, text: str, hparam: HParam) -> Dimension:
    """One dimension, its values typed and range-checked as the hyperparameter's."""
    match = _CALL.match(str(text))
    if not match or match.group(1) not in KINDS:
        raise UsageError(f"space {name}={text!r}: expected one of "
                         + ", ".join(f"{kind}(...)" for kind in KINDS))
    kind, args = match.group(1), [a.strip() for a in match.group(2).split(",") if a.strip()]
    values = tuple(hparam.parse(name, arg) for arg in args)
    if kind in ("uniform", "loguniform", "randint"):
        if len(values) != 2:
            raise UsageError(f"space {name}={text!r}: {kind} takes (lower, upper)")
        if isinstance(values[0], (str, bool)):
            raise UsageError(f"space {name}={text!r}: {kind} needs numbers")
        if values[0] > values[1]:
            raise UsageError(f"space {name}={text!r}: lower {values[0]} > upper {values[1]}")
        if kind == "loguniform" and values[0] <= 0:
            raise UsageError(f"space {name}={text!r}: loguniform needs lower > 0")
        if kind == "randint" and hparam.type is not int:
            raise UsageError(f"space {name}={text!r}: randint for a {hparam.type.__name__} hyperparameter")
    elif not values:
        raise UsageError(f"space {name}={text!r}: {kind} needs at least one value")
    return Dimension(name, kind, values)


def parse_space(entries: Mapping[str, str], hparams: Mapping[str, HParam], owner: str,
                mutations: bool = False) -> dict[str, Dimension]:
    """Every entry checked: known hyperparameter, valid call, bounds in the valid range.

    Mutations (PBT) may only touch hyperparameters a trained model survives changing:
    PBT continues training the exploited weights with the new values.
    """
    space = {}
    for name, text in entries.items():
        if name not in hparams:
            raise UsageError(f"space: unknown hyperparameter {name!r} for {owner}; "
                             f"valid: {', '.join(sorted(hparams))}")
        if mutations and not hparams[name].mutable:
            mutable = sorted(n for n, h in hparams.items() if h.mutable)
            raise UsageError(f"mutation {name}: {owner}'s trained weights do not survive a change of it; "
                             f"mutable: {', '.join(mutable) or 'none'}")
        space[name] = parse(name, text, hparams[name])
    return space


def clamp_config(config: dict[str, Any], dimensions: Mapping[str, Dimension],
                 hparams: Mapping[str, HParam]) -> dict[str, Any]:
    """A perturbed configuration brought back inside every declared and valid range (PBT
    multiplies continuous values by 0.8 or 1.2: a dropout of 0.9 becomes 1.08)."""
    clamped = dict(config)
    for name, dimension in dimensions.items():
        if name in clamped:
            clamped[name] = hparams[name].clamp(dimension.clamp(clamped[name]))
    return clamped

