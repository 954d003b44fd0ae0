"""Cache writer and reader against naive torch recomputations; info, verify, compare; corruption detection.
Two untrained debug teachers on the fixture DATA, windows of 16 tokens (fast, several shards)."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_debug_model

from bl2.cache.reader import CacheReader
from bl2.cache.writer import CacheLogitsConfig, cache_logits
from bl2.errors import UserError

SEQ = 16


@pytest.fixture(scope="module")
def teachers(tmp_path_factory, data_dir) -> list[Path]:
    root = tmp_path_factory.mktemp("teachers")
    return [make_debug_model(root / f"debug-{seed}", data_dir, seed) for seed in (1, 2)]


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("caches")


def build(work: Path, data_dir: Path, teachers: list[Path], name: str, **kw) -> str:
    out = str(work / name)
    if not Path(out).exists():
        cache_logits(CacheLogitsConfig(data=data_dir, teachers=teachers, out=out, seq_len=SEQ, quiet=True, **kw))
    return out


@pytest.fixture(scope="module")
def topk(work, data_dir, teachers) -> str:
    return build(work, data_dir, teachers, "topk.zarr", k=8, temperatures=[1.0, 2.0], max_windows=40)


@pytest.fixture(scope="module")
def full(work, data_dir, teachers) -> str:
    return build(work, data_dir, teachers, "full.zarr", mode="full", max_windows=40)


def naive_member_logits(teachers: list[Path], input_ids: np.ndarray) -> list[torch.Tensor]:
    from bl2.model.io import load_model

    x = torch.from_numpy(input_ids[:, :-1].astype(np.int64))
    with torch.no_grad():
        return [load_model(t).forward(input_ids=x).logits.float() for t in teachers]


def naive_logit_mean(teachers, input_ids) -> np.ndarray:
    logits = naive_member_logits(teachers, input_ids)
    return torch.log_softmax(torch.stack(logits).mean(0), -1).numpy()


def assert_fp16_close(stored: np.ndarray, ref: np.ndarray) -> None:
    np.testing.assert_allclose(stored.astype(np.float32), ref, rtol=2e-3, atol=2e-3)


def test_topk_matches_naive_recomputation(topk, teachers):
    data = CacheReader(topk).read_all()
    lp = naive_logit_mean(teachers, data["input_ids"])
    val, idx = torch.topk(torch.from_numpy(lp), 8, dim=-1)
    assert (data["topk_ids"] == idx.numpy()).mean() > 0.999  # near-ties may swap under float noise
    assert_fp16_close(data["topk_logp"], val.numpy())
    assert_fp16_close(data["topk_logp"], np.take_along_axis(lp, data["topk_ids"].astype(np.int64), -1))


def test_logz_gives_exact_tail_mass_at_T2(topk, teachers):
    r = CacheReader(topk)
    data = r.read_all()
    lp = torch.from_numpy(naive_logit_mean(teachers, data["input_ids"]))
    p2 = torch.softmax(lp / 2, -1).numpy()
    ids = data["topk_ids"].astype(np.int64)
    tail_ref = 1 - np.take_along_axis(p2, ids, -1).sum(-1)
    ti = r.temperature_index(2.0)
    head = np.exp(data["topk_logp"].astype(np.float64) / 2 - data["logz"][..., ti : ti + 1])
    np.testing.assert_allclose(1 - head.sum(-1), tail_ref, atol=2e-4)
    np.testing.assert_allclose(data["logz"][..., ti], torch.logsumexp(lp / 2, -1).numpy(), rtol=1e-5, atol=1e-5)


def test_full_mode_equals_log_softmax_of_mean_logits(full, teachers):
    data = CacheReader(full).read_all()
    assert data["logp"].dtype == np.float16 and data["logp"].shape[-1] == CacheReader(full).vocab_size
    assert_fp16_close(data["logp"], naive_logit_mean(teachers, data["input_ids"]))


def test_prob_mean_is_log_of_mean_probabilities(work, data_dir, teachers):
    out = build(work, data_dir, teachers, "probmean.zarr", k=8, ensemble="prob_mean", max_windows=12)
    r = CacheReader(out)
    data = r.read_all()
    logits = naive_member_logits(teachers, data["input_ids"])
    ref = torch.logsumexp(torch.stack([torch.log_softmax(z, -1) for z in logits]), 0) - math.log(2)
    assert r.attrs["ensemble"] == "prob_mean" and "logz" not in r.arrays
    assert_fp16_close(data["topk_logp"], torch.topk(ref, 8, -1).values.numpy())


def test_sample_counts_and_rerun_identical(work, data_dir, teachers):
    kw = dict(mode="sample", n_draws=20, sample_temperature=1.5, max_windows=20)
    a = CacheReader(build(work, data_dir, teachers, "s1.zarr", **kw)).read_all()
    b = CacheReader(build(work, data_dir, teachers, "s2.zarr", batch_size=3, **kw)).read_all()
    counts, ids = a["sample_counts"].astype(int), a["sample_ids"].astype(int)
    assert a["sample_ids"].dtype == np.uint16 and counts.shape[-1] == 20
    assert (counts.sum(-1) == 20).all() and (ids[counts == 0] == 0).all()
    assert (np.diff(counts, axis=-1) <= 0).all()  # count descending
    same_count = np.diff(counts, axis=-1) == 0
    assert (np.diff(ids, axis=-1)[same_count & (counts[..., 1:] > 0)] > 0).all()  # then id ascending
    for name in a:  # per-window seeds: batch size does not change the draws
        np.testing.assert_array_equal(a[name], b[name])


def test_offsets_rows_use_their_alignment(work, data_dir, teachers):
    from bl2.data.store import TokenStore

    r = CacheReader(build(work, data_dir, teachers, "off2.zarr", k=4, offsets=2))
    tokens = TokenStore(data_dir).split("train")
    per = (len(tokens) - 1 - SEQ // 2) // SEQ
    assert r.window_offsets == [0, SEQ // 2] and r.windows_per_offset == per and r.n_windows == 2 * per
    assert r.attrs["window_offset"] == 0 and r.offset_rows(1) == (per, 2 * per) and r.offset_rows(3) == (per, 2 * per)
    ids = r.read_all()["input_ids"]
    for row in (0, per - 1, per, 2 * per - 1):
        a, w = divmod(row, per)
        start = r.window_offsets[a] + w * SEQ
        np.testing.assert_array_equal(ids[row], tokens[start : start + SEQ + 1])


def test_reader_api(topk):
    r = CacheReader(topk)
    r.require_complete()
    assert r.mode == "topk" and r.k == 8 and r.seq_len == SEQ and r.n_windows == 40 and r.temperatures == [1.0, 2.0]
    assert r.arrays == ["input_ids", "topk_ids", "topk_logp", "logz"]
    assert r.temperature_index(1) == 0 and r.temperature_index(2.0) == 1
    with pytest.raises(UserError, match="not in the cache's temperature grid"):
        r.temperature_index(3)
    block = r.read(3, 7)
    assert block["input_ids"].shape == (4, SEQ + 1) and block["topk_logp"].dtype == np.float16
    assert block["logz"].shape == (4, SEQ, 2) and block["logz"].dtype == np.float32
    assert r.nbytes_decoded() == sum(a.nbytes for a in r.read_all().values())
    assert Path(r.data_dir).is_absolute() and len(r.tokenizer_sha256) == 64
    with pytest.raises(UserError):
        r.read(0, 41)
    with pytest.raises(UserError, match="not a bl2 logit cache"):
        CacheReader(str(Path(r.data_dir) / "tokens.zarr"))


def test_incomplete_cache_refuses_unwritten_rows(topk, tmp_path):
    import zarr

    path = tmp_path / "partial.zarr"
    shutil.copytree(topk, path)
    group = zarr.open_group(str(path), mode="r+")
    group.attrs.update({"complete": False})
    group["committed"][0] = 0  # shard 0 not committed (format v2's per-shard record)
    r = CacheReader(str(path))
    with pytest.raises(UserError, match="incomplete"):
        r.require_complete()
    with pytest.raises(UserError, match="not written yet"):
        r.read(0, 1)


def test_info_verify_compare(topk, full, work, data_dir, teachers, capsys):
    from bl2.cache.compare import compare_caches
    from bl2.cache.info import cache_info
    from bl2.cache.verify import verify

    info = cache_info(topk)
    assert info["bytes_per_token"] > 0 and set(info["arrays"]) == {"input_ids", "topk_ids", "topk_logp", "logz"}
    assert "head mass at T=2" in capsys.readouterr().out
    lines = []
    assert verify(topk, teachers=teachers, say=lines.append)
    assert any(line.startswith("PASS  recompute") for line in lines) and not any("FAIL" in x for x in lines)
    assert verify(full, teachers=teachers, say=lines.append)
    vocab = CacheReader(full).vocab_size
    whole = build(work, data_dir, teachers, "kV.zarr", k=vocab, temperatures=[1.0, 2.0], max_windows=40)
    exact = compare_caches(whole, full)["rows"]
    small = compare_caches(topk, full)["rows"]
    for e, s in zip(exact, small):
        assert e["kl_bucket"] < 1e-5 and e["kl_flat_tail"] < 1e-5 and e["mass"] > 0.999
        assert s["kl_flat_tail"] > 100 * e["kl_flat_tail"] and s["mass"] < 0.5
        assert s["kl_bucket"] < 1e-5  # the head is exact: the k+1 KL only sees fp16 rounding


def flip_byte(array_dir: Path) -> Path:
    shard = sorted(f for f in array_dir.rglob("*") if f.is_file() and f.name != "zarr.json")[0]
    raw = bytearray(shard.read_bytes())
    raw[len(raw) // 3] ^= 0x5A
    shard.write_bytes(bytes(raw))
    return shard


def test_flipped_byte_is_caught(topk, tmp_path):
    from typer.testing import CliRunner

    from bl2.cli import app

    path = tmp_path / "corrupt.zarr"
    shutil.copytree(topk, path)
    flip_byte(path / "topk_logp")
    with pytest.raises(UserError, match="topk_logp"):
        CacheReader(str(path)).read(0, 16)
    result = CliRunner().invoke(app, ["cache", "verify", str(path)])
    assert result.exit_code == 1 and "FAIL  checksums" in result.output and "topk_logp" in result.output


@pytest.mark.parametrize("vocab,k", [(16000, 64), (16000, 8), (377, 8), (4096, 200)])
def test_fast_topk_equals_torch_topk(vocab, k):
    from bl2.cache.targets import fast_topk

    x = torch.randn(200, vocab, generator=torch.Generator().manual_seed(vocab + k))
    values, ids = fast_topk(x, k)
    ref_values, ref_ids = torch.topk(x, k, dim=-1)
    assert torch.equal(values, ref_values) and torch.equal(ids, ref_ids)
    ties = torch.randint(0, 4, (50, vocab), generator=torch.Generator().manual_seed(1)).float()
    values, ids = fast_topk(ties, k)  # with ties: same values, ids of equal values in any order
    assert torch.equal(values, torch.topk(ties, k, dim=-1).values) and torch.equal(ties.gather(1, ids), values)


@pytest.mark.parametrize("rule", ["logit_mean", "prob_mean"])
def test_slice_ensemble_equals_combine(rule):
    from bl2.cache.targets import ensemble_logprobs
    from bl2.model.ensemble import combine

    logits = [torch.randn(40, 300, generator=torch.Generator().manual_seed(s)) * 3 for s in range(3)]
    ref = combine(logits, rule)
    got = torch.cat([ensemble_logprobs(logits, rule, s, s + 16) for s in range(0, 40, 16)])
    torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-5)
