"""bl2 distill: from a cache (every mode) and online; offline full cache == online teachers; exact resume;
distillation without the teacher dirs; the refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import assert_user_error, run_cli, run_with_crash

from bl2.distill.config import TrainConfig
from bl2.distill.run import distill, pretrain
from bl2.runs import metrics

COMMON = dict(preset="debug", seed=0, batch_size=8, warmup_steps=2, lr=3e-3, log_every_steps=1, ckpt_every_steps=1,
              keep_checkpoints=10, eval_batch_size=32)


def cfg(**kw) -> TrainConfig:
    return TrainConfig(**(COMMON | dict(max_steps=5, alpha=0.5) | kw))


@pytest.fixture(scope="module")
def teachers(tmp_path_factory, data_dir) -> list[Path]:
    root = tmp_path_factory.mktemp("teachers")
    out = []
    for seed in (0, 1):
        pretrain(TrainConfig(**(COMMON | dict(seed=seed, max_steps=8, lr=1e-2, ckpt_every_steps=100))), data_dir,
                 root / f"t{seed}", device="cpu")
        out.append(root / f"t{seed}")
    return out


def make_cache(path: Path, data_dir: Path, teachers: list[Path], *extra: str) -> Path:
    r = run_cli("cache-logits", "--data", data_dir, "--teachers", ",".join(map(str, teachers)), "--out", path,
                "--batch-size", "16", "--device", "cpu", *extra)
    assert r.exit_code == 0, r.stderr
    return path


@pytest.fixture(scope="module")
def caches(tmp_path_factory, data_dir, teachers) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("caches")
    return {
        "full": make_cache(root / "full.zarr", data_dir, teachers, "--mode", "full"),
        "topk": make_cache(root / "topk.zarr", data_dir, teachers, "--k", "16", "--temperatures", "1,2"),
        "sample": make_cache(root / "sample.zarr", data_dir, teachers, "--mode", "sample", "--n-draws", "20"),
    }


def rows(run_dir: Path, key: str) -> list[float]:
    return [r[key] for r in metrics.read(run_dir / "metrics.jsonl") if key in r]


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(run_dir / "model.safetensors"))


def test_offline_full_cache_equals_online_teachers(tmp_path, data_dir, teachers, caches):
    off, on = tmp_path / "off", tmp_path / "on"
    distill(cfg(), off, cache=caches["full"], device="cpu")
    distill(cfg(), on, teachers=teachers, data_dir=data_dir, device="cpu")
    assert rows(off, "ce") == pytest.approx(rows(on, "ce"), rel=1e-5)
    # the cache stores fp16 log-probs: the KL agrees to fp16 precision, not bit for bit
    assert rows(off, "kl") == pytest.approx(rows(on, "kl"), rel=2e-3)
    a, b = weights(off), weights(on)
    init = torch.cat([v.flatten() for v in weights(teachers[0]).values()]).norm()  # scale reference
    diff = torch.cat([(a[k] - b[k]).flatten() for k in a]).norm()
    assert diff / init < 1e-3


def test_online_fresh_offsets_reads_pretraining_windows(tmp_path, data_dir, teachers, caches):
    """--fresh-offsets: live teachers on pretraining's windows. With alpha 1 the KL has no weight, so the run
    must retrace `bl2 pretrain` of the same seed step for step; with alpha 0.5 it trains on the KL too."""
    pre, ce_only, fresh = tmp_path / "pre", tmp_path / "ce_only", tmp_path / "fresh"
    pretrain(cfg(alpha=1.0), data_dir, pre, device="cpu")
    distill(cfg(alpha=1.0), ce_only, teachers=teachers, data_dir=data_dir, device="cpu", fresh_offsets=True)
    assert rows(ce_only, "ce") == pytest.approx(rows(pre, "ce"), rel=1e-5)
    distill(cfg(), fresh, teachers=teachers, data_dir=data_dir, device="cpu", fresh_offsets=True)
    fixed = tmp_path / "fixed"
    distill(cfg(), fixed, teachers=teachers, data_dir=data_dir, device="cpu")
    assert rows(fresh, "ce") != pytest.approx(rows(fixed, "ce"), rel=1e-5)  # other windows
    assert json.loads((fresh / "run.json").read_text())["identity"]["windows"] == "fresh"
    assert "windows" not in json.loads((fixed / "run.json").read_text())["identity"]
    r = run_cli("distill", "--cache", caches["topk"], "--out", tmp_path / "bad", "--fresh-offsets", "--device", "cpu",
                "--preset", "debug")
    assert_user_error(r, "--fresh-offsets needs live teachers")


@pytest.mark.parametrize("mode, temperature", [("topk", 1.0), ("topk", 2.0), ("sample", 1.0)])
def test_every_mode_trains(tmp_path, caches, mode, temperature):
    out = tmp_path / mode
    summary = distill(cfg(max_steps=6, temperature=temperature, kl_reduction="token"), out, cache=caches[mode],
                      device="cpu")
    kls, ces = rows(out, "kl"), rows(out, "ce")
    assert len(kls) == 6 and all(k >= -1e-4 and k == k for k in kls)
    assert ces[-1] < ces[0] and summary["best_val_ce"] is not None
    run = json.loads((out / "run.json").read_text())
    assert run["identity"]["cache"]["mode"] == mode


def test_exact_resume_from_cache(tmp_path, caches, monkeypatch):
    full, crashed = tmp_path / "full", tmp_path / "crashed"
    distill(cfg(max_steps=6), full, cache=caches["topk"], device="cpu")
    run_with_crash(monkeypatch, lambda: distill(cfg(max_steps=6), crashed, cache=caches["topk"], device="cpu"), 3)
    distill(cfg(max_steps=6), crashed, cache=caches["topk"], resume=True, device="cpu")
    a, b = weights(full), weights(crashed)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_streaming_equals_in_memory(caches):
    from bl2.cache.loader import CacheWindows, open_cache
    from bl2.cache.reader import CacheReader

    reader = CacheReader(caches["topk"])
    ram = CacheWindows(open_cache(reader, "yes"), seed=3, buffer=512)
    stream = CacheWindows(open_cache(reader, "no"), seed=3, buffer=512)
    for epoch, index in [(0, 0), (0, 3), (1, 2)]:
        a, b = ram.batch(epoch, index, 8), stream.batch(epoch, index, 8)
        assert torch.equal(a.input_ids, b.input_ids)
        assert all(torch.equal(a.targets[k], b.targets[k]) for k in a.targets)


def test_distill_without_teacher_dirs(tmp_path, data_dir, teachers):
    moved = [tmp_path / f"t{i}" for i in range(2)]
    for src, dst in zip(teachers, moved):
        shutil.copytree(src, dst)
    cache = make_cache(tmp_path / "c.zarr", data_dir, moved, "--k", "8")
    for d in moved:
        shutil.rmtree(d)
    r = run_cli("distill", "--cache", cache, "--preset", "debug", "--out", tmp_path / "s", "--max-steps", "2",
                "--batch-size", "8", "--device", "cpu")
    assert r.exit_code == 0, r.stderr
    assert (tmp_path / "s" / "model.safetensors").is_file()


def test_refusals(tmp_path, data_dir, teachers, caches, corpus_dirs):
    import zarr

    def run(*args):
        return run_cli("distill", "--preset", "debug", "--out", tmp_path / "s", "--max-steps", "1", "--batch-size", "8",
                       "--device", "cpu", *args)

    assert_user_error(run("--cache", caches["topk"], "--temperature", "3"), "not in the cache's temperature grid")
    assert_user_error(run("--cache", caches["sample"], "--temperature", "2"), "sampled at T=1")
    assert_user_error(run("--cache", caches["topk"], "--teachers", ",".join(map(str, teachers))), "either --cache")
    assert_user_error(run("--teachers", ",".join(map(str, teachers))), "needs --data")
    # another tokenizer: a DATA dir prepared with a different vocabulary
    other = tmp_path / "D2"
    r = run_cli("prepare", corpus_dirs[0], "--dev", corpus_dirs[1], "--out", other, "--vocab-size", "300")
    assert r.exit_code == 0
    assert_user_error(run("--cache", caches["topk"], "--data", other), "another tokenizer")
    # an incomplete cache
    inc = tmp_path / "inc.zarr"
    shutil.copytree(caches["topk"], inc)
    zarr.open_group(str(inc), mode="a").attrs["complete"] = False
    assert_user_error(run("--cache", inc), "incomplete")
    # a corrupt chunk: caught when the cache is loaded
    bad = tmp_path / "bad.zarr"
    shutil.copytree(caches["topk"], bad)
    shard = max((p for p in (bad / "topk_logp").rglob("*") if p.is_file() and p.name != "zarr.json"),
                key=lambda p: p.stat().st_size)
    raw = bytearray(shard.read_bytes())
    raw[len(raw) // 3] ^= 0xFF
    shard.write_bytes(bytes(raw))
    assert_user_error(run("--cache", bad, "--cache-in-memory", "yes"), "corrupt")
    assert not (tmp_path / "s" / "model.safetensors").exists()


def test_sample_target_expectation_is_p_T():
    """Monte Carlo: the cache's sampled targets count/n_draws average to p_T (T = 2), unbiased."""
    import numpy as np

    from bl2.cache.targets import TargetSpec, sample_targets

    g = torch.Generator().manual_seed(0)
    logits = [torch.randn(1, 2, 10, generator=g) * 2, torch.randn(1, 2, 10, generator=g) * 2]
    spec = TargetSpec(mode="sample", ensemble="logit_mean", n_draws=20, sample_temperature=2.0, seed=7)
    n_rows = 3000
    est = np.zeros((2, 10))
    for row in range(n_rows):
        out = sample_targets(logits, spec, np.array([row]))
        ids, counts = out["sample_ids"][0].astype(int), out["sample_counts"][0]
        assert (counts.sum(-1) == 20).all()
        for pos in range(2):
            np.add.at(est[pos], ids[pos], counts[pos] / 20)
    est /= n_rows
    p_T = torch.softmax(torch.log_softmax((logits[0] + logits[1]) / 2, -1) / 2.0, -1)[0].numpy()
    assert np.abs(est - p_T).max() < 0.01  # ~4 standard errors at 60k draws per position


