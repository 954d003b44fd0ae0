"""A loss that overflows stops the run before the optimizer step: one line naming the step and the last good
checkpoint, exit code 1, a `diverged` metrics event, no final model; pretraining, distillation from a cache and
online distillation alike (the one loop)."""

from __future__ import annotations

import pytest
from conftest import make_debug_model, run_cli

from bl2.runs import metrics

# lr 1e30 with no warm-up: the first update makes the weights ~1e30, and the next loss overflows
EXPLODE = ("--preset", "debug", "--lr", "1e30", "--warmup-steps", "0", "--max-steps", "6", "--batch-size", "8",
           "--ckpt-every-steps", "1", "--log-every-steps", "1", "--device", "cpu")


@pytest.fixture(scope="module")
def sources(tmp_path_factory, data_dir) -> dict:
    root = tmp_path_factory.mktemp("diverged")
    teacher = make_debug_model(root / "t0", data_dir, seed=0)
    cache = root / "cache.zarr"
    r = run_cli("cache-logits", "--data", data_dir, "--teachers", teacher, "--out", cache, "--k", "8",
                "--max-windows", "32", "--device", "cpu")
    assert r.exit_code == 0, r.stderr
    return {"pretrain": ["pretrain", "--data", str(data_dir)], "cache": ["distill", "--cache", str(cache)],
            "online": ["distill", "--teachers", str(teacher), "--data", str(data_dir)]}


@pytest.mark.parametrize("kind", ["pretrain", "cache", "online"])
def test_non_finite_loss_stops_before_the_optimizer_step(tmp_path, sources, kind):
    out = tmp_path / kind
    r = run_cli(*sources[kind], "--out", out, *EXPLODE)
    assert r.exit_code == 1, (r.stdout[-2000:], r.stderr)
    assert "Traceback" not in r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: step "), r.stderr
    assert "not finite" in lines[0] and "stopped before the optimizer step" in lines[0]
    event = metrics.events(out / "metrics.jsonl", "diverged")[0]
    step = event["step"]
    assert lines[0].startswith(f"error: step {step}:") and step >= 2
    last = out / "checkpoints" / f"step-{step - 1:06d}"
    assert f"last good checkpoint: {last}" in lines[0] and last.is_dir()
    assert not (out / "model.safetensors").exists()  # no final model from a diverged run
    assert all(row["step"] < step for row in metrics.read(out / "metrics.jsonl", "train"))
