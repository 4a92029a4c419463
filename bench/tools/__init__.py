"""Tools beside the runs: `bench comm`, `bench doctor`, the emulated cluster."""
