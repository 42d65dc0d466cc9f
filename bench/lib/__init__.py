"""Code the benchmarks share (not a benchmark itself: `make bench` runs only `bench/*.py`)."""
