"""The fused loss's chunk size per machine (bl2.distill.chunks): what is measured, cached and reused, and that a
run's results do not depend on it beyond float rounding."""

from __future__ import annotations

import json

import pytest
import torch
from test_train import ce_rows, debug_cfg

from bl2.distill import chunks
from bl2.distill.run import pretrain
from bl2.runs import record


@pytest.fixture
def tune_cache(tmp_path, monkeypatch):
    path = tmp_path / "tune" / "loss_chunks.json"
    monkeypatch.setenv("BL2_TUNE_CACHE", str(path))
    return path


def test_candidates_are_distinct_and_at_most_one_micro_batch():
    cpu = torch.device("cpu")
    assert chunks.candidates(4096, 1024, cpu) == [256, 512, 1024]
    assert chunks.candidates(400, 512, cpu) == [512]  # a micro-batch smaller than any chunk: nothing to choose
    assert chunks.candidates(16000, 4096, cpu) == [65, 131, 262, 524, 1048]


def test_measure_once_then_cached_per_shape(tune_cache):
    first = chunks.choose(0, 8, 4096, 1024, "cpu")
    assert first["how"] == "measured" and first["rows"] in (256, 512, 1024)
    assert set(first["seconds"]) == {"256", "512", "1024"}
    assert chunks.choose(0, 8, 4096, 1024, "cpu") == {"rows": first["rows"], "how": "cached"}
    assert len(json.loads(tune_cache.read_text())) == 1
    other = chunks.choose(0, 8, 4096, 512, "cpu")  # another micro-batch size: measured for itself
    assert other["how"] == "measured" and len(json.loads(tune_cache.read_text())) == 2


def test_pick_keeps_the_default_within_the_tie_margin():
    assert chunks.pick({256: 1.0, 512: 1.02, 1024: 1.5}, default=512) == 512  # 2 % slower: noise, keep it
    assert chunks.pick({256: 1.0, 512: 1.10, 1024: 1.5}, default=512) == 256  # 10 % slower: the measurement wins
    assert chunks.pick({256: 1.0, 512: 1.10}, default=2048) == 256  # the default is not a candidate


def test_a_set_size_or_a_resumed_runs_own_wins(tune_cache):
    assert chunks.choose(300, 8, 4096, 1024, "cpu", previous=128) == {"rows": 300, "how": "set"}
    assert chunks.choose(0, 8, 4096, 1024, "cpu", previous=128) == {"rows": 128, "how": "resumed"}
    assert not tune_cache.exists()


def test_a_garbled_cache_file_is_measured_over(tune_cache):
    tune_cache.parent.mkdir(parents=True)
    tune_cache.write_text("{not json")
    assert chunks.choose(0, 8, 4096, 1024, "cpu")["how"] == "measured"
    assert len(json.loads(tune_cache.read_text())) == 1


def test_runs_with_different_chunk_sizes_agree_to_float_rounding(tmp_path, data_dir, tune_cache):
    """One chunk per micro-batch (the default here: 8 x 128 positions at vocab 400) against chunks of 7 positions
    (a short last one): the same losses up to rounding, and run.json says which size ran."""
    one, many = tmp_path / "one", tmp_path / "many"
    pretrain(debug_cfg(max_steps=4), data_dir, one, device="cpu")
    pretrain(debug_cfg(max_steps=4, loss_chunk=7), data_dir, many, device="cpu")
    assert record.read(one)["loss_chunk"] == {"rows": 8 * 128, "how": "one chunk per micro-batch"}
    assert record.read(many)["loss_chunk"] == {"rows": 7, "how": "set"}
    assert ce_rows(one) == pytest.approx(ce_rows(many), rel=1e-5)


def test_a_negative_size_is_refused():
    from bl2.errors import UserError

    with pytest.raises(UserError, match="loss_chunk must be >= 0"):
        debug_cfg(loss_chunk=-1)


@pytest.mark.slow
def test_compiled_run_matches_eager_and_resumes_exactly(tmp_path, data_dir, tune_cache, monkeypatch):
    """--compile (the model under torch.compile; the fused loss stays eager) gives the eager run's losses to float
    tolerance, and a compiled run that crashes after step 2 resumes to the uninterrupted compiled run's weights."""
    from test_train import run_with_crash, state_of

    eager, full, crashed = tmp_path / "eager", tmp_path / "full", tmp_path / "crashed"
    pretrain(debug_cfg(max_steps=4), data_dir, eager, device="cpu")
    pretrain(debug_cfg(max_steps=4, compile=True), data_dir, full, device="cpu")
    assert ce_rows(full) == pytest.approx(ce_rows(eager), rel=1e-4)
    run_with_crash(monkeypatch, lambda: pretrain(debug_cfg(max_steps=4, compile=True), data_dir, crashed,
                                                 device="cpu"), crash_step=2)
    pretrain(debug_cfg(max_steps=4, compile=True), data_dir, crashed, resume=True, device="cpu")
    a, b = state_of(full), state_of(crashed)
    assert all(torch.allclose(a[k], b[k], rtol=1e-5, atol=1e-6) for k in a)
