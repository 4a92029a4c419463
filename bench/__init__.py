"""distbench: one set of Keras 3 workloads, interchangeable distribution backends,
measurements and self-describing result records.

Importing this package (and `bench.core.record`) never imports TensorFlow: records are
read by `analysis/` and `jobs/` on machines without it.
"""

__version__ = "0.1.0"
