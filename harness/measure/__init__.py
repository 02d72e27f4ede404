"""What a network costs: parameters, file size, MACs, a structural fingerprint and timed
latency (``cost``), and windows of interleaved rounds with a confidence interval for the
median (``latency``).

Plain PyTorch: imports no other harness subpackage, never Ray.
"""
