"""Realistic test pictures with known contents, shared by the test suite and the benchmarks."""
