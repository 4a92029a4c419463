"""The time of one allreduce of S bytes over N nodes of g ranks each (P = N x g), as each
backend runs it: the alpha-beta model per level (Hockney: a message of m bytes over a link
costs alpha + m / B), with B the link's bus bandwidth (nccl-tests' busbw, which `bench comm`
measures: a ring over ranks on that link takes 2(n-1)/n x S / B).

- `ring`: one flat ring over all P ranks (TensorFlow's RingReducer, MultiWorkerMirrored's
  CPU collective; Open MPI's ring for large messages; NCCL's ring). Its 2(P-1) steps each move
  S/P bytes over every edge at once, so with more than one node every step waits for an
  inter-node edge: 2(P-1) (alpha_b + S / (P B_b)). Ranks ordered by node (as Slurm and
  NCCL order them), one edge enters and one leaves each node: its link is not shared.
- `tree`: NCCL's double binary tree between nodes (NCCL 2.4+, "Massively Scale Your Deep
  Learning Training with NCCL 2.4", NVIDIA 2019): a chain inside each node, reduce up and
  broadcast down trees of depth ceil(log2 N) between them, pipelined, so latency grows with
  log2 N and every byte crosses a node's link twice: 2(g-1) alpha_i + 2 ceil(log2 N) alpha_b
  + 2 S / B_b (B_i for one node).
- `hierarchical`: Horovod's HOROVOD_HIERARCHICAL_ALLREDUCE (and NCCL's own split of a
  multi-node ring): a reduce-scatter inside each node, g concurrent allreduces of S/g between
  the nodes (sharing the node's link, B_b / g each), an all-gather inside:
  2 [(g-1) alpha_i + (g-1)/g S / B_i] + 2(N-1) alpha_b + 2(N-1)/N S / B_b.
- `halving_doubling`: Rabenseifner's allreduce (Open MPI's coll/tuned "rabenseifner"): a
  reduce-scatter by recursive halving at distances 1, 2, 4, ... then an all-gather by
  recursive doubling back. With ranks ordered by node, the first log2(g) exchanges stay
  inside a node and the rest cross: 2 [log2(g) alpha_i + (g-1)/g S / B_i] + 2 [log2(N)
  alpha_b + (N-1)/N S / B_b] (the g ranks of a node each send their S/g share at once, sharing
  its link). A count of nodes that is not a power of two folds the extra ones in first and
  out last: 2 (alpha_b + S / B_b) more.
- `nccl`: NCCL picks ring or tree by its own cost model; here the faster of the two.

Which one a backend runs, here and on GPUs, is the backend's to say (its `allreduce`, in every
record's `extra.allreduce`): TensorFlow's ring on CPUs and NCCL on GPUs for MultiWorkerMirrored;
for Horovod, Gloo's ring, or Open MPI's MPI_Allreduce (4.1's coll/tuned fixed decision:
Rabenseifner's for gradient-sized messages) under its MPI controller, and NCCL on GPUs.

With one node every form but halving-doubling is a ring inside it. Pure arithmetic: no TensorFlow here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

ALGORITHMS = ("ring", "tree", "hierarchical", "halving_doubling", "nccl")



@dataclass(frozen=True)
class Level:
    """A link's cost: seconds per message (alpha) and bus bandwidth in bytes/s."""
    alpha: float
    bandwidth: float


def ring_s(nbytes: float, ranks: int, link: Level) -> float:
    """A ring allreduce over `ranks` ranks on one kind of link."""
    if ranks < 2:
        return 0.0
    return 2 * (ranks - 1) * link.alpha + 2 * (ranks - 1) / ranks * nbytes / link.bandwidth


