"""The batch-synchronous baseline launcher of benchmarks/workers.py."""
