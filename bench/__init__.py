"""Benchmarks of wa-sessions: `python -m bench` (see bench/README.md)."""
