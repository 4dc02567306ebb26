"""Benchmarks (not tests): they print tables and write them to docs/. Run as ``python -m bench.<name>``."""
