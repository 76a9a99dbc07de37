"""Benchmarks: `callstream bench producer|stream|sink`, each against a baseline measured in the same run.

Each prints progress while it runs and, as its last line, one JSON object with its figures.
"""
