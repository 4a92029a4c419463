"""How a run starts: the one path from a config to running processes.

    bench run FLAGS | --config FILE        -> RunConfig (config_from_command)
    cfg.local_workers is None              -> this process runs it (bench.run.runner.run)
    cfg.local_workers = N                  -> launch_local: the backend says which processes
                                              (mwms: N workers with TF_CONFIG; horovod: one
                                              horovodrun/mpirun), each worker gets the run's
                                              config in DISTBENCH_RUN_CONFIG and runs it, and
                                              its own cores (DISTBENCH_CORE_SETS, bench.run.binding)
    srun in a job script                   -> the backend's sbatch_lines export the config
                                              the same way; every task runs `bench run`

A worker never re-parses a command line: it reads its config, validated by the same
`RunConfig` as the launcher's. Worker logs go to <results>/<run_id>/worker-<rank>.log; the
chief's output is shown as it comes. A worker that dies makes the others stop within a
bounded time: they see the failure in their collectives, or are stopped after a grace period.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench.core import config as configs
from bench.core.config import RUN_CONFIG_ENV, RunConfig
from bench.core.errors import UsageError
from bench.core.procs import stop
from bench.core.record import atomic_write_text, new_run_id, read_record, run_dir
from bench.run import binding, cgroups

GRACE_S = float(os.environ.get("DISTBENCH_WORKER_GRACE", "90"))
LAUNCHED_ENV = "DISTBENCH_LAUNCHED"     # set for launched workers: the launcher prints the record's path
CONFIG_FILE = "config.json"


def config_from_command(path: str | None, flags: dict) -> RunConfig:
    """The run's config: a launched worker's from the environment (no options allowed
    then), else the file's (if any) with the command line's flags on top."""
    handed = os.environ.get(RUN_CONFIG_ENV)
    if handed is not None:
        if path or flags:
            raise UsageError(f"{RUN_CONFIG_ENV} is set (this is a launched worker): give no run options")
        return configs.from_json(RunConfig, handed, RUN_CONFIG_ENV)
    values = dataclasses.asdict(configs.load(RunConfig, path)) if path else {}
    values.update(flags)
    return configs.from_dict(RunConfig, configs.with_env(RunConfig, values), path or "bench run")


def launch_local(cfg: RunConfig) -> int:
    """Start the backend's processes for `cfg.local_workers` replicas on this host, wait for
    them, and return non-zero if any failed. The config the workers get is saved beside
    the run as config.json."""
    import strategies
    from bench.run import runner
    runner.prepare(cfg)      # bad input fails once here, not once per worker
    backend = strategies.get_class(cfg.strategy)
    worker_cfg = cfg.worker(cfg.run_id or new_run_id())
    out = run_dir(cfg.results, worker_cfg.run_id)
    processes = backend.local_processes(cfg.local_workers, worker_cfg.to_json(), cfg.launcher)
    shares = binding.local_shares(cfg.local_workers, cfg.cpus_per_replica, f"distbench{os.getpid()}")
    if shares:              # a share of a core: each worker's core and its quota cgroup
        core_sets, cgroup_sets = shares
        bound = {binding.CORE_SETS_ENV: ";".join(map(binding.format_cores, core_sets)),
                 cgroups.SHARES_ENV: ";".join(",".join(paths) for paths in cgroup_sets)}
    else:
        core_sets = binding.local_core_sets(cfg.local_workers, cfg.cpus_per_replica)
        bound = {binding.CORE_SETS_ENV: ";".join(map(binding.format_cores, core_sets))} if core_sets else {}
    try:
        return _start_and_wait(processes, worker_cfg, out, bound)
    finally:
        if shares:
            cgroups.remove([path for paths in shares[1] for path in paths])


def _start_and_wait(processes, worker_cfg: RunConfig, out: Path, bound: dict[str, str]) -> int:
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / CONFIG_FILE, worker_cfg.to_json())
    procs = []
    for rank, process in enumerate(processes):
        env = {**os.environ, LAUNCHED_ENV: "1", **bound, **process.env}
        if rank == 0:
            procs.append(subprocess.Popen(process.command, env=env))
        else:
            with open(out / f"worker-{rank}.log", "w") as log:
                procs.append(subprocess.Popen(process.command, env=env, stdout=log, stderr=subprocess.STDOUT))
    code = _wait(procs, out)
    record = out / "record.json"
    if record.is_file():    # what one process says at its end, the record's path last
        try:
            written = read_record(record)
            line, ok = written.outcome_line(), written.status == "ok"
        except ValueError as exc:
            line, ok = f"bench: {record}: {exc}", False
        if line:
            print(line, file=sys.stdout if ok else sys.stderr, flush=True)
        print(record, flush=True)
    return code


def _wait(procs: list[subprocess.Popen], logs: Path) -> int:
    first_failure: tuple[int, int] | None = None
    deadline = None

    def forward(signum, frame):        # SIGTERM (Slurm, kill) reaches every worker
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signum)
    previous = signal.signal(signal.SIGTERM, forward)
    try:
        while any(p.poll() is None for p in procs):
            for rank, proc in enumerate(procs):
                code = proc.poll()
                if code not in (None, 0) and first_failure is None:
                    first_failure = (rank, code)
                    deadline = time.monotonic() + GRACE_S
            if deadline is not None and time.monotonic() > deadline:
                stop(procs)
                break
            time.sleep(0.2)
    except KeyboardInterrupt:
        stop(procs, signal.SIGINT)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    codes = [p.wait() for p in procs]
    if first_failure is None:
        bad = [(rank, code) for rank, code in enumerate(codes) if code != 0]
        first_failure = bad[0] if bad else None
    if first_failure is not None:
        rank, code = first_failure
        where = "" if rank == 0 else f"; see {logs / f'worker-{rank}.log'}"
        print(f"bench: worker {rank} exited with code {code}{where}", file=sys.stderr)
        return codes[0] if codes[0] != 0 else 1
    return 0
