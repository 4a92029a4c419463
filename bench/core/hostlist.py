"""Slurm's compressed host lists and task counts, in pure Python (no scontrol, no TensorFlow).

    expand("n[1-3,5],gpu[01-02]")  -> ["n1", "n2", "n3", "n5", "gpu01", "gpu02"]
    expand_counts("2(x3),1")       -> [2, 2, 2, 1]          (SLURM_TASKS_PER_NODE)
"""

from __future__ import annotations

import re

_COUNT = re.compile(r"^(\d+)(?:\(x(\d+)\))?$")


def expand(hostlist: str) -> list[str]:
    """Every host of a Slurm host list, in order; ValueError when malformed."""
    hosts: list[str] = []
    for item in _split_top_level(hostlist.strip()):
        hosts += _expand_item(item)
    if not hosts:
        raise ValueError(f"empty host list {hostlist!r}")
    return hosts


def expand_counts(counts: str) -> list[int]:
    """`2(x3),1` -> [2, 2, 2, 1]; ValueError when malformed."""
    out: list[int] = []
    for item in counts.strip().split(","):
        match = _COUNT.match(item.strip())
        if not match:
            raise ValueError(f"malformed task count {item!r} in {counts!r}")
        out += [int(match.group(1))] * int(match.group(2) or 1)
    return out


def _split_top_level(text: str) -> list[str]:
    """Split at commas outside brackets."""
    items, depth, start = [], 0, 0
    for i, char in enumerate(text):
        if char == "[":
            depth += 1
            if depth > 1:
                raise ValueError(f"nested brackets in host list {text!r}")
        elif char == "]":
            depth -= 1
            if depth < 0:
                raise ValueError(f"unbalanced ']' in host list {text!r}")
        elif char == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    if depth:
        raise ValueError(f"unbalanced '[' in host list {text!r}")
    items.append(text[start:])
    if any(not item for item in items):
        raise ValueError(f"empty host name in host list {text!r}")
    return items


def _expand_item(item: str) -> list[str]:
    """One host or one bracketed pattern (several bracket groups multiply, as in Slurm)."""
    match = re.match(r"^([^\[\]]*)\[([^\[\]]+)\](.*)$", item)
    if not match:
        if "[" in item or "]" in item:
            raise ValueError(f"malformed host list item {item!r}")
        return [item]
    prefix, ranges, rest = match.groups()
    suffixes = _expand_item(rest) if rest else [""]
    return [f"{prefix}{number}{suffix}" for number in _numbers(ranges, item) for suffix in suffixes]


def _numbers(ranges: str, item: str) -> list[str]:
    out = []
    for part in ranges.split(","):
        low, sep, high = part.strip().partition("-")
        if not low.isdigit() or (sep and not high.isdigit()):
            raise ValueError(f"malformed range {part!r} in {item!r}")
        if not sep:
            out.append(low)
            continue
        if int(high) < int(low):
            raise ValueError(f"descending range {part!r} in {item!r}")
        width = len(low)        # zero padding as written: gpu[01-10]
        out += [str(n).zfill(width) for n in range(int(low), int(high) + 1)]
    return out
