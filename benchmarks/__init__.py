"""Reproducible timings of the platform (pipeline, serving throughput)."""
