"""The built-in sample corpus and minimal-pair suite (bl2.data.sample): determinism, format, sizes, held-out pairs,
and that every pair differs from its grammatical sentence in exactly the targeted phenomenon."""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from pathlib import Path

import pytest

from bl2.data.clean import clean_text
from bl2.data.sample import PHENOMENA, read_sentences, write_sample_corpus, write_sample_pairs
from bl2.data.sample import lexicon as lx
from bl2.data.sample.pairs import expected_alternations

FIELDS = ("sentence_good", "sentence_bad", "field", "linguistics_term", "UID", "pair_id")
PLURALS = {n.pl for n in lx.NOUNS if n.pl}
SG_ONLY = {n.sg for n in lx.NOUNS} - PLURALS
PL_ONLY = PLURALS - {n.sg for n in lx.NOUNS}
ADJECTIVES = {a.word for a in lx.ADJS}
OVER_REGULARISED = {v.over for v in lx.VERBS if v.over not in ("", "*")}
NAME_GENDER = {n.word: n.gender for n in lx.NAMES}


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> dict:
    """The default corpus and pair suite (seed 0), written once for the module."""
    root = tmp_path_factory.mktemp("sample")
    t0 = time.process_time()  # CPU seconds: other processes on the machine do not count
    corpus, dev = write_sample_corpus(root)
    seconds = time.process_time() - t0
    data = write_sample_pairs(root)
    pairs = {p: [json.loads(line) for line in (data / "blimp_filtered" / f"{p}.jsonl").read_text().splitlines()]
             for p in PHENOMENA}
    return {"root": root, "corpus": corpus, "dev": dev, "data": data, "pairs": pairs, "seconds": seconds,
            "sentences": read_sentences(corpus, dev)}


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _words(folder: Path) -> int:
    return sum(len(p.read_text().split()) for p in folder.iterdir())


def test_same_seed_same_bytes_other_seed_other_text(tmp_path):
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        write_sample_corpus(tmp_path / name, n_train_lines=1500, n_dev_lines=150, seed=seed)
        write_sample_pairs(tmp_path / name, n_pairs=60, seed=seed)
    a, b, c = (_files(tmp_path / name) for name in "abc")
    assert a == b
    assert a.keys() == c.keys()
    assert all(a[k] != c[k] for k in a if not str(k).endswith("SYNTHETIC.md"))  # the marker is the same text


def test_layout_and_sources(sample):
    assert sorted(p.name for p in sample["corpus"].iterdir()) == ["childes.train", "gutenberg.train",
                                                                 "switchboard.train"]
    assert sorted(p.name for p in sample["dev"].iterdir()) == ["childes.dev", "gutenberg.dev", "switchboard.dev"]
    assert sorted(p.name for p in (sample["data"] / "blimp_filtered").iterdir()) == sorted(
        [f"{p}.jsonl" for p in PHENOMENA] + ["SYNTHETIC.md"])  # the marker: `bl2 report` labels them synthetic
    childes = (sample["corpus"] / "childes.train").read_text().splitlines()
    assert all(re.fullmatch(r"\S.* [.!?]", line) for line in childes)  # CHILDES-style spaced punctuation
    for line in clean_text("childes", "\n".join(childes[:2000])).splitlines():  # cleaned == canonical form
        assert line[0].isupper() and line[-1] in ".!?" and " ." not in line and " ," not in line
    turns = (sample["corpus"] / "switchboard.train").read_text().splitlines()
    assert all(re.match(r"[AB]:\t[A-Z]", t) for t in turns)
    assert all(line.count(". ") >= 2 for line in (sample["corpus"] / "gutenberg.train").read_text().splitlines())


def test_default_sizes_and_speed(sample):
    assert 200_000 <= _words(sample["corpus"]) <= 400_000
    assert 20_000 <= _words(sample["dev"]) <= 40_000
    assert sample["seconds"] < 5


def test_lexicon_has_a_few_hundred_words():
    assert 250 <= len(lx.lemmas()) <= 800
    assert len(lx.NOUNS) >= 100 and len(lx.VERBS) >= 80 and len(lx.ADJS) >= 40 and len(lx.NAMES) >= 20
    assert {"men", "children", "mice", "feet", "teeth", "geese", "leaves"} <= PLURALS
    assert {"went", "ate", "saw", "took", "gave", "ran", "fell", "broke", "made", "found"} <= {v.past for v in lx.VERBS}


