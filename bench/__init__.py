"""anyxp's benchmarks: each backend against its peers, side by side (see README.md)."""
