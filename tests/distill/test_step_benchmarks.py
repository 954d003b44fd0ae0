"""benchmarks/bench_loss_chunk.py and profile_step.py run end to end on toy shapes and report every
configuration and phase (what they measure is not a test; that they measure what they say is)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run(script: str, *args: str, tmp_path: Path) -> dict:
    out = tmp_path / "out.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args, "--out-json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(out.read_text())


@pytest.mark.slow
def test_bench_loss_chunk_times_hf_and_each_chunk(tmp_path):
    doc = run("bench_loss_chunk.py", "--hidden", "8", "--vocab", "512", "--positions", "256", "--chunks",
              "15,16,auto", "--repeats", "1", "--mode", "topk", tmp_path=tmp_path)
    assert set(doc["times"]) == {"hf", "fused 2^15 (64 rows)", "fused 2^16 (128 rows)", *[
        k for k in doc["times"] if k.startswith("fused auto")]}
    assert len(doc["times"]) == 4 and all(len(t) == 1 and t[0] > 0 for t in doc["times"].values())
    assert doc["machine"]["cores"] >= 1


@pytest.mark.slow
def test_profile_step_splits_both_steps_into_phases(tmp_path):
    doc = run("profile_step.py", "--preset", "debug", "--vocab", "400", "--batch-size", "4", "--steps", "2",
              "--loss-chunk", "100", tmp_path=tmp_path)
    assert doc["chunk"] == {"rows": 100, "how": "set"}
    for side in ("bl2", "hf"):
        phases = doc["summary"][side]
        assert phases["step"] == pytest.approx(sum(v for k, v in phases.items() if k != "step"), rel=0.2)
        assert phases["model"] > 0 and phases["backward"] > 0


def test_bench_distill_compile_both_interleaves_eager_and_compiled():
    import argparse
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_distill", ROOT / "benchmarks" / "bench_distill.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    args = argparse.Namespace(cache="/c/topk.zarr", teachers="t1,t2", only="cache-ram", compile="both")
    assert bench.configurations(args) == [
        "hf-trainer-ce", "hf-trainer-ce+compiled", "ce", "ce+compiled", "cache-ram:/c/topk.zarr",
        "cache-ram:/c/topk.zarr+compiled"]
    assert bench.configurations(argparse.Namespace(**{**vars(args), "compile": "no"}))[-1] == "cache-ram:/c/topk.zarr"
    assert bench.label("online+compiled") == "online+compiled"


def test_steal_share_is_the_stolen_fraction_of_the_interval():
    from bl2.runtime import cpu_times, steal_share

    assert steal_share((10, 1000), (40, 1200)) == pytest.approx(0.15)
    assert steal_share(None, (40, 1200)) is None and steal_share((10, 1000), (10, 1000)) is None
    now = cpu_times()
    if Path("/proc/stat").exists():
        steal, total = now
        assert 0 <= steal <= total
