"""Benchmarks, run by hand (``make bench``); results go to BENCHMARKS.md with the machine."""
