"""Typed hyperparameters with valid ranges: `--set key=value` parsing and range checks.

The ranges are also what PBT mutations are clamped to (a mutated RMSprop rho of 1.08
is not a valid rho).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from bench.core.errors import UsageError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class HParam:
    default: Any
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] | None = None
    help: str = ""
    mutable: bool = False    # training may go on after a change (PBT): no effect on weight shapes or data
    only_with: tuple[str, Any] | None = None    # (other hyperparameter, value) it applies with

    @property
    def type(self) -> type:
        return type(self.default)

    def parse(self, name: str, text: str) -> Any:
        kind = self.type
        try:
            if kind is bool:
                lowered = text.strip().lower()
                if lowered not in _TRUE | _FALSE:
                    raise ValueError
                value: Any = lowered in _TRUE
            elif kind is int:
                value = int(text)
            elif kind is float:
                value = float(text)
            else:
                value = text
        except ValueError:
            raise UsageError(f"--set {name}={text!r}: expected {kind.__name__}") from None
        return self.check(name, value)

    def check(self, name: str, value: Any) -> Any:
        if self.choices is not None and value not in self.choices:
            raise UsageError(f"{name}={value!r}: must be one of {', '.join(map(str, self.choices))}")
        if self.low is not None and value < self.low:
            raise UsageError(f"{name}={value!r}: must be >= {self.low}")
        if self.high is not None and value > self.high:
            raise UsageError(f"{name}={value!r}: must be <= {self.high}")
        return value

    def clamp(self, value: Any) -> Any:
        """The nearest valid value (for mutated hyperparameters)."""
        if self.choices is not None:
            return value if value in self.choices else self.default
        if self.low is not None:
            value = max(value, self.low)
        if self.high is not None:
            value = min(value, self.high)
        return self.type(value)


def resolve(space: Mapping[str, HParam], overrides: Mapping[str, Any], owner: str) -> dict[str, Any]:
    """Defaults updated by overrides; strings are parsed, other values range-checked."""
    values = {name: spec.default for name, spec in space.items()}
    for name, raw in overrides.items():
        if name not in space:
            raise UsageError(f"unknown hyperparameter {name!r} for {owner}; "
                             f"valid: {', '.join(sorted(space))}")
        spec = space[name]
        values[name] = spec.parse(name, raw) if isinstance(raw, str) else spec.check(name, raw)
    for name in overrides:
        # a default value is harmless: full configurations (a trial's, a retrain's) carry every name
        if space[name].only_with and values[name] != space[name].default:
            check_applies(space, name, values)
    return values


def check_applies(space: Mapping[str, HParam], name: str, values: Mapping[str, Any]) -> None:
    """A hyperparameter that only means something with another one's value (memnn's `hops`
    with `architecture=memn2n`) is refused elsewhere rather than silently ignored."""
    if space[name].only_with:
        other, needed = space[name].only_with
        if values[other] != needed:
            raise UsageError(f"{name}: applies with {other}={needed} only (here {other}={values[other]})")


def parse_set_options(items: list[str] | None, flag: str = "--set") -> dict[str, str]:
    """`--set key=value` options (or another flag's) into a dict; `workload.key=value` scopes to one workload."""
    parsed: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{flag} {item!r}: expected key=value")
        parsed[key.strip()] = value.strip()
    return parsed


def for_workload(overrides: Mapping[str, str], workload: str, known: set[str]) -> dict[str, str]:
    """Select the `--set` keys that apply to `workload`: bare keys and `workload.key` keys.

    Keys scoped to another known workload are dropped (a study sets several at once).
    """
    selected = {}
    for key, value in overrides.items():
        scope, dot, name = key.rpartition(".")
        if not dot:
            selected[key] = value
        elif scope == workload:
            selected[name] = value
        elif scope not in known:
            raise UsageError(f"--set {key}: unknown workload {scope!r}; valid: {', '.join(sorted(known))}")
    return selected
