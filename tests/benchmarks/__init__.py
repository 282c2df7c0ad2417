"""Smoke tests of the benchmarks (tiny sizes, no timing assertions)."""
