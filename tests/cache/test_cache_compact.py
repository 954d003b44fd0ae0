"""Mode hybrid and the compact encodings end to end: cache-logits writes them (attrs say what was done), the reader
returns the canonical arrays, verify (with --teachers) and compare understand them, a student trains from a hybrid
cache, and the refusals. Two untrained debug teachers on the fixture DATA, windows of 16 tokens."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import assert_user_error, make_debug_model, run_cli

from bl2.cache.reader import CacheReader
from bl2.cache.writer import CacheLogitsConfig, cache_logits

SEQ = 16
WINDOWS = 24


@pytest.fixture(scope="module")
def teachers(tmp_path_factory, data_dir) -> list[Path]:
    root = tmp_path_factory.mktemp("teachers")
    return [make_debug_model(root / f"debug-{seed}", data_dir, seed) for seed in (1, 2)]


@pytest.fixture(scope="module")
def build(tmp_path_factory, data_dir, teachers):
    root = tmp_path_factory.mktemp("compact")

    def make(name: str, **kw) -> str:
        out = str(root / name)
        if not Path(out).exists():
            cache_logits(CacheLogitsConfig(data=data_dir, teachers=teachers, out=out, seq_len=SEQ, quiet=True,
                                           max_windows=WINDOWS, **kw))
        return out

    return make


HYBRID = dict(mode="hybrid", k=4, n_draws=8, sample_temperature=2.0)
COMPACT = HYBRID | dict(head_logp="uint8", sparse_ids="delta", head_order="id")


def test_hybrid_cache_arrays_and_verify(build, teachers, data_dir):
    path = build("hybrid.zarr", **HYBRID)
    r = CacheReader(path)
    assert r.attrs["temperatures"] == [2.0] and r.attrs["head_logp_encoding"] == "float16"
    assert r.arrays == ["input_ids", "topk_ids", "topk_logp", "logz", "tail_ids", "tail_counts"]
    block = r.read(0, WINDOWS)
    assert block["logz"].shape == (WINDOWS, SEQ, 1)
    assert (block["tail_counts"].astype(int).sum(-1) == 8).all()
    clash = (block["tail_ids"][..., :, None] == block["topk_ids"][..., None, :]).any(-1)
    assert not clash.any()  # draws come from outside the head
    assert r.temperature_index(2.0) == 0
    with pytest.raises(Exception, match="sampled at T=2.0"):
        r.temperature_index(1.0)
    diag = r.attrs["diagnostics"]
    assert "2" in diag["head_mass"] and diag["unique_ids"]["max"] <= 8
    res = run_cli("cache", "verify", path, "--teachers", ",".join(map(str, teachers)), "--windows", "2",
                  "--device", "cpu")
    assert res.exit_code == 0, res.stdout
    assert "PASS  recompute" in res.stdout and "PASS  tail ids" in res.stdout
    assert run_cli("cache", "info", path).exit_code == 0


def test_compact_encodings_read_back_canonical(build, teachers):
    """uint8 head + delta ids: the same ids, draws and counts as the plain cache, the head within step / 2."""
    plain = CacheReader(build("hybrid.zarr", **HYBRID)).read(0, WINDOWS)
    path = build("hybrid_u8.zarr", **COMPACT)
    r = CacheReader(path)
    assert (r.attrs["head_logp_encoding"], r.attrs["head_logp_step"], r.attrs["sparse_ids_encoding"],
            r.attrs["head_order"]) == ("uint8", 1 / 16, "delta", "id")
    assert str(r.zarr_arrays["topk_logp"].dtype) == "uint8" and r.specs["topk_logp"].decoded_dtype == "float16"
    assert "topk_logp_max" in r.zarr_arrays and "topk_logp_max" not in r.arrays
    enc = r.read(0, WINDOWS)
    assert list(enc) == r.arrays and str(r.zarr_arrays["topk_ids"].dtype) == "int16"
    for name in ("input_ids", "logz", "tail_ids", "tail_counts"):
        assert np.array_equal(enc[name], plain[name]), name
    assert (np.diff(enc["topk_logp"], axis=-1) <= 0).all()  # sorted back by value
    by_id = [np.take_along_axis(b, np.argsort(b, -1), -1) for b in (enc["topk_ids"], plain["topk_ids"])]
    assert np.array_equal(*by_id)  # the same head (its order may differ only among equal uint8 values)
    values = [np.take_along_axis(b["topk_logp"].astype(np.float64), np.argsort(b["topk_ids"], -1), -1)
              for b in (enc, plain)]
    err = np.abs(values[0] - values[1])
    assert enc["topk_logp"].dtype == np.float16 and err.max() <= 1 / 16 + 1e-2
    assert (enc["topk_logp"][..., 0] == plain["topk_logp"][..., 0]).all()  # the top value is stored exactly
    assert np.array_equal(r.read_all()["tail_ids"], plain["tail_ids"])
    stored = r.zarr_arrays["tail_ids"][:]
    assert not np.array_equal(stored, plain["tail_ids"])  # really stored as deltas
    res = run_cli("cache", "verify", path, "--teachers", ",".join(map(str, teachers)), "--windows", "2",
                  "--device", "cpu")
    assert res.exit_code == 0 and "uint8 (step 0.0625 nat, lossy)" in res.stdout, res.stdout
    topk_plain = CacheReader(build("topk.zarr", mode="topk", k=8)).read(0, WINDOWS)
    topk_id = CacheReader(build("topk_id.zarr", mode="topk", k=8, head_order="id")).read(0, WINDOWS)
    assert np.array_equal(topk_plain["topk_logp"], topk_id["topk_logp"])
    canon = [np.take_along_axis(b["topk_ids"], np.lexsort((b["topk_ids"], -b["topk_logp"])), -1)
             for b in (topk_plain, topk_id)]  # equal values (untrained teachers: many) in id order
    assert np.array_equal(*canon)
    sample_plain = CacheReader(build("sample.zarr", mode="sample", n_draws=12)).read(0, WINDOWS)
    sample_delta = CacheReader(build("sample_d.zarr", mode="sample", n_draws=12, sparse_ids="delta")).read(0, WINDOWS)
    assert all(np.array_equal(sample_plain[n], sample_delta[n]) for n in sample_plain)


def test_compare_reports_hybrid_and_the_encoding_cost(build, tmp_path):
    import json

    full = build("full.zarr", mode="full")
    for name, kw in [("hybrid.zarr", HYBRID), ("hybrid_u8.zarr", COMPACT)]:
        res = run_cli("cache", "compare", build(name, **kw), full, "--out", tmp_path / f"{name}.json")
        # full is T=1 data; compare evaluates p at the hybrid cache's own T = 2
        assert res.exit_code == 0, res.stdout
        out = json.loads((tmp_path / f"{name}.json").read_text())
        row = out["rows"][0]
        assert out["mode"] == "hybrid" and row["T"] == 2.0
        assert row["mass"] <= row["mass_stored"] <= 1 + 1e-6 and row["grad_err"] > 0 and row["kl_rev"] >= 0
        if out["lossy"]:
            assert "KL it adds" in res.stdout and 1e-7 < out["encoding_kl"]["2"] < 1e-2
        else:
            assert row["kl_bucket"] < 1e-5 and out["encoding_kl"] is None
    topk = build("topk_u8.zarr", mode="topk", k=8, head_logp="uint8", logp_step=1 / 8)
    res = run_cli("cache", "compare", topk, full, "--out", tmp_path / "t.json")
    out = json.loads((tmp_path / "t.json").read_text())
    assert res.exit_code == 0 and out["lossy"] and out["rows"][0]["kl_bucket"] > 1e-7


def test_distill_from_hybrid_cache(build, tmp_path):
    from bl2.distill.config import TrainConfig
    from bl2.distill.run import distill

    cache = build("hybrid_u8.zarr", **COMPACT)
    cfg = TrainConfig(preset="debug", seed=0, batch_size=8, warmup_steps=1, max_steps=3, alpha=0.5, temperature=2.0,
                      log_every_steps=1, eval_batch_size=32)
    summary = distill(cfg, tmp_path / "s", cache=cache, device="cpu")
    assert summary["step"] == 3 and np.isfinite(summary["best_val_ce"])
    res = run_cli("distill", "--cache", cache, "--out", tmp_path / "s1", "--preset", "debug", "--max-steps", "1",
                  "--temperature", "1", "--device", "cpu")
    assert_user_error(res, "sampled at T=2.0")


def test_refusals(data_dir, teachers, tmp_path):
    from bl2.data.store import TokenStore

    vocab = TokenStore(data_dir).vocab_size
    base = ["cache-logits", "--data", data_dir, "--teachers", str(teachers[0]), "--out", tmp_path / "x.zarr",
            "--seq-len", str(SEQ), "--max-windows", "2", "--device", "cpu"]
    assert_user_error(run_cli(*base, "--mode", "full", "--head-logp", "uint8"), "--head-logp and --head-order apply")
    assert_user_error(run_cli(*base, "--mode", "sample", "--head-order", "id"), "--head-order apply")
    assert_user_error(run_cli(*base, "--head-logp", "uint8", "--logp-step", "0.1"), "--logp-step must be one of")
    assert_user_error(run_cli(*base, "--sparse-ids", "delta"), "--sparse-ids applies")
    assert_user_error(run_cli(*base, "--mode", "hybrid", "--temperatures", "1,2"), "only temperature")
    assert_user_error(run_cli(*base, "--mode", "hybrid", "--k", str(vocab)), "--k below the vocabulary size")
    assert not (tmp_path / "x.zarr").exists()
