"""A local study: every workload x strategy (x repeats) as separate `bench run` processes on
this host, then a summary table. Each run is its own process because a backend configures
devices before TensorFlow starts. Writes and reads files only: no TensorFlow import here."""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from pathlib import Path

from bench.errors import UsageError



def run_commands(args: argparse.Namespace) -> list[list[str]]:
    args.results = args.results or str(Path("results") / args.name)
    from bench import workloads
    import strategies
    chosen_workloads = [w for w in args.workloads.split(",") if w]
    chosen_strategies = [s for s in args.strategies.split(",") if s]
    for name in chosen_workloads:
        workloads.check(name)
    for name in chosen_strategies:
        strategies.check(name)
    sources = data_sources(args.data, chosen_workloads)
    try:
        counts = [int(c) for c in str(args.devices).split(",") if c]
    except ValueError:
        raise UsageError(f"--devices {args.devices!r}: a count or a list like 1,2") from None
    if not counts or min(counts) < 1:
        raise UsageError(f"--devices {args.devices!r}: counts must be >= 1")
    if args.repeats < 1:
        raise UsageError(f"--repeats {args.repeats}: must be >= 1")
    commands = []
    for repeat in range(args.repeats):
        for workload in chosen_workloads:
            for strategy, count in _combinations(chosen_strategies, counts):
                cmd = [sys.executable, "-m", "bench", "run", "-q", "--workload", workload,
                       "--strategy", strategy, "--epochs", str(args.epochs),
                       "--steps-per-epoch", str(args.steps_per_epoch), "--data", sources[workload],
                       "--seed", str(repeat), "--results", args.results]
                backend = strategies.get_class(strategy)    # its module imports no TensorFlow
                if backend.multi_device:
                    cmd += ["--devices", str(count)]
                elif backend.multi_process:
                    cmd += ["--local-workers", str(count)]
                for item in args.sets or []:
                    key = item.partition("=")[0]
                    if "." not in key or key.startswith(f"{workload}."):   # scoped to another: skip
                        cmd += ["--set", item]
                commands.append(cmd)
    return commands


def _combinations(chosen: list[str], counts: list[int]) -> list[tuple[str, int]]:
    """(strategy, device count) pairs; single-device strategies run once, with one device."""
    import strategies
    pairs = []
    for strategy in chosen:
        backend = strategies.get_class(strategy)
        if backend.multi_device or backend.multi_process:
            pairs += [(strategy, count) for count in counts]
        else:
            pairs.append((strategy, 1))
    return pairs


def data_sources(spec: str, chosen: list[str]) -> dict[str, str]:
    """`generated` for all, or per workload: `mlp=generated,charrnn-gru=real` (others: real)."""
    from bench.workloads.base import DATA_SOURCES
    if "=" not in spec:
        pairs = {name: spec for name in chosen}
    else:
        pairs = {name: "real" for name in chosen}
        for item in spec.split(","):
            name, _, source = item.partition("=")
            if name not in chosen:
                raise UsageError(f"--data {item!r}: {name!r} is not one of the study's workloads")
            pairs[name] = source
    for name, source in pairs.items():
        if source not in DATA_SOURCES:
            raise UsageError(f"--data {name}={source}: must be one of {', '.join(DATA_SOURCES)}")
    return pairs


def run_study(args: argparse.Namespace) -> int:
    from analysis import summary
    commands = run_commands(args)
    Path(args.results).mkdir(parents=True, exist_ok=True)
    failed = 0
    for i, cmd in enumerate(commands, 1):
        label = " ".join(shlex.quote(c) for c in cmd[3:])
        print(f"[{i}/{len(commands)}] bench {label}", flush=True)
        t0 = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True)
        tail = (done.stderr.strip().splitlines() or [""])[-1]
        status = "ok" if done.returncode == 0 else f"exit {done.returncode}: {tail}"
        print(f"    {status} ({time.perf_counter() - t0:.1f} s)", flush=True)
        failed += done.returncode != 0
    print()
    print(summary.table(summary.load([args.results])))
    if failed:
        print(f"\n{failed} of {len(commands)} runs failed", file=sys.stderr)
    return 1 if failed else 0
