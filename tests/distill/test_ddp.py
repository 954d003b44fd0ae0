"""Multi-process training under torchrun (CPU, gloo): 2 processes train like 1 with the same global batch; a
rank killed with SIGKILL takes the job down, and --resume under torchrun continues it exactly; two "nodes" on
localhost (two torchrun agents, c10d rendezvous on 127.0.0.1) train together.

Tolerance 2 processes vs 1: each rank averages the loss over its half of the global batch and DDP averages the
two gradients, so the same numbers are summed in a different order: equal up to float32 rounding (~1e-7
relative per step), which a few AdamW steps do not amplify beyond ~1e-5. Runs of the same process count are
bit-identical (gloo's all-reduce of two ranks is deterministic)."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import pytest
import torch
from conftest import run_cli, torchrun, worker_pids

from bl2.runs import metrics

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")]

TRAIN = ["--preset", "debug", "--batch-size", "8", "--warmup-steps", "2", "--lr", "3e-3", "--log-every-steps", "1",
         "--device", "cpu"]
TIMEOUT = 240


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(run_dir / "model.safetensors"))


def train_ce(run_dir: Path) -> list[float]:
    return [r["ce"] for r in metrics.read(run_dir / "metrics.jsonl", "train")]


def assert_close_runs(a: Path, b: Path, rtol: float = 1e-5) -> None:
    assert train_ce(a) == pytest.approx(train_ce(b), rel=rtol)
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        scale = wa[k].abs().max().clamp_min(1e-12)
        assert ((wa[k] - wb[k]).abs().max() / scale).item() < rtol, k


@pytest.fixture(scope="module")
def one_process(tmp_path_factory, data_dir) -> Path:
    out = tmp_path_factory.mktemp("ddp") / "one"
    r = run_cli(*PRETRAIN, "--data", data_dir, "--out", out)
    assert r.exit_code == 0, r.stderr
    return out


PRETRAIN = ["pretrain", "--max-steps", "6", "--ckpt-every-steps", "2", *TRAIN]


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory, data_dir) -> Path:
    out = tmp_path_factory.mktemp("ddp") / "two"
    r = torchrun(*PRETRAIN, "--data", data_dir, "--out", out)
    assert r.stdout.count("pretrain: preset debug") == 1, r.stdout  # only rank 0 prints
    assert r.stdout.count("final model = best validation weights") == 1, r.stdout
    return out


def test_two_processes_pretrain_like_one(two_processes, one_process):
    out = two_processes
    assert_close_runs(out, one_process)
    run = __import__("json").loads((out / "run.json").read_text())
    assert run["provenance"]["world_size"] == 2 and run["provenance"]["backend"] == "gloo"
    assert len(train_ce(out)) == 6 and not list(out.glob("*rank*"))  # rank 1 wrote nothing of its own


def test_two_processes_distill_from_cache_like_one(tmp_path, data_dir, one_process):
    cache = tmp_path / "topk.zarr"
    r = run_cli("cache-logits", "--data", data_dir, "--teachers", one_process, "--out", cache, "--k", "8",
                "--batch-size", "16", "--device", "cpu")
    assert r.exit_code == 0, r.stderr
    args = ["distill", "--cache", cache, "--max-steps", "5", "--alpha", "0.5", *TRAIN]
    r = run_cli(*args, "--out", tmp_path / "one")
    assert r.exit_code == 0, r.stderr
    torchrun(*args, "--out", tmp_path / "two", "--cache-in-memory", "no")
    assert_close_runs(tmp_path / "two", tmp_path / "one")
    kl = [r["kl"] for r in metrics.read(tmp_path / "two" / "metrics.jsonl", "train")]
    # the KL is a small difference of larger sums (t log t - t log q): its float32 rounding is absolute
    assert kl == pytest.approx([r["kl"] for r in metrics.read(tmp_path / "one" / "metrics.jsonl", "train")],
                               rel=1e-5, abs=1e-5)


def test_two_processes_online_distill_like_one(tmp_path, data_dir, one_process):
    """Online KD under DDP: every rank runs the live teacher on its own share of each batch."""
    args = ["distill", "--teachers", one_process, "--data", data_dir, "--max-steps", "4", "--alpha", "0.5", *TRAIN]
    r = run_cli(*args, "--out", tmp_path / "one")
    assert r.exit_code == 0, r.stderr
    torchrun(*args, "--out", tmp_path / "two")
    assert_close_runs(tmp_path / "two", tmp_path / "one")
    kl = [r["kl"] for r in metrics.read(tmp_path / "two" / "metrics.jsonl", "train")]
    assert kl == pytest.approx([r["kl"] for r in metrics.read(tmp_path / "one" / "metrics.jsonl", "train")],
                               rel=1e-5, abs=1e-5) and all(k > 0 for k in kl)


def test_killed_rank_then_resume_equals_uninterrupted(tmp_path, data_dir, two_processes):
    args = [*PRETRAIN, "--data", data_dir]
    crashed = tmp_path / "crashed"
    proc = torchrun(*args, "--out", crashed, wait=False, slow=0.5)
    try:
        deadline = time.time() + TIMEOUT
        while not (crashed / "checkpoints" / "step-000004").is_dir():
            assert time.time() < deadline and proc.poll() is None, "the run ended before its checkpoint"
            time.sleep(0.2)
        os.kill(worker_pids(crashed)[1], signal.SIGKILL)
        out, _ = proc.communicate(timeout=120)  # torchrun takes the other rank down: no hang
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0 and not (crashed / "model.safetensors").exists(), out[-2000:]
    torchrun(*args, "--out", crashed, "--resume")
    a, b = weights(two_processes), weights(crashed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert train_ce(two_processes) == train_ce(crashed)
    assert metrics.events(crashed / "metrics.jsonl", "resume")[0]["world_size"] == 2


def test_checkpoint_of_two_resumes_on_one(tmp_path, data_dir, one_process, two_processes):
    """No rank drew randomness of its own, so 2 processes' checkpoint resumes on 1 (to float tolerance)."""
    import shutil

    run = tmp_path / "two"
    shutil.copytree(two_processes, run)
    shutil.rmtree(run / "checkpoints" / "step-000006")  # as if killed right after step 4's checkpoint
    for name in ("model.safetensors", "config.json"):
        (run / name).unlink()
    metrics.truncate_after(run / "metrics.jsonl", 4)
    r = run_cli(*PRETRAIN, "--data", data_dir, "--out", run, "--resume")
    assert r.exit_code == 0, r.stderr
    assert_close_runs(run, one_process)