def allreduce_s(algorithm: str, nbytes: float, nodes: int, per_node: int, inside: Level, between: Level) -> float:
    """One allreduce of `nbytes` over `nodes` x `per_node` ranks by `algorithm`."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown allreduce algorithm {algorithm!r}: one of {', '.join(ALGORITHMS)}")
    if nodes < 1 or per_node < 1:
        raise ValueError(f"{nodes} nodes x {per_node} ranks: both must be >= 1")
    ranks = nodes * per_node
    if algorithm == "halving_doubling":
        return _halving_doubling_s(nbytes, nodes, per_node, inside, between)
    if nodes == 1:
        return ring_s(nbytes, ranks, inside)
    if algorithm == "ring":
        return ring_s(nbytes, ranks, between)
    if algorithm == "nccl":
        return min(allreduce_s(a, nbytes, nodes, per_node, inside, between) for a in ("ring", "tree"))
    if algorithm == "tree":
        return (2 * (per_node - 1) * inside.alpha + 2 * math.ceil(math.log2(nodes)) * between.alpha
                + 2 * nbytes / between.bandwidth)
    # hierarchical: inside, g pieces of S/g; between, g rings of S/g sharing the node's link
    inside_s = 2 * ((per_node - 1) * inside.alpha + (per_node - 1) / per_node * nbytes / inside.bandwidth)
    shared = Level(between.alpha, between.bandwidth / per_node)
    return inside_s + ring_s(nbytes / per_node, nodes, shared)


def _halving_doubling_s(nbytes: float, nodes: int, per_node: int, inside: Level, between: Level) -> float:
    if per_node * nodes < 2:
        return 0.0
    inside_s = 2 * (math.log2(per_node) * inside.alpha + (per_node - 1) / per_node * nbytes / inside.bandwidth)
    folded = 2 ** int(math.log2(nodes))
    fold_s = 0.0 if folded == nodes else 2 * (between.alpha + nbytes / between.bandwidth)
    return inside_s + 2 * (math.log2(folded) * between.alpha + (folded - 1) / folded * nbytes / between.bandwidth) + fold_s


@dataclass(frozen=True)
class Measured:
    """One collective timed at `nodes` x `per_node`: (bytes, seconds) per message size."""
    nodes: int
    per_node: int
    times: tuple


def between_level(algorithm: str, measured: list[Measured], inside: Level, around: float | None = None,
                  window: float = 2.5) -> Level:
    """The between-nodes level from collectives timed at one or more shapes, the inside level
    known. At a fixed shape every form above is time = inside's part + a x alpha_b + b x S / B_b
    (a, b: the shape's counts of between latencies and bytes), so with the inside part taken off,
    alpha_b and 1 / B_b are one least-squares fit over every shape's sizes (within a factor
    `window` of `around`, a gradient's bytes, where two or more are). 2 nodes x 2 ranks measures
    the node's shared link and both levels as the backend's collective runs them; with 2 nodes x
    1 beside it a ring's latency and bytes separate. No time growing with size: latency only."""
    if not measured or any(m.nodes < 2 for m in measured):
        raise ValueError("a between level needs collectives timed on 2 or more nodes")
    form = "ring" if algorithm == "nccl" else algorithm        # NCCL's ring for gradient-sized messages
    free, unit = Level(0.0, math.inf), float(1 << 20)
    rows, rest = [], []
    for m in measured:
        def cost(nbytes: float, between: Level, m=m) -> float:
            return allreduce_s(form, nbytes, m.nodes, m.per_node, inside, between)
        latencies = cost(unit, Level(1.0, math.inf)) - cost(unit, free)
        per_byte = (cost(unit, Level(0.0, 1.0)) - cost(unit, free)) / unit
        sizes = [size for size, _ in m.times]
        near = [size for size in sizes if around is None or around / window <= size <= around * window]
        for size, seconds in m.times:
            if size in (near if len(near) >= 2 else sizes):
                rows.append((latencies, per_byte * size))
                rest.append(seconds - cost(size, free))
    design, rest_ = np.array(rows), np.array(rest)
    if np.linalg.matrix_rank(design) < 2:
        raise ValueError("a between level needs 2 or more message sizes, or one size at shapes whose "
                         "latencies and bytes differ")
    alpha, inverse_bandwidth = np.linalg.lstsq(design, rest_, rcond=None)[0]
    if inverse_bandwidth <= 0:
        return Level(float(np.mean(rest_ / design[:, 0])), math.inf)
    # a line's intercept near a gradient may dip below 0 (as predict.fit_alpha_beta's); over
    # every size it is a latency
    return Level(float(alpha) if around is not None else max(float(alpha), 0.0), 1.0 / float(inverse_bandwidth))


def inter_node_bytes(algorithm: str, nbytes: float, nodes: int, per_node: int) -> float:
    """Bytes one node sends over its link in one allreduce (0 on one node)."""
    if nodes < 2:
        return 0.0
    ranks = nodes * per_node
    if algorithm == "ring":
        return 2 * (ranks - 1) / ranks * nbytes
    if algorithm == "tree":
        return 2 * nbytes
    if algorithm == "halving_doubling" and 2 ** int(math.log2(nodes)) != nodes:
        folded = 2 ** int(math.log2(nodes))
        return 2 * (folded - 1) / folded * nbytes + 2 * nbytes
    return 2 * (nodes - 1) / nodes * nbytes


def expected_max_normal(count: int) -> float:
    """E[max of `count` independent standard normals] (0 for one; 0.564 for 2, 1.029 for 4,
    2.344 for 64): how far the slowest of `count` replicas' steps lies above the mean, in
    standard deviations of one replica's step time, when every step waits for all of them."""
    if count < 2:
        return 0.0
    import numpy as np
    x = np.linspace(-10, 10, 40001)
    pdf = np.exp(-x * x / 2) / math.sqrt(2 * math.pi)
    cdf = 0.5 * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))
    return float(np.trapezoid(x * count * pdf * cdf ** (count - 1), x))
