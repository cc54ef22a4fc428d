"""Benchmarks: the scheduling benchmark and the local topology it runs on."""
