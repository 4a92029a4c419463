"""Registry of backends by name. Modules are imported lazily, so that `bench list` can say
which backends are available here without importing Horovod or Ray."""

from __future__ import annotations

import importlib

from bench.core.errors import UsageError

# name -> (module, class)
_BACKENDS = {
    "default": ("strategies.default", "DefaultBackend"),
    "mirrored": ("strategies.mirrored", "MirroredBackend"),
    "mwms": ("strategies.mwms", "MultiWorkerMirroredBackend"),
    "horovod": ("strategies.horovod", "HorovodBackend"),
    "ray": ("strategies.raytune", "RayTuneBackend"),
}
PLANNED: dict[str, str] = {}


def names() -> list[str]:
    return list(_BACKENDS)


def check(name: str) -> str:
    """The name, if registered (no import of the backend's module)."""
    if name not in _BACKENDS:
        hint = f" ({PLANNED[name]})" if name in PLANNED else ""
        raise UsageError(f"unknown strategy {name!r}{hint}; valid: {', '.join(_BACKENDS)}")
    return name


def get_class(name: str):
    module, cls = _BACKENDS[check(name)]
    return getattr(importlib.import_module(module), cls)


def get(name: str):
    return get_class(name)()


def run_class(name: str):
    """The class of a backend that trains one run (`bench run`, a local study); a backend of
    studies (`kind = "study"`) is refused here, in one line."""
    backend = get_class(name)
    if backend.kind != "run":
        raise UsageError(f"strategy {name!r} runs studies of trials, not one run: "
                         f"use 'bench tune pbt WORKLOAD' or 'bench tune search WORKLOAD'")
    return backend


def availability() -> dict[str, tuple[bool, str]]:
    result = {}
    for name in _BACKENDS:
        try:
            result[name] = get_class(name).available()
        except ImportError as exc:
            result[name] = (False, f"import failed: {exc}")
    for name, reason in PLANNED.items():
        result[name] = (False, reason)
    return result


def with_collective() -> list[str]:
    """The backends whose collective `bench comm --strategy NAME` times (one that cannot be
    imported here has none to time)."""
    names = []
    for name in _BACKENDS:
        try:
            if get_class(name).has_collective():
                names.append(name)
        except ImportError:
            pass
    return names