def test_per_rank_random_states_refuse_another_world_size(tmp_path, data_dir):
    from bl2.distill import checkpoint
    from bl2.errors import UserError
    from bl2.model.io import build_model

    model = build_model("debug", 400, 128, 0)
    opt = torch.optim.AdamW(model.parameters())
    states = [checkpoint.rng_state(), checkpoint.rng_state()]
    states[1]["python"]["gauss_next"] = 0.5  # rank 1 has drawn a random number of its own
    path = checkpoint.save(tmp_path, 1, model, opt, {"step": 1}, keep=1, rng=states)
    assert torch.load(path / "rng.pt", weights_only=True)["per_rank"]
    checkpoint.load(path, model, opt, rank=1, world_size=2)
    with pytest.raises(UserError, match="written by 2 processes"):
        checkpoint.load(path, model, opt, rank=0, world_size=1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_on_localhost(tmp_path, data_dir, one_process):
    """Two torchrun agents (`--nnodes 2`, one process each) meet through a c10d rendezvous on 127.0.0.1."""
    launcher = ["--nnodes", "2", "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{free_port()}",
                "--rdzv-id", "bl2-test"]
    args = [*PRETRAIN, "--data", data_dir, "--out", tmp_path / "nodes"]
    nodes = [torchrun(*args, nproc=1, launcher=launcher, wait=False) for _ in range(2)]
    outs = []
    try:
        for p in nodes:
            outs.append(p.communicate(timeout=TIMEOUT)[0])
    finally:
        for p in nodes:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
    assert all(p.returncode == 0 for p in nodes), "\n".join(o[-2000:] for o in outs)
    assert_close_runs(tmp_path / "nodes", one_process)
