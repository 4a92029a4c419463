"""What multi-process backends share: Slurm step discovery, ports, gathering measurements."""

from __future__ import annotations

import math
import os
import subprocess
import time
from dataclasses import dataclass

from bench.core import hostlist
from bench.core.errors import UsageError

SLURM_STEP_VARS = ("SLURM_PROCID", "SLURM_STEP_NUM_TASKS", "SLURM_STEP_NODELIST", "SLURM_STEP_TASKS_PER_NODE")


@dataclass
class SlurmStep:
    rank: int
    size: int
    nodes: list[str]
    tasks_per_node: list[int]

    @property
    def task_hosts(self) -> list[str]:
        """The host of every task in rank order (Slurm's default block distribution)."""
        return [node for node, count in zip(self.nodes, self.tasks_per_node) for _ in range(count)]


def slurm_step() -> SlurmStep:
    """The current `srun` step from Slurm's variables; UsageError (exit 2) when absent or malformed."""
    missing = [v for v in SLURM_STEP_VARS if v not in os.environ]
    if missing:
        raise UsageError(f"Slurm job {os.environ.get('SLURM_JOB_ID', '?')}: {', '.join(missing)} not set; "
                         "launch the workers with srun")
    try:
        rank = int(os.environ["SLURM_PROCID"])
        size = int(os.environ["SLURM_STEP_NUM_TASKS"])
        nodes = hostlist.expand(os.environ["SLURM_STEP_NODELIST"])
        tasks = hostlist.expand_counts(os.environ["SLURM_STEP_TASKS_PER_NODE"])
    except ValueError as exc:
        raise UsageError(f"malformed Slurm environment: {exc}") from None
    if len(nodes) != len(tasks) or sum(tasks) != size or not 0 <= rank < size:
        raise UsageError(f"inconsistent Slurm environment: {len(nodes)} nodes, tasks per node {tasks}, "
                         f"{size} tasks, rank {rank}")
    return SlurmStep(rank, size, nodes, tasks)


def unresponsive_nodes(wait_s: float | None = None) -> str:
    """Which of this Slurm job's nodes Slurm reports down or not responding, as one phrase
    (for the record of a run whose collectives lost a peer); empty outside Slurm. Slurm
    notices a dead node only after SlurmdTimeout: it is asked again every second for up to
    `wait_s` (DISTBENCH_NODE_WAIT_S, default 20) until it names one."""
    nodes = os.environ.get("SLURM_JOB_NODELIST")
    if not nodes:
        return ""
    wait_s = float(os.environ.get("DISTBENCH_NODE_WAIT_S", "20")) if wait_s is None else wait_s
    deadline = time.monotonic() + wait_s
    while True:
        try:
            done = subprocess.run(["sinfo", "-h", "-N", "-n", nodes, "-o", "%N %T"], capture_output=True,
                                  text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"Slurm's node states unavailable ({exc})"
        states = dict(line.split()[:2] for line in done.stdout.splitlines() if len(line.split()) >= 2)
        bad = sorted(node for node, state in states.items()
                     if state.endswith("*") or state.startswith(("down", "fail", "drain")))
        if bad:
            return f"node(s) down or not responding: {', '.join(bad)}"
        if time.monotonic() >= deadline:
            return "Slurm reports no node down"
        time.sleep(1)


def port_base() -> int:
    """Ports for this job's workers: per job, so that jobs sharing a node do not collide."""
    if "DISTBENCH_PORT_BASE" in os.environ:
        return int(os.environ["DISTBENCH_PORT_BASE"])
    job = int(os.environ.get("SLURM_JOB_ID", "0") or 0)
    return 20000 + (job % 2000) * 16


def gather_floats(strategy, values: list[float], world_size: int) -> list[list[float]]:
    """Every worker's list of floats, in worker order, through the strategy's collectives.

    Lists may differ in length (a worker interrupted earlier): lengths are gathered first
    and the lists padded with NaN. With several replicas per worker, each worker's list
    arrives once per replica; one copy is kept.
    """
    import tensorflow as tf
    per_worker = strategy.num_replicas_in_sync // world_size

    def gathered(tensor):
        distributed = strategy.experimental_distribute_values_from_function(lambda ctx: tensor)
        return strategy.gather(distributed, axis=0).numpy()

    lengths = gathered(tf.constant([len(values)], tf.int64))[::per_worker]
    longest = int(max(lengths)) if len(lengths) else 0
    padded = list(values) + [math.nan] * (longest - len(values))
    rows = gathered(tf.constant([padded], tf.float64))[::per_worker]
    return [list(row[:n]) for row, n in zip(rows, lengths)]
