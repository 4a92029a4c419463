"""`bench data fetch|check`: download into the cache, or report what is present and valid."""

from __future__ import annotations

from bench.core.errors import DataError, UsageError
from bench.data import babi, fashion_mnist, shakespeare

LOADERS = {
    "tinyshakespeare": shakespeare.load,
    "fashion-mnist": fashion_mnist.load,
    "babi": babi.load_real,
}


def missing(data_dir: str | None) -> list[str]:
    """The datasets not present (and valid) under data_dir or the cache; nothing is downloaded."""
    return [name for name in LOADERS if absent(name, data_dir)]


def absent(name: str, data_dir: str | None) -> str | None:
    """Why dataset `name` is not present (and valid) under data_dir or the cache, None if it is;
    nothing is downloaded."""
    try:
        LOADERS[name](data_dir, download=False)
    except DataError as exc:
        return str(exc)
    return None


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
            print(f"{name:<16} missing  {exc}")
    return 1 if failures else 0         # 2 stays a usage error's