@pytest.mark.parametrize("phen", PHENOMENA)
def test_pair_file_format(sample, phen):
    records = sample["pairs"][phen]
    assert len(records) >= 200
    assert len({r["pair_id"] for r in records}) == len(records)
    assert len({r["sentence_good"] for r in records}) == len(records)
    for r in records:
        assert all(k in r for k in FIELDS) and r["UID"] == phen
        assert r["sentence_good"] != r["sentence_bad"]
        for s in (r["sentence_good"], r["sentence_bad"]):  # BLiMP formatting
            assert s[0].isupper() and s[-1] in ".?" and s[-2] != " " and "  " not in s


def _tokens(sentence: str) -> list[str]:
    return sentence[:-1].lower().split()


@pytest.mark.parametrize("phen", [p for p in PHENOMENA if p != "aux_inversion_questions"])
def test_pairs_differ_in_one_targeted_word(sample, phen):
    allowed = expected_alternations()[phen]
    for r in sample["pairs"][phen]:
        good, bad = _tokens(r["sentence_good"]), _tokens(r["sentence_bad"])
        assert len(good) == len(bad) and r["sentence_good"][-1] == r["sentence_bad"][-1]
        diff = [(g, b) for g, b in zip(good, bad) if g != b]
        assert len(diff) == 1 and diff[0] in allowed, (r["sentence_good"], r["sentence_bad"])


def test_aux_inversion_pairs_move_one_auxiliary(sample):
    kinds = set()
    for r in sample["pairs"]["aux_inversion_questions"]:
        good, bad = _tokens(r["sentence_good"]), _tokens(r["sentence_bad"])
        assert r["sentence_good"].endswith("?") and r["sentence_bad"].endswith("?")
        assert good[0] in lx.AUXILIARIES and sorted(good) == sorted(bad)
        moves = [(i, j) for i in range(len(good)) for j in range(len(good))
                 if i != j and good[i] in lx.AUXILIARIES and _move(good, i, j) == bad]
        assert moves, (r["sentence_good"], r["sentence_bad"])
        kinds.add("relative clause" if moves[0][0] > 0 else "main clause")
    assert kinds == {"relative clause", "main clause"}


def _move(words: list[str], i: int, j: int) -> list[str]:
    out = list(words)
    out.insert(j, out.pop(i))
    return out


def test_no_pair_sentence_in_train_or_dev_text(sample):
    sentences = sample["sentences"]
    assert len(sentences) > 10_000
    for records in sample["pairs"].values():
        for r in records:
            assert r["sentence_good"] not in sentences and r["sentence_bad"] not in sentences


def test_exclude_removes_sentences(sample, tmp_path):
    first = [r["sentence_good"] for r in sample["pairs"]["subject_verb_agreement"][:20]]
    data = write_sample_pairs(tmp_path, n_pairs=200, exclude=set(first))
    text = (data / "blimp_filtered" / "subject_verb_agreement.jsonl").read_text()
    assert all(json.dumps(s) not in text for s in first)


def test_training_text_has_grammatical_instances_and_no_bad_forms(sample):
    sentences = sorted(sample["sentences"])
    tokens = [s[:-1].replace(",", " ,").split() for s in sentences]
    text = " ".join(clean_text(p.stem, p.read_text()) for p in sorted(sample["corpus"].iterdir()))
    counts = Counter(re.findall(r"[a-z']+", text.lower()))
    assert min(counts[w] for w in ("himself", "herself", "themselves")) >= 200
    assert min(counts[w] for w in ("these", "those", "are", "were", "does", "do", "has", "have")) >= 500
    assert min(counts[w] for w in ("went", "ate", "saw", "took", "gave", "ran", "fell", "broke", "made")) >= 50
    assert sum(counts[v.past] for v in lx.VERBS if v.bad_pasts()) >= 3000
    assert not OVER_REGULARISED & set(counts)
    questions = [ws for ws in tokens if ws[0].lower() in lx.AUXILIARIES and ws[0][0].isupper()]
    assert len(questions) >= 2000
    assert sum(1 for ws in questions if "who" in ws or "that" in ws) >= 100  # relative clauses in questions
    for ws in tokens:
        low = [w.lower() for w in ws]
        for i, w in enumerate(low[:-1]):  # determiner-noun agreement (adjectives skipped)
            k = i + 1
            while k < len(low) - 1 and low[k] in ADJECTIVES:
                k += 1
            if w in ("these", "those", "many"):
                assert low[k] not in SG_ONLY, ws
            if w in ("this", "that", "a", "an"):
                assert low[k] not in PL_ONLY, ws
        if ws[0] in NAME_GENDER and len(ws) > 1 and ws[1] != "," and {"himself", "herself"} & set(low):
            assert ("himself" if NAME_GENDER[ws[0]] == "m" else "herself") in low, ws  # reflexive agreement