def test_epochs_cycle_through_cached_alignments(tmp_path, data_dir, teachers):
    """A cache made with --offsets 2: epoch e reads alignment e mod 2 (windows shifted by L/2 tokens)."""
    import numpy as np

    from bl2.cache.loader import CacheWindows, open_cache
    from bl2.cache.reader import CacheReader
    from bl2.data.store import TokenStore

    cache = make_cache(tmp_path / "o2.zarr", data_dir, teachers[:1], "--k", "4", "--offsets", "2")
    reader = CacheReader(cache)
    assert reader.window_offsets == [0, 64]
    tokens = TokenStore(data_dir).split("train").astype(np.int64)
    source = CacheWindows(open_cache(reader, "yes"), seed=0)
    for epoch in (0, 1, 2, 3):
        rows = source.rows(epoch, 0, 4) - (epoch % 2) * reader.windows_per_offset
        starts = reader.window_offsets[epoch % 2] + rows * 128
        expected = np.stack([tokens[s : s + 129] for s in starts])
        assert np.array_equal(source.batch(epoch, 0, 4).input_ids.numpy(), expected)


def test_ranks_split_the_global_batch(data_dir):
    """With world_size 2, the two ranks read disjoint halves of the same global batch."""
    from bl2.data.store import TokenStore
    from bl2.distill.sources import FixedWindows, RandomOffsetWindows

    tokens = TokenStore(data_dir).split("train")
    for make in (lambda **k: RandomOffsetWindows(tokens, 128, 5, **k), lambda **k: FixedWindows(tokens, 128, 5, **k)):
        whole = make().batch(1, 2, 8).input_ids
        parts = [make(rank=r, world_size=2).batch(1, 2, 8).input_ids for r in (0, 1)]
        assert torch.equal(parts[0], whole[0::2]) and torch.equal(parts[1], whole[1::2])


def test_one_decoded_cache_serves_several_jobs(tmp_path, caches):
    """A process training many students decodes the cache once and hands it to every job; the result equals
    the plain `distill --cache` run."""
    from bl2.cache.loader import open_cache
    from bl2.distill.job import cache_job
    from bl2.distill.loop import train

    opened = open_cache(str(caches["topk"]), "yes")
    for seed in (0, 1):
        train(cache_job(cfg(seed=seed, max_steps=3), opened), str(tmp_path / f"s{seed}"), device="cpu")
    distill(cfg(seed=1, max_steps=3), tmp_path / "plain", cache=caches["topk"], device="cpu")
    a, b = weights(tmp_path / "s1"), weights(tmp_path / "plain")
    assert all(torch.equal(a[k], b[k]) for k in a)
