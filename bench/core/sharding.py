"""Which rows of every global batch a replica (or a worker's replicas) reads.

A data-parallel step trains on one global batch; each of `count` shards computes its own
contiguous part of it, from the same seeded global order, and nothing else: input work and
memory per rank stay those of one replica at any replica count. Shard `index` of a batch of
`rows` rows owns rows [index * rows // count, (index + 1) * rows // count): equal parts of a
full batch (the global batch divides by the replicas), parts that differ by at most one row
for the last, partial batch of an evaluation. No TensorFlow here: backends and workloads
both speak it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Shard:
    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index} of {self.count}")

    def bounds(self, rows: int) -> tuple[int, int]:
        """[start, stop) of this shard's rows in a batch of `rows`."""
        return self.index * rows // self.count, (self.index + 1) * rows // self.count

    def size(self, rows: int) -> int:
        start, stop = self.bounds(rows)
        return stop - start

    def of(self, inner: "Shard") -> "Shard":
        """Shard `inner` of this shard (a worker's replicas), as a shard of the whole batch;
        only exact for batches that divide by every count."""
        return Shard(self.index * inner.count + inner.index, self.count * inner.count)


WHOLE = Shard()
