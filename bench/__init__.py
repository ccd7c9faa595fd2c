"""Benchmarks on the real stack. ``make bench`` runs ``python -m bench``; README has the table.

Timings are reported, never asserted: the machines are shared and noisy.
"""
