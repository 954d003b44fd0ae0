"""bl2 prepare: cleaning rules, splits, tokenizer round trip, the token store, and every bad-input case."""

from __future__ import annotations

import unicodedata

import numpy as np
import pytest
from conftest import assert_user_error, run_cli, write_corpus

from bl2.data.clean import clean_text
from bl2.data.corpus import split_lines


@pytest.mark.parametrize(
    "stem, raw, expected",
    [
        ("childes", "hi  there\t\u00a0you .\nok , go !", "hi there you.\nok, go!"),
        ("bnc_spoken", "a  b .\n\n\nc ?\n", "a b.\nc?\n"),
        ("simple_wiki", "Title\n\nPara one.\n\nPara  two .\n", "Title\nPara one.\nPara  two .\n"),
        ("open_subtitles", "Hello\nSubtitles by X\nbye\nsubtitle\n", "Hello\nbye\n"),
        ("gutenberg", "a  b .\n\nc", "a  b .\n\nc"),
        ("switchboard", "A: hi  .\n", "A: hi  .\n"),
        ("unknown_source", "x  .\n\n", "x  .\n\n"),
    ],
)
def test_cleaning_rules(stem, raw, expected):
    assert clean_text(stem, raw) == expected


def test_split_proportions():
    lines = [f"line {i}" for i in range(1000)]
    train, val = split_lines(lines, 0.05)
    assert (len(train), len(val)) == (950, 50)
    assert train + val == lines and val[0] == "line 950"
    train, val = split_lines(lines[:7], 0.05)
    assert (len(train), len(val)) == (7, 0)  # round(6.65) = 7: tiny files give no val lines, as in the reference


def test_tokenizer_round_trip_rare_bytes(data_dir):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(data_dir / "tokenizer.json"))
    text = "Ünïcödé ﬁ ligature, emoji 🤖🦖, CJK 漢字, control \x07 and tab\there ½"
    ids = tok.encode(text).ids
    assert tok.decode(ids).lstrip(" ") == unicodedata.normalize("NFKC", text)
    assert all(i >= 3 for i in ids)  # no special token stands in for unknown bytes


def test_fast_encoder_equals_whole_text(data_dir):
    from tokenizers import Tokenizer

    from bl2.data.tokenizer import FastEncoder

    tok = Tokenizer.from_file(str(data_dir / "tokenizer.json"))
    text = "\n".join(f"Line {i} has words , and  spaces .\n\n  indented {i}\n" for i in range(300))
    assert FastEncoder(tok, piece_chars=50).encode(text) == tok.encode(text, add_special_tokens=False).ids


def test_store_attrs_and_counts(data_dir, corpus_dirs):
    from transformers import AutoTokenizer

    from bl2.data.store import TokenStore, token_sha256

    store = TokenStore(data_dir)
    a = store.attrs
    assert a["vocab_size"] == store.vocab_size <= 400
    for split in ("train", "val", "test"):
        tokens = store.split(split)
        assert tokens.dtype == np.uint16 and len(tokens) == a["splits"][split]["n_tokens"] > 0
        assert sum(r["tokens"] for r in a["files"][split]) == len(tokens)
        assert token_sha256(tokens) == a["splits"][split]["sha256"]
    assert [r["lines"] for r in a["files"]["train"]] == [380] * 4  # 400 lines per file, 95%
    assert [r["lines"] for r in a["files"]["val"]] == [20] * 4
    assert [r["file"] for r in a["files"]["test"]] == sorted(p.name for p in corpus_dirs[1].iterdir())
    tok = AutoTokenizer.from_pretrained(data_dir)
    ids = tok(" The cat sat.", add_special_tokens=False).input_ids
    assert ids and tok.unk_token_id is None and (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (1, 2, 0)
    assert tok.decode(ids) == " The cat sat."


def test_prepare_cli_prints_table_and_refuses_existing(tmp_path, corpus_dirs):
    out = tmp_path / "D"
    r = run_cli("prepare", corpus_dirs[0], "--dev", corpus_dirs[1], "--out", out, "--vocab-size", "300")
    assert r.exit_code == 0, r.stderr
    assert "childes.train" in r.stdout and "test" in r.stdout
    before = (out / "tokenizer.json").read_bytes()
    assert_user_error(run_cli("prepare", corpus_dirs[0], "--dev", corpus_dirs[1], "--out", out), "already exists")
    assert (out / "tokenizer.json").read_bytes() == before
    r = run_cli("prepare", corpus_dirs[0], "--dev", corpus_dirs[1], "--out", out, "--vocab-size", "320", "--overwrite")
    assert r.exit_code == 0 and not list(tmp_path.glob(".D.*"))  # no temporary dir left behind


def test_bad_inputs(tmp_path, corpus_dirs):
    corpus, dev = corpus_dirs
    out = tmp_path / "out"
    assert_user_error(run_cli("prepare", tmp_path / "nope", "--dev", dev, "--out", out), "not found")
    (tmp_path / "empty_dir").mkdir()
    assert_user_error(run_cli("prepare", tmp_path / "empty_dir", "--dev", dev, "--out", out), "no *.train")
    for v in ("259", "70000"):
        assert_user_error(run_cli("prepare", corpus, "--dev", dev, "--out", out, "--vocab-size", v), "--vocab-size")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "childes.train").write_bytes(b"fine line\nsecond line\nbroken \xff\xfe here\n")
    assert_user_error(run_cli("prepare", bad, "--dev", dev, "--out", out), "childes.train", "line 3", "UTF-8")
    assert not out.exists()


def test_unwritable_output(tmp_path, corpus_dirs, monkeypatch):
    import os

    ro = tmp_path / "readonly"
    ro.mkdir()
    ro.chmod(0o500)
    if os.access(ro, os.W_OK):  # root ignores permissions: simulate the check's view instead
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(ro) else real(p, mode))
    try:
        r = run_cli("prepare", corpus_dirs[0], "--dev", corpus_dirs[1], "--out", ro / "D")
        assert_user_error(r, "not writable")
    finally:
        ro.chmod(0o700)


def test_empty_file_is_skipped_with_warning(tmp_path):
    corpus, dev = write_corpus(tmp_path / "c", n_train=60, n_dev=20)
    (corpus / "empty.train").write_text("\n\n")
    r = run_cli("prepare", corpus, "--dev", dev, "--out", tmp_path / "D", "--vocab-size", "300")
    assert r.exit_code == 0, r.stderr
    assert "skipping empty file" in r.stderr and "empty.train" in r.stderr
    all_empty = tmp_path / "all_empty"
    all_empty.mkdir()
    (all_empty / "a.train").write_text("")
    assert_user_error(run_cli("prepare", all_empty, "--dev", dev, "--out", tmp_path / "E"), "empty")
