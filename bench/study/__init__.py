"""Studies of trials under Ray Tune: each trial a run of bench.run.runner."""
