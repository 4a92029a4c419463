"""`bench data fetch|check`: download into the cache, or report what is present and valid."""

from __future__ import annotations

import sys

from bench.data import babi, fashion_mnist, shakespeare
from bench.errors import DataError, UsageError

LOADERS = {
    "tinyshakespeare": shakespeare.load,
    "fashion-mnist": fashion_mnist.load,
    "babi": babi.load_real,
}


def run(action: str, names: list[str], data_dir: str | None) -> int:
    unknown = [n for n in names if n not in LOADERS]
    if unknown:
        raise UsageError(f"unknown dataset {unknown[0]!r}; valid: {', '.join(LOADERS)}")
    failures = 0
    for name in names or list(LOADERS):
        try:
            _, location = LOADERS[name](data_dir, download=(action == "fetch"))
            print(f"{name:<16} ok       {location}")
        except DataError as exc:
            failures += 1
            print(f"{name:<16} missing  {exc}", file=sys.stderr)
    return 2 if failures else 0
