"""Caches at scale (cache format v2): several writing processes under torchrun, rerun after a rank is killed,
format v1 caches still read, exact fp32 full caches (offline == online), and caches and DATA dirs on object
storage (a real S3 API: moto's server on 127.0.0.1, started here)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import make_debug_model, run_cli, torchrun, worker_pids

from bl2.cache.reader import CacheReader
from bl2.runs import metrics

SEQ = 16  # short windows: the test corpus then fills several 256-window shards
FIXTURE_V1 = Path(__file__).parent / "assets" / "cache_v1"
TIMEOUT = 240


@pytest.fixture(scope="module")
def teachers(tmp_path_factory, data_dir) -> list[Path]:
    root = tmp_path_factory.mktemp("scale-teachers")
    return [make_debug_model(root / f"t{s}", data_dir, seed=s) for s in (1, 2)]


def cache_args(data, teachers, out, *extra) -> list[str]:
    return ["cache-logits", "--data", str(data), "--teachers", ",".join(map(str, teachers)), "--out", str(out),
            "--seq-len", str(SEQ), "--batch-size", "64", "--device", "cpu", "--k", "8", "--temperatures", "1,2",
            *extra]


def same_arrays(a: str, b: str) -> None:
    ra, rb = CacheReader(a), CacheReader(b)
    ra.require_complete()
    rb.require_complete()
    da, db = ra.read_all(), rb.read_all()
    assert da.keys() == db.keys()
    for name in da:
        np.testing.assert_array_equal(da[name], db[name], err_msg=name)


@pytest.fixture(scope="module")
def one_rank(tmp_path_factory, data_dir, teachers) -> Path:
    out = tmp_path_factory.mktemp("scale") / "one.zarr"
    r = run_cli(*cache_args(data_dir, teachers, out))
    assert r.exit_code == 0, r.stderr
    assert len(CacheReader(str(out)).committed) >= 3  # the tests below need several shards
    return out


# ---------------------------------------------------------------------------------------------- ranks
@pytest.mark.slow
def test_two_writers_equal_one(tmp_path, data_dir, teachers, one_rank):
    out = tmp_path / "two.zarr"
    torchrun(*cache_args(data_dir, teachers, out))
    same_arrays(str(out), str(one_rank))
    attrs = CacheReader(str(out)).attrs
    assert attrs["bl2_cache_format"] == 2 and attrs["provenance"]["world_size"] == 2
    assert attrs["diagnostics"]["throughput"]["processes"] == 2


def committed_rows(out: Path) -> int:
    import zarr

    try:
        return int(zarr.open_array(str(out / "committed"), mode="r")[:, 0].sum())
    except Exception:
        return 0


@pytest.mark.slow
def test_killed_rank_then_rerun_on_one_process(tmp_path, data_dir, teachers, one_rank):
    """SIGKILL one rank of a 2-process write after a shard is committed (torchrun stops the other); one
    process then finishes what is left, and the arrays equal an uninterrupted run's."""
    out = tmp_path / "killed.zarr"
    proc = torchrun(*cache_args(data_dir, teachers, out), wait=False, extra_env={"BL2_CACHE_TEST_SHARD_SLEEP": "2"})
    try:
        deadline = time.time() + TIMEOUT
        while committed_rows(out) == 0:
            assert time.time() < deadline and proc.poll() is None, proc.stdout.read()[-2000:] if proc.stdout else ""
            time.sleep(0.05)
        os.kill(worker_pids(out)[1], signal.SIGKILL)
        proc.communicate(timeout=120)  # no hang: torchrun takes the other rank down
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0
    n = CacheReader(str(out)).n_windows
    assert 0 < committed_rows(out) < n and not CacheReader(str(out)).complete
    r = run_cli(*cache_args(data_dir, teachers, out))
    assert r.exit_code == 0 and "shards already written" in r.stdout, r.stdout + r.stderr
    same_arrays(str(out), str(one_rank))


# ---------------------------------------------------------------------------------------------- format v1
def test_format_v1_cache_still_reads(tmp_path, data_dir):
    """A cache written by the v1 writer (committed fixture): readable, verifiable, and, to another CPU's float
    rounding, the cache v2 writes from the same teacher (when this environment rebuilds the same weights)."""
    from bl2.cache.teachers import weights_sha256
    from bl2.cache.verify import verify

    r = CacheReader(str(FIXTURE_V1))
    assert r.version == 1 and r.complete and r.committed == {0} and r.shard_record() is None
    v1 = r.read_all()
    assert v1["topk_ids"].shape == (20, 128, 4)
    lines = []
    assert verify(str(FIXTURE_V1), data=str(data_dir), say=lines.append), lines
    teacher = make_debug_model(tmp_path / "t0", data_dir, seed=0)
    if weights_sha256(teacher) != r.attrs["teachers"][0]["sha256"]:
        pytest.skip("this environment initialises the debug teacher differently: arrays not comparable")
    out = tmp_path / "v2.zarr"
    res = run_cli("cache-logits", "--data", data_dir, "--teachers", teacher, "--out", out, "--k", "4",
                  "--max-windows", "20", "--temperatures", "1,2", "--device", "cpu")
    assert res.exit_code == 0, res.stderr
    v2 = CacheReader(str(out))
    assert v2.version == 2
    assert_cache_arrays_close(v2.read_all(), v1)


