"""bl2: BabyLlama-2 style ensemble distillation with cached (Zarr) teacher soft targets."""

import os

# Spinning OpenMP threads turn any CPU contention (our own prefetch/writer threads, a second process) into
# 100x slowdowns of small matmuls on a 2-core machine (measured: 3 ms -> 330 ms per debug forward). Passive
# waiting must be chosen before torch loads libgomp; an explicit user setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
