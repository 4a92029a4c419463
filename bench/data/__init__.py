"""Datasets: locate pre-staged copies, download with checksums into a cache, or fail with
one line that says where we looked and how to pre-stage (compute nodes have no internet).

Search order for a dataset's files: `--data-dir`, then $DISTBENCH_DATA_DIR, then the cache
($DISTBENCH_CACHE, default ~/.cache/distbench/data), then a download into the cache
(unless $DISTBENCH_OFFLINE=1 or an explicit --data-dir was given).
"""
