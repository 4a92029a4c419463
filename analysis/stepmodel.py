"""A data-parallel step at N nodes x g ranks, from what one replica and two replicas measured.

    step(N, g) = compute                      one replica's median step (same per-replica batch)
               + launch                       per step, what a collective costs beyond its
                                              bytes and hops: the framework's launch and cycle
               + sigma x E[max of P normals]  the straggler: every step waits for the slowest
                                              of P = N g replicas; sigma is one replica's
                                              step-time spread (robust: from its p90)
               + exposed x allreduce(N, g)    the collective as the backend runs it over two
                                              levels (analysis/collectives.py), its hop
                                              latencies included; `exposed` = 1 - overlap,
                                              the share not hidden behind compute

`launch` and `exposed` are fitted by least squares on the runs at 2 replicas (one node x 2,
two nodes x 1, on links of different rates), whose collective is known for each: the
overlap is measured (a run's step against its compute and its collective alone), not
assumed. Nothing is fitted at the counts it predicts. Pure arithmetic: no TensorFlow here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from analysis.collectives import Level, allreduce_s, expected_max_normal

P90_Z = 1.2816        # the 90th percentile of a normal, in standard deviations


def robust_sigma(median_s: float, p90_s: float) -> float:
    """A step time's standard deviation from its median and 90th percentile: a slow step now and
    then (a garbage collection, a checkpoint) moves the std, not these."""
    return max(p90_s - median_s, 0.0) / P90_Z


@dataclass(frozen=True)
class Levels:
    """The two links of a cluster of nodes, and where each figure came from."""
    inside: Level
    between: Level
    source: str = ""


@dataclass(frozen=True)
class FitPoint:
    """A measured run at 2 (or more) replicas: its shape, median step and the links it ran on;
    `compute_s`: one replica's step measured beside it (the same minutes of the machine), where
    the model's own compute is not."""
    nodes: int
    per_node: int
    step_s: float
    levels: Levels
    compute_s: float | None = None


@dataclass(frozen=True)
class StepModel:
    compute_s: float
    sigma_s: float
    launch_s: float
    exposed: float
    gradient_bytes: float
    algorithm: str

    @property
    def overlap(self) -> float:
        return 1.0 - self.exposed

    def parts(self, nodes: int, per_node: int, levels: Levels) -> dict[str, float]:
        """Every term of the step at `nodes` x `per_node`, in seconds, and their sum."""
        replicas = nodes * per_node
        collective = allreduce_s(self.algorithm, self.gradient_bytes, nodes, per_node, levels.inside, levels.between)
        parts = {"compute_s": self.compute_s,
                 "launch_s": self.launch_s if replicas > 1 else 0.0,
                 "straggler_s": self.sigma_s * expected_max_normal(replicas),
                 "allreduce_s": collective,
                 "exposed_allreduce_s": self.exposed * collective}
        parts["step_s"] = (parts["compute_s"] + parts["launch_s"] + parts["straggler_s"]
                           + parts["exposed_allreduce_s"])
        return parts

    def step_s(self, nodes: int, per_node: int, levels: Levels) -> float:
        return self.parts(nodes, per_node, levels)["step_s"]

    def to_dict(self) -> dict:
        return {**asdict(self), "overlap": self.overlap}


def fit(compute_s: float, sigma_s: float, gradient_bytes: float, algorithm: str,
        points: list[FitPoint]) -> StepModel:
    """`launch` and `exposed` by least squares over `points` (what each step spends beyond compute
    and the straggler, against its collective's modelled time). With one point, or collectives
    too alike to tell the two apart, `exposed` is 1 (no overlap) and `launch` the mean rest.
    Both are kept >= 0 (a negative launch, from noise at 2 replicas, would make every larger
    count faster than its parts); `exposed` above 1: the collective costs more in the run than
    alone (its CPU work competes with compute's)."""
    if not points:
        raise ValueError("no run at 2 or more replicas to fit on")
    rest, collective = [], []
    for point in points:
        replicas = point.nodes * point.per_node
        own = compute_s if point.compute_s is None else point.compute_s
        rest.append(point.step_s - own - sigma_s * expected_max_normal(replicas))
        collective.append(allreduce_s(algorithm, gradient_bytes, point.nodes, point.per_node,
                                      point.levels.inside, point.levels.between))
    rest_, collective_ = np.array(rest), np.array(collective)
    spread = collective_.max() - collective_.min()
    if len(points) >= 2 and spread > 0.1 * max(collective_.max(), 1e-12):
        exposed, launch = np.polyfit(collective_, rest_, 1)
        if exposed < 0:
            exposed, launch = 0.0, float(rest_.mean())
        if launch < 0:      # a cost, never a gain: the line through the origin instead
            exposed, launch = float(collective_ @ rest_ / (collective_ @ collective_)), 0.0
    else:
        exposed, launch = 1.0, float((rest_ - collective_).mean())
    return StepModel(compute_s, sigma_s, max(float(launch), 0.0), max(float(exposed), 0.0), gradient_bytes,
                     algorithm)
