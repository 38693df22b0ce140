"""Benchmarks: rockstar_ws against plain Channels, side by side (see docs/benchmarks.md)."""
