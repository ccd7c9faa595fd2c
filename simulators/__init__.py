"""Simulated systems (a OneRoster SIS over a generated district) for the demo, tests and benchmarks.

They use the product's protocol code in ``connectors/`` and the kernel in ``streams/``; nothing in
the product imports them.
"""
