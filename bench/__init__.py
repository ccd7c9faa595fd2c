"""Physical-limit benchmarks of sis-lms-sync, on the real stack (``make bench``).

They measure what no later benchmark can beat on this machine: Avro serde speed for
``sis.users.v1`` (ours against plain fastavro) and raw produce/consume throughput of the local
broker with confluent-kafka. ``python -m bench`` prints a Markdown table and writes the full
numbers to ``bench/results/<UTC timestamp>.json``. Timings are reported, never asserted.
"""
