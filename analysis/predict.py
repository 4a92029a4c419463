"""Scaling prediction beyond the measured points, with the ring-allreduce model.

From the smallest-GPU-count runs of a (workload, scaling, strategy): the step time t1 their
median throughput implies (global batch / samples per second, so the prediction meets the
table at its base), at per-GPU batch b1, and the gradient bytes (parameters x 4, float32). At N
GPUs the compute per step is t1 + c x (bN - b1) (bN: the per-GPU batch at N: global/N for
strong scaling, b1 for weak; c fitted where runs at that count had two or more batch sizes,
else t1 x bN / b1), and one ring allreduce of the gradients takes 2(N-1)/N x bytes / B, where B is the
bus bandwidth (nccl-tests' busbw, which `bench comm` measures): the node's (NVLink) inside a
node, the inter-node link's (InfiniBand) across nodes, the slower link bounding the ring.
Every count above the smallest also pays a fixed overhead per step, calibrated on the
second-smallest measured count. Without overlap the step is compute + overhead + allreduce;
with perfect overlap, the larger of compute and allreduce, plus the overhead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

AROUND_FACTOR = 2.5        # a window of 2.6 octaves: two or three of `bench comm`'s powers of two
ASSUMPTIONS = [
    "Compute time per step is t0 + c x per-GPU batch, c fitted on the smallest count's runs at two or "
    "more per-GPU batch sizes (a weak and a strong study of the workload give two); with one batch "
    "size, proportional to it.",
    "Gradients are float32 (4 bytes per parameter, embeddings dense) and reduced by one ring allreduce "
    "per step (MultiWorkerMirrored packs them into one, Horovod fuses them).",
    "The allreduce costs 2(N-1) x alpha + 2(N-1)/N x bytes / B, alpha and B fitted to the message "
    f"sizes within a factor {AROUND_FACTOR:g} of the gradient's bytes of the `bench comm --strategy S` "
    "record of the strategy's own collective (else of MPI's; else B alone from --bandwidth or the peak busbw).",
    "A fixed overhead per step (what taking part in a collective costs beyond its bytes) is "
    "calibrated on each strategy's second-smallest measured count and paid at every larger count; "
    "benchmarks/predict_check.py checks this on links of known speed. Points off by more than 10% are flagged.",
]


def bandwidth_from_comm(records) -> tuple[float | None, str]:
    """The peak measured bus bandwidth (bytes/s) of `bench comm` records, and where it came from."""
    best = None
    for record in records:
        if record.kind != "comm" or record.status != "ok":
            continue
        peak = record.metrics.get("peak_busbw_GBps")
        if peak and (best is None or peak > best[0]):
            best = (peak, f"`bench comm` {record.run_id} ({record.world_size} ranks, peak busbw {peak:.2f} GB/s)")
    return (best[0] * 1e9, best[1]) if best else (None, "no `bench comm` record")


@dataclass(frozen=True)
class Link:
    """A collective's measured cost per message size (a `bench comm` record)."""
    rows: tuple
    ranks: int
    source: str
    spans_nodes: bool = True        # its ranks were on more than one node
    per_node: int = 1               # ranks on each node

    def fit(self, around: float | None = None) -> tuple[float, float]:
        return fit_alpha_beta(list(self.rows), self.ranks, around)

    def between(self, algorithm: str, inside, around: float | None = None):
        """The between-nodes level (collectives.Level) this collective measured, run as
        `algorithm`: with more than one rank a node its inside part (level `inside`) is taken
        off; with one, its ring over every rank."""
        from analysis.collectives import Level, Measured, between_level
        if not self.spans_nodes or self.per_node < 2 or self.ranks % self.per_node:
            return Level(*self.fit(around))
        times = tuple((float(row["bytes"]), float(row["time_us"]) * 1e-6) for row in self.rows)
        return between_level(algorithm, [Measured(self.ranks // self.per_node, self.per_node, times)], inside,
                             around, AROUND_FACTOR)

    @property
    def where(self) -> str:
        return "between nodes" if self.spans_nodes else "inside a node"


def links_from_comm(records) -> dict[tuple[str, bool], Link]:
    """Per collective (mpi, mwms, horovod) and link (inside a node, between nodes): the newest
    successful `bench comm` record of 2 or more ranks."""
    links: dict[tuple[str, bool], Link] = {}
    newest = sorted((r for r in records if r.kind == "comm" and r.status == "ok" and r.world_size >= 2
                     and len(r.metrics.get("allreduce") or []) >= 2), key=lambda r: r.run_id)
    for record in newest:
        per_node = record.ranks_per_node or 0
        spans = not 0 < per_node or per_node < record.world_size
        links[record.strategy, spans] = Link(
            tuple(record.metrics["allreduce"]), record.world_size,
            f"`bench comm` {record.run_id} ({record.strategy}, {record.world_size} ranks, "
            f"{'between nodes' if spans else 'inside a node'}"
            + (f", {per_node} a node)" if spans and per_node > 1 else ")"), spans, max(per_node, 1))
    return links


def choose_link(links: dict[tuple[str, bool], Link] | None, backend: str, spans_nodes: bool) -> Link | None:
    """The backend's own collective on the kind of link the count crosses, else its own on the
    other kind, else MPI's likewise."""
    for key in ((backend, spans_nodes), (backend, not spans_nodes), ("mpi", spans_nodes), ("mpi", not spans_nodes)):
        if key in (links or {}):
            return links[key]
    return None


def predict(table: pd.DataFrame, intra_bw: float, inter_bw: float | None = None,
            gpus_per_node: int = 2, counts: list[int] | None = None,
            links: dict[tuple[str, bool], Link] | None = None) -> pd.DataFrame:
    """Predicted step time, throughput and efficiency per (workload, scaling, strategy) at its
    measured GPU counts and `counts` (those a study asked for), from `scaling.aggregate`'s
    table (needs parameters and throughput). Compute comes from the smallest count; where a
    larger count was measured, the smallest of those calibrates the fixed overhead per step
    (its measured step minus modelled compute and allreduce), which every count above the
    smallest then pays: `overhead_from` names that count (0: none measured)."""
    inter_bw = inter_bw or intra_bw
    rows = []
    for (workload, scaling, strategy), group in table.groupby(["workload", "scaling", "strategy"]):
        base = group.sort_values("num_replicas").iloc[0]
        if not (base["parameters"] > 0 and base["samples_per_s"] > 0):
            continue
        step_1 = base["global_batch_size"] / base["samples_per_s"]
        base_throughput = base["samples_per_s"]
        nbytes = 4.0 * base["parameters"]
        wanted = sorted({int(g) for g in group["num_replicas"]} | set(counts or []))
        base_gpus = int(base["num_replicas"])
        backend = str(strategy).split()[0]         # "mwms bf16": the series of mwms in bfloat16

        def per_gpu_batch(gpus: int) -> float:
            return base["global_batch_size"] / gpus if scaling == "strong" else base["per_replica_batch_size"]

        slope = compute_slope(table, workload, strategy, base_gpus)

        def compute_s(batch: float) -> float:
            b1 = base["per_replica_batch_size"]
            return step_1 + slope * (batch - b1) if slope is not None else step_1 * batch / b1

        def compute_and_comm(gpus: int) -> tuple[float, float, float, float, str]:
            measured_link = choose_link(links, backend, spans_nodes=gpus > gpus_per_node)
            if measured_link:
                alpha, bandwidth = measured_link.fit(around=nbytes)
            else:
                alpha, bandwidth = 0.0, (intra_bw if gpus <= gpus_per_node else min(intra_bw, inter_bw))
            compute = compute_s(per_gpu_batch(gpus))
            return (compute, allreduce_s(nbytes, gpus, alpha, bandwidth), bandwidth, alpha,
                    measured_link.source if measured_link else "bandwidth")

        overhead, overhead_from = 0.0, 0
        larger = group[(group["num_replicas"] > base_gpus) & (group["samples_per_s"] > 0)]
        if not larger.empty:
            point = larger.sort_values("num_replicas").iloc[0]
            overhead_from = int(point["num_replicas"])
            compute, comm, *_ = compute_and_comm(overhead_from)
            overhead = point["global_batch_size"] / point["samples_per_s"] - compute - comm
        for gpus in (g for g in wanted if g >= base_gpus):
            compute, comm, bandwidth, alpha, link = compute_and_comm(gpus)
            fixed = overhead if gpus > base_gpus else 0.0
            global_batch = per_gpu_batch(gpus) * gpus
            for overlap, step in (("none", compute + fixed + comm), ("full", max(compute, comm) + fixed)):
                throughput = global_batch / step
                rows.append({"workload": workload, "scaling": scaling, "strategy": strategy, "num_replicas": gpus,
                             "overlap": overlap, "compute_s": compute, "overhead_s": fixed, "allreduce_s": comm,
                             "step_s": step, "samples_per_s": throughput,
                             "efficiency": throughput / base_throughput / (gpus / base_gpus),
                             "gradient_bytes": nbytes, "bandwidth_Bps": bandwidth, "alpha_s": alpha,
                             "link": link, "overhead_from": overhead_from})
    return pd.DataFrame(rows)


def compute_slope(table: pd.DataFrame, workload: str, strategy: str, count: int) -> float | None:
    """c of t(b) = t0 + c x b (seconds per sample and replica), fitted on the (workload,
    strategy) runs at `count` replicas over two or more per-replica batch sizes (a weak and a
    strong study, or runs added for it); None with one batch size or a slope that is not
    positive (noise), where compute is taken as proportional to the batch."""
    same = table[(table["workload"] == workload) & (table["strategy"] == strategy)
                 & (table["num_replicas"] == count) & (table["samples_per_s"] > 0)]
    points = [(float(row["per_replica_batch_size"]), row["global_batch_size"] / row["samples_per_s"])
              for _, row in same.iterrows()]
    if len({batch for batch, _ in points}) < 2:
        return None
    _, slope = fit_compute(points)
    return slope if slope > 0 else None


def with_measured(prediction: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """Prediction rows side by side with the measured throughput where one exists."""
    keys = ["workload", "scaling", "strategy", "num_replicas"]
    measured = table[keys + ["samples_per_s"]].rename(columns={"samples_per_s": "measured_samples_per_s"})
    out = prediction.merge(measured, on=keys, how="left")
    out["measured_over_predicted"] = out["measured_samples_per_s"] / out["samples_per_s"]
    return out.replace([np.inf, -np.inf], np.nan)


# --- the alpha-beta model, fitted from measurements ------------------------------------

def fit_alpha_beta(rows: list[dict], ranks: int, around: float | None = None) -> tuple[float, float]:
    """(alpha seconds per message, bus bandwidth bytes/s) of a ring allreduce over `ranks`,
        time = 2(n-1) alpha + 2(n-1)/n x bytes / B
    fitted by least squares to every message size of a `bench comm` run, or, with `around`
    (a gradient's bytes), to the sizes within a factor AROUND_FACTOR of it (two or three
    powers of two), else through the two measured sizes on either side of it: the curve is
    not one line (a shaped link's token bucket sends 64 KiB at twice its rate; Open MPI
    switches algorithms with size), and the step pays the cost at its own size. Three sizes
    where there are three: one size's time alone can be off (Horovod's allreduce, Open MPI
    over a 50 Mbit/s shaped link, took 108 to 143 ms for 512 KiB from run to run).
    `rows` are its `allreduce` rows (bytes, time_us)."""
    points = sorted((float(row["bytes"]), float(row["time_us"]) * 1e-6) for row in rows)
    if len(points) < 2 or ranks < 2:
        raise ValueError("need 2 or more message sizes and 2 or more ranks")
    if around is not None:
        near = [(size, t) for size, t in points if around / AROUND_FACTOR <= size <= around * AROUND_FACTOR]
        above = next((i for i, (size, _) in enumerate(points) if size >= around), len(points) - 1)
        points = near if len(near) >= 2 else points[max(above - 1, 0):max(above - 1, 0) + 2]
    window = points
    slope, intercept = _line(window)
    if slope <= 0 and around is not None:
        # time does not grow with size across the window (its noise is larger than its bytes'
        # cost, as at half a core): every size's line instead
        window = sorted((float(row["bytes"]), float(row["time_us"]) * 1e-6) for row in rows)
        slope, intercept = _line(window)
    if slope <= 0:                  # latency only: the bytes cost nothing measurable
        return float(np.mean([t for _, t in window])) / (2 * (ranks - 1)), math.inf
    alpha = float(intercept) / (2 * (ranks - 1))
    return (alpha if around is not None else max(alpha, 0.0)), 2 * (ranks - 1) / ranks / float(slope)


def _line(points: list[tuple[float, float]]) -> tuple[float, float]:
    sizes, times = (np.array(column) for column in zip(*points))
    slope, intercept = np.polyfit(sizes, times, 1)
    return float(slope), float(intercept)


def fit_compute(points: list[tuple[float, float]]) -> tuple[float, float]:
    """(t0 seconds, c seconds per sample) of t(b) = t0 + c x b from (per-replica batch, step
    seconds) at two or more batch sizes."""
    batches = np.array([b for b, _ in points], dtype=float)
    if len(set(batches)) < 2:
        raise ValueError("need steps at two or more per-replica batch sizes")
    slope, intercept = np.polyfit(batches, np.array([t for _, t in points], dtype=float), 1)
    return float(intercept), float(slope)


def allreduce_s(nbytes: float, ranks: int, alpha: float, bandwidth: float, collectives: int = 1) -> float:
    """A ring allreduce of `nbytes` in `collectives` pieces (each pays its latency)."""
    if ranks < 2:
        return 0.0
    return collectives * 2 * (ranks - 1) * alpha + 2 * (ranks - 1) / ranks * nbytes / bandwidth


def step_s(compute: float, overhead: float, communication: float, overlap: float = 0.0) -> float:
    """compute + the framework's fixed cost per step + the part of communication that does
    not overlap compute (`overlap`: the share that does, 0..1)."""
    return compute + overhead + (1 - overlap) * communication