def assert_cache_arrays_close(new: dict, fixture: dict) -> None:
    """A cache written here against one written on another machine (a committed fixture): the tokens are
    equal; the float arrays agree to the rounding of another CPU's kernels (float32 logZ to 1e-5 absolute, the
    float16 head log-probs to 2 float16 steps); top-k ids agree except where two candidates tie to that rounding
    (their order may then swap)."""
    assert new.keys() == fixture.keys()
    np.testing.assert_array_equal(new["input_ids"], fixture["input_ids"])
    np.testing.assert_allclose(new["logz"], fixture["logz"], rtol=0, atol=1e-5, err_msg="logz")
    a, b = new["topk_logp"].astype(np.float32), fixture["topk_logp"].astype(np.float32)
    np.testing.assert_allclose(a, b, rtol=2 * 2.0**-10, atol=1e-3, err_msg="topk_logp")
    swapped = new["topk_ids"] != fixture["topk_ids"]
    assert swapped.mean() < 0.01, f"{swapped.sum()} top-k ids differ"
    # a swap is only allowed between entries whose log-probs tie to the tolerance above
    near_tie = np.isclose(a, np.roll(a, 1, axis=-1), rtol=2 * 2.0**-10, atol=1e-3) | np.isclose(
        a, np.roll(a, -1, axis=-1), rtol=2 * 2.0**-10, atol=1e-3)
    assert not (swapped & ~near_tie).any(), "top-k ids differ where their log-probs do not tie"


# ---------------------------------------------------------------------------------------------- fp32 full
def test_full_float32_cache_equals_online(tmp_path, data_dir):
    """--logp-dtype float32: distillation from the full cache and online distillation agree to float32
    rounding (loss curve to 1e-6 relative, weights after 5 steps to 1e-5 relative)."""
    from safetensors.torch import load_file

    from bl2.distill.config import TrainConfig
    from bl2.distill.run import pretrain

    teachers = []
    for seed in (0, 1):
        out = tmp_path / f"teacher{seed}"
        cfg = TrainConfig(preset="debug", seed=seed, batch_size=8, max_steps=6, warmup_steps=2, lr=1e-2,
                          log_every_steps=1, ckpt_every_steps=100, eval_batch_size=32)
        pretrain(cfg, data_dir, out, device="cpu")
        teachers.append(out)
    cache = tmp_path / "full32.zarr"
    r = run_cli("cache-logits", "--data", data_dir, "--teachers", ",".join(map(str, teachers)), "--out", cache,
                "--mode", "full", "--logp-dtype", "float32", "--batch-size", "16", "--device", "cpu")
    assert r.exit_code == 0, r.stderr
    assert CacheReader(str(cache)).specs["logp"].dtype == "float32"
    common = ["--preset", "debug", "--max-steps", "5", "--batch-size", "8", "--warmup-steps", "2", "--lr", "3e-3",
              "--log-every-steps", "1", "--alpha", "0.5", "--device", "cpu"]
    assert run_cli("distill", "--cache", cache, "--out", tmp_path / "offline", *common).exit_code == 0
    r = run_cli("distill", "--teachers", ",".join(map(str, teachers)), "--data", data_dir, "--out",
                tmp_path / "online", *common)
    assert r.exit_code == 0, r.stderr
    rows = [metrics.read(tmp_path / d / "metrics.jsonl", "train") for d in ("offline", "online")]
    for key in ("ce", "kl"):
        assert [x[key] for x in rows[0]] == pytest.approx([x[key] for x in rows[1]], rel=1e-6), key
    a, b = (load_file(str(tmp_path / d / "model.safetensors")) for d in ("offline", "online"))
    for k in a:
        assert ((a[k] - b[k]).abs().max() / a[k].abs().max().clamp_min(1e-12)).item() < 1e-5, k


def test_streaming_with_read_ahead_equals_in_memory(one_rank):
    """Several shards, a 2-block shuffle buffer: threaded block reads and read-ahead serve the in-RAM batches."""
    import torch

    from bl2.cache.loader import CacheWindows, open_cache

    ram = CacheWindows(open_cache(str(one_rank), "yes"), seed=4, buffer=512)
    stream = CacheWindows(open_cache(str(one_rank), "no"), seed=4, buffer=512)
    n = ram.n_windows // 16
    for epoch, index in [(0, i) for i in range(n)] + [(1, 0), (1, n - 1)]:
        a, b = ram.batch(epoch, index, 16), stream.batch(epoch, index, 16)
        assert torch.equal(a.input_ids, b.input_ids)
        assert all(torch.equal(a.targets[k], b.targets[k]) for k in a.targets)
    assert len(stream._blocks) <= stream._max_blocks
