"""One run: the runner and its launch, lifecycle, core binding, callbacks, sampling and gradients.
The floor that knows both backends (strategies/) and workloads (bench/workloads)."""
