"""The ground floor: configs, records, statistics, errors, names of hosts, numerics, hyperparameters.
Imports nothing of the project's above it (no backend, no workload, no TensorFlow at import)."""
