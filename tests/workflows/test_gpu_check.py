"""benchmarks/gpu_check.sh runs on CPU with the debug preset, so the script is ready before a GPU is."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_check_on_cpu(tmp_path):
    env = os.environ | {"PY": sys.executable}
    proc = subprocess.run([str(ROOT / "benchmarks" / "gpu_check.sh"), "--device", "cpu", "--preset", "debug",
                           "--out", str(tmp_path), "--steps", "4", "--windows", "32", "--bench-steps", "2",
                           "--limit", "5"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads((tmp_path / "gpu_check.json").read_text())
    steps = doc["bench_distill"]["summary"]
    assert {"hf-trainer-ce", "ce", "cache-ram:topk", "cache-stream:topk", "online"} <= set(steps)
    assert doc["cache"]["cache_tokens"] == 32 * 128 and doc["cache"]["bare_forward_tokens_per_s"] > 0
    assert "hf" in doc["loss_chunk"]["times"] and any(k.startswith("fused auto") for k in doc["loss_chunk"]["times"])
    assert "GPU check summary" in proc.stdout and "output layer + loss: hf" in proc.stdout
