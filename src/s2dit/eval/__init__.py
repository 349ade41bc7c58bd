"""Evaluation: micro-world metrics (and later VBench harness and benchmarks)."""
