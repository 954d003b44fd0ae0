"""Nested subsets (`bl2 prepare --max-words`): smaller subsets lie inside larger ones, word counts are recorded,
and every subset keeps the whole corpus's tokenizer and val/test splits."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_user_error, run_cli

from bl2.data.store import TokenStore
from bl2.data.subset import nested_subset


def test_smaller_subsets_lie_inside_larger_ones():
    files = [(f"f{i}", [f"line {i} {j} " + "w " * (j % 5) for j in range(300)]) for i in range(3)]
    small, rec_small = nested_subset(files, 500, seed=3)
    large, rec_large = nested_subset(files, 1500, seed=3)
    for (_, s), (_, big) in zip(small, large):
        assert set(s) <= set(big)
    assert 500 <= rec_small["train_words"] < 500 + 7 and 1500 <= rec_large["train_words"] < 1500 + 7
    for (_, s), (_, full) in zip(small, files):  # corpus order kept within each file
        assert s == [line for line in full if line in set(s)]
    other, _ = nested_subset(files, 500, seed=4)
    assert other != small


def test_prepare_subsets_share_tokenizer_and_val(tmp_path, corpus_dirs):
    corpus, dev = corpus_dirs
    outs = {}
    for words in ("2K", "6K"):
        out = tmp_path / f"data_{words}"
        r = run_cli("prepare", corpus, "--dev", dev, "--out", out, "--vocab-size", "400", "--max-words", words,
                    "--subset-seed", "1")
        assert r.exit_code == 0, r.stderr
        outs[words] = TokenStore(out)
    small, large = outs["2K"], outs["6K"]
    assert small.attrs["tokenizer_sha256"] == large.attrs["tokenizer_sha256"]
    assert small.attrs["subset"]["max_words"] == 2000 and small.attrs["subset"]["train_words"] >= 2000
    assert sum(r["words"] for r in small.attrs["files"]["train"]) == small.attrs["subset"]["train_words"]
    assert small.n_tokens("train") < large.n_tokens("train")
    for split in ("val", "test"):
        np.testing.assert_array_equal(small.split(split)[:], large.split(split)[:])
    assert_user_error(run_cli("prepare", corpus, "--dev", dev, "--out", tmp_path / "x", "--max-words", "1e9"),
                      "--max-words")
    assert_user_error(run_cli("prepare", corpus, "--dev", dev, "--out", tmp_path / "x", "--max-words", "900M"),
                      "more than")


@pytest.mark.parametrize("seed", ["-1"])
def test_negative_subset_seed_is_refused(tmp_path, corpus_dirs, seed):
    corpus, dev = corpus_dirs
    assert_user_error(run_cli("prepare", corpus, "--dev", dev, "--out", tmp_path / "x", "--max-words", "1K",
                              "--subset-seed", seed), "--subset-seed")
