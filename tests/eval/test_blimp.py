"""`bl2 eval blimp`: scores vs a deliberately naive scorer, the tie / macro-average / newline / limit rules,
direct ensembles, the CLI end to end and every user-error path (exit 2, one line, no traceback)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import make_debug_model
from typer.testing import CliRunner

from bl2.cli import app
from bl2.eval import blimp, blimp_scoring
from bl2.eval.blimp import encode_sentences, evaluate_blimp, load_tokenizer, summarise
from bl2.eval.blimp_data import Pair, SubtaskPairs, index_sentences, load_suites
from bl2.eval.blimp_scoring import pack_tries

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"  # ../shared/data from the repo root
needs_shared = pytest.mark.skipif(not (SHARED / "blimp_filtered").is_dir(), reason="no ../shared/data")
runner = CliRunner()


# ----------------------------------------------------------------------------------------------- helpers
def write_jsonl(path: Path, pairs: list[tuple[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"sentence_good": g, "sentence_bad": b}) + "\n" for g, b in pairs))


@pytest.fixture
def eval_dir(tmp_path) -> Path:
    """A small evaluation_data layout: two filtered subtasks of unequal size and a supplement with "\\n"."""
    root = tmp_path / "evaluation_data"
    write_jsonl(root / "blimp_filtered" / "agreement.jsonl",
                [("The dog eats.", "The dog eat."), ("The cats eat.", "The cats eats."), ("We see it.", "We sees it.")])
    write_jsonl(root / "blimp_filtered" / "islands.jsonl", [("Who did you see?", "Who did you see him?")])
    write_jsonl(root / "supplement_filtered" / "turn_taking.jsonl",
                [("A: Do you like it?\nB: Yes, I do.", "A: Do you like it?\nB: Yes, she does.")])
    return root


@pytest.fixture(scope="module")
def second_model_dir(tmp_path_factory, data_dir) -> Path:
    """Another untrained debug model (seed 1) with the same tokenizer: the other ensemble member."""
    return make_debug_model(tmp_path_factory.mktemp("models") / "debug1", data_dir, seed=1)


def naive_logp(model_dirs: list[Path], sentence: str) -> float:
    """One sentence at a time: BOS + tokens, members' raw logits averaged, log_softmax, a Python loop over
    the tokens summing log p(token | prefix)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dirs[0]))
    ids = tok.encode(" " + sentence, add_special_tokens=False)
    inp = torch.tensor([[tok.bos_token_id] + ids])
    with torch.no_grad():
        logits = [AutoModelForCausalLM.from_pretrained(str(d)).eval()(inp).logits[0] for d in model_dirs]
    logp = torch.log_softmax(sum(logits) / len(logits), dim=-1)
    total = 0.0
    for pos, token in enumerate(ids):  # logits at position pos predict token pos+1 of [BOS] + ids
        total += logp[pos, token].item()
    return total


def read_samples(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def run_cli(*args):
    return runner.invoke(app, ["eval", "blimp", *map(str, args)])


# ----------------------------------------------------------------------------------------------- scoring maths
@needs_shared
def test_logprobs_match_naive_scorer(tmp_path, debug_model_dir):
    """Every pair of a few real subtasks (incl. supplement sentences with "\\n"): batched == naive."""
    root = tmp_path / "real"
    for suite, stem in [("blimp_filtered", "adjunct_island"), ("blimp_filtered", "wh_island"),
                        ("blimp_filtered", "determiner_noun_agreement_1"), ("supplement_filtered", "turn_taking"),
                        ("supplement_filtered", "qa_congruence_tricky")]:
        (root / suite).mkdir(parents=True, exist_ok=True)
        lines = (SHARED / suite / f"{stem}.jsonl").read_text().splitlines()[:6]
        (root / suite / f"{stem}.jsonl").write_text("\n".join(lines) + "\n")
    log = tmp_path / "pairs.jsonl"
    evaluate_blimp([debug_model_dir], root, batch_size=4, log_samples=log, progress=False, show=False)
    samples = read_samples(log)
    assert len(samples) == 30
    for s in samples:
        assert s["logp_good"] == pytest.approx(naive_logp([debug_model_dir], s["sentence_good"]), abs=1e-4)
        assert s["logp_bad"] == pytest.approx(naive_logp([debug_model_dir], s["sentence_bad"]), abs=1e-4)
        assert s["correct"] == (s["logp_good"] >= s["logp_bad"])


def test_two_model_ensemble_equals_hand_computed_average_logits(tmp_path, eval_dir, debug_model_dir,
                                                                 second_model_dir):
    dirs = [debug_model_dir, second_model_dir]
    log = tmp_path / "pairs.jsonl"
    results = evaluate_blimp(dirs, eval_dir, log_samples=log, progress=False, show=False)
    assert [r.kind for r in results] == ["member", "member", "ensemble"]
    for s in read_samples(log):
        assert s["logp_good"] == pytest.approx(naive_logp(dirs, s["sentence_good"]), abs=1e-4)
        assert s["logp_bad"] == pytest.approx(naive_logp(dirs, s["sentence_bad"]), abs=1e-4)
        for k, d in enumerate(dirs):
            assert s["members_logp_good"][k] == pytest.approx(naive_logp([d], s["sentence_good"]), abs=1e-4)


def test_one_model_ensemble_equals_the_model(tmp_path, eval_dir, debug_model_dir):
    """A dir alone and the same dir twice (its 'ensemble' averages identical logits) give the same scores."""
    alone, twice = tmp_path / "alone.jsonl", tmp_path / "twice.jsonl"
    evaluate_blimp([debug_model_dir], eval_dir, log_samples=alone, progress=False, show=False)
    res = evaluate_blimp([debug_model_dir, debug_model_dir], eval_dir, log_samples=twice, members=False,
                         progress=False, show=False)
    assert [r.kind for r in res] == ["ensemble"]
    for a, b in zip(read_samples(alone), read_samples(twice), strict=True):
        assert b["logp_good"] == pytest.approx(a["logp_good"], abs=1e-5)
        assert b["logp_bad"] == pytest.approx(a["logp_bad"], abs=1e-5)
        assert "members_logp_good" not in a


def test_pack_tries_shares_prefixes_and_masks_to_ancestors():
    p = pack_tries([[5, 6, 7], [5, 6, 8], [5, 9], [4]], bos=1, row_nodes=256)
    assert p.ids.tolist() == [[1, 5, 6]]  # BOS, prefix [5], prefix [5, 6]: 3 positions for 9 targets
    assert p.positions.tolist() == [[0, 1, 2]] and p.parents.tolist() == [[0, 0, 1]]
    assert p.nodes.tolist() == [0, 1, 2, 0, 1, 2, 0, 1, 0]
    assert p.tokens.tolist() == [5, 6, 7, 5, 6, 8, 5, 9, 4]
    assert p.owners.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 3]
    import torch

    seen = p.attention_mask(torch.float32)[0, 0] == 0
    assert seen.tolist() == [[True, False, False], [True, True, False], [True, True, True]]
    # a full row starts a new trie; a sentence longer than a row still gets one row of its own
    q = pack_tries([[5, 6, 7], [8, 9], [2, 3, 4, 5, 6]], bos=1, row_nodes=3)
    assert q.ids.shape == (3, 5) and q.rows.tolist() == [0, 0, 0, 1, 1, 2, 2, 2, 2, 2]
    assert q.parents[1].tolist() == [0, 0, 2, 3, 4]  # padding nodes are their own parents


@needs_shared
def test_packed_equals_plain_batching(debug_model_dir, second_model_dir):
    from bl2.model.ensemble import Ensemble

    ens = Ensemble([debug_model_dir, second_model_dir])
    tok = load_tokenizer([debug_model_dir])
    sentences, _ = index_sentences(load_suites(SHARED, "all", limit=3))
    tokens = encode_sentences(tok, sentences)
    assert blimp_scoring.packing_agrees(ens, tokens, tok.bos_token_id, tok.pad_token_id)
    packed = blimp_scoring.score_sentences(ens, tokens, 1, 0, batch_size=50, progress=False, packed=True)
    plain = blimp_scoring.score_sentences(ens, tokens, 1, 0, batch_size=50, progress=False, packed=False)
    assert packed.shape == (3, len(sentences))
    np.testing.assert_allclose(packed, plain, rtol=0, atol=1e-4)


def test_falls_back_to_plain_batching_when_packing_disagrees(tmp_path, eval_dir, debug_model_dir, monkeypatch):
    good_log, out = tmp_path / "good.jsonl", tmp_path / "res.json"
    evaluate_blimp([debug_model_dir], eval_dir, log_samples=good_log, progress=False, show=False)

    def broken(ensemble, seqs, *args):  # a model that ignores custom masks would score like this
        raise RuntimeError("4D masks unsupported")

    monkeypatch.setattr(blimp_scoring, "score_packed", broken)
    evaluate_blimp([debug_model_dir], eval_dir, out=out, log_samples=tmp_path / "fallback.jsonl",
                   progress=False, show=False)
    assert json.loads(out.read_text())["settings"]["batching"] == "length-sorted, right-padded"
    for a, b in zip(read_samples(good_log), read_samples(tmp_path / "fallback.jsonl"), strict=True):
        assert b["logp_good"] == pytest.approx(a["logp_good"], abs=1e-4)


def test_tie_counts_as_correct(tmp_path, debug_model_dir):
    root = tmp_path / "ties"
    write_jsonl(root / "same.jsonl", [("The dog eats.", "The dog eats."), ("A cat.", "A cat.")])
    [res] = evaluate_blimp([debug_model_dir], root, progress=False, show=False)
    assert res.suites["ties"]["subtasks"]["same"] == {"acc": 1.0, "n": 2, "ties": 2}
    # and on a hand-made score matrix: equal scores are correct, a lower good score is not
    st = SubtaskPairs("s", "t", [Pair(0, "a", "b"), Pair(1, "c", "d")], np.array([0, 2]), np.array([1, 3]))
    assert st.correct(np.array([[-1.0, -1.0, -2.0, -1.5]])).tolist() == [[True, False]]
    assert st.ties(np.array([[-1.0, -1.0, -2.0, -1.5]])).tolist() == [[True, False]]


def test_ties_are_reported_per_subtask_and_suite(tmp_path):
    """One tie in subtask a (counted correct), none in b; the suite adds them up; samples flag the tie."""
    a = SubtaskPairs("toy", "a", [Pair(0, "g0", "b0"), Pair(1, "g1", "b1")], np.array([0, 1]), np.array([2, 3]))
    b = SubtaskPairs("toy", "b", [Pair(0, "G0", "B0")], np.array([4]), np.array([5]))
    scores = np.array([[-1.0, -3.0, -1.0, -2.0, -1.0, -2.0]])
    [res] = summarise(scores, [a, b], [Path("m")])
    assert res.suites["toy"]["subtasks"]["a"] == {"acc": 0.5, "n": 2, "ties": 1}
    assert res.suites["toy"]["subtasks"]["b"]["ties"] == 0 and res.suites["toy"]["ties"] == 1
    samples = [json.loads(line) for line in blimp.sample_lines(scores, [a, b])]
    assert [s["tie"] for s in samples] == [True, False, False] and samples[0]["correct"]


def test_suite_score_is_unweighted_mean_of_subtasks():
    """Subtask a: 1 of 4 correct (0.25), subtask b: 2 of 2 (1.0) -> macro 0.625 (micro would be 0.5)."""
    pairs_a = [Pair(i, f"g{i}", f"b{i}") for i in range(4)]
    pairs_b = [Pair(i, f"G{i}", f"B{i}") for i in range(2)]
    a = SubtaskPairs("toy", "a", pairs_a, np.array([0, 1, 2, 3]), np.array([4, 5, 6, 7]))
    b = SubtaskPairs("toy", "b", pairs_b, np.array([8, 9]), np.array([10, 11]))
    scores = np.array([[-1, -9, -9, -9, -2, -1, -1, -1, -1, -1, -3, -3]], dtype=float)
    [res] = summarise(scores, [a, b], [Path("m")])
    toy = res.suites["toy"]
    assert toy["subtasks"] == {"a": {"acc": 0.25, "n": 4, "ties": 0}, "b": {"acc": 1.0, "n": 2, "ties": 0}}
    assert toy["score"] == pytest.approx(0.625) and toy["n_pairs"] == 6 and res.average is None


def test_suite_average_of_two_suites(eval_dir, debug_model_dir):
    [res] = evaluate_blimp([debug_model_dir], eval_dir, progress=False, show=False)
    f, s = res.suites["blimp_filtered"], res.suites["supplement_filtered"]
    assert f["score"] == pytest.approx((f["subtasks"]["agreement"]["acc"] + f["subtasks"]["islands"]["acc"]) / 2)
    assert res.average == pytest.approx((f["score"] + s["score"]) / 2)
    assert (f["n_pairs"], s["n_pairs"]) == (4, 1)


def test_newline_kept_in_supplement_sentences(debug_model_dir):
    tok = load_tokenizer([debug_model_dir])
    [with_nl, without] = encode_sentences(tok, ["A: Do you?\nB: Yes.", "A: Do you? B: Yes."])
    newline_ids = {i for i in with_nl if "Ċ" in tok.convert_ids_to_tokens(i)}  # ByteLevel's "\n" is "Ċ"
    assert newline_ids and not newline_ids & set(without)
    assert tok.decode(with_nl) == " A: Do you?\nB: Yes."


@needs_shared
def test_limit_takes_first_pairs_of_each_subtask():
    [sup] = load_suites(SHARED, "supplement", limit=3)
    assert len(sup.subtasks) == 5 and all(len(p) == 3 for p in sup.subtasks.values())
    first = json.loads((SHARED / "supplement_filtered" / "hypernym.jsonl").read_text().splitlines()[2])
    assert sup.subtasks["hypernym"][2] == Pair(2, first["sentence_good"], first["sentence_bad"])
    assert "\n" in sup.subtasks["turn_taking"][0].good


@needs_shared
def test_original_blimp_folder_is_one_suite():
    [suite] = load_suites(SHARED / "blimp", "all", limit=2)
    assert suite.name == "blimp" and len(suite.subtasks) == 67 and suite.n_pairs == 134


# ----------------------------------------------------------------------------------------------- CLI
def test_cli_end_to_end(tmp_path, eval_dir, debug_model_dir, monkeypatch):
    out, log = tmp_path / "res" / "results.json", tmp_path / "pairs.jsonl"
    monkeypatch.setenv("BL2_EVAL_DATA", str(eval_dir))  # --data-dir default
    result = run_cli(debug_model_dir, "--out", out, "--log-samples", log, "--limit", 2, "--device", "cpu",
                     "--batch-size", 3)
    assert result.exit_code == 0, result.output
    for text in ("agreement", "islands", "turn_taking", "blimp_filtered (macro over 2)", "average"):
        assert text in result.output
    doc = json.loads(out.read_text())
    [res] = doc["results"]
    assert res["model_dirs"] == [str(debug_model_dir)] and res["kind"] == "model"
    assert res["suites"]["blimp_filtered"]["subtasks"]["agreement"]["n"] == 2  # --limit 2 of 3
    assert res["suites"]["blimp_filtered"]["n_subtasks"] == 2 and res["average"] is not None
    assert doc["settings"]["limit"] == 2 and doc["settings"]["prefix_token_id"] == 1
    assert doc["settings"]["batching"] == "prefix tries"  # the debug Llama passes the packing check
    samples = read_samples(log)
    assert len(samples) == 4
    assert set(samples[0]) == {"suite", "subtask", "index", "sentence_good", "sentence_bad", "logp_good",
                               "logp_bad", "correct", "tie"}
    assert "ties" in result.output and doc["settings"]["tie_rule"].startswith("a tie (equal log-probabilities)")
    assert [(s["subtask"], s["index"]) for s in samples] == [("agreement", 0), ("agreement", 1), ("islands", 0),
                                                             ("turn_taking", 0)]
    assert samples[-1]["sentence_good"] == "A: Do you like it?\nB: Yes, I do."
    # existing outputs are kept unless --overwrite
    again = run_cli(debug_model_dir, "--out", out)
    assert again.exit_code == 2 and "--overwrite" in again.stderr


def test_cli_ensemble_reports_members_and_ensemble(eval_dir, debug_model_dir, second_model_dir):
    result = run_cli(f"{debug_model_dir},{second_model_dir}", "--data-dir", eval_dir, "--suite", "filtered")
    assert result.exit_code == 0, result.output
    assert "m1:debug0" in result.output and "m2:debug1" in result.output and "ensemble" in result.output
    assert "supplement" not in result.output


def _no_tokenizer_dir(tmp_path: Path, model_dir: Path) -> Path:
    d = tmp_path / "no_tok"
    d.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(model_dir / name, d / name)
    return d


def _no_bos_dir(tmp_path: Path, model_dir: Path) -> Path:
    from transformers import PreTrainedTokenizerFast

    d = _no_tokenizer_dir(tmp_path, model_dir)
    tok = PreTrainedTokenizerFast(tokenizer_file=str(model_dir / "tokenizer.json"), eos_token="</s>")
    tok.save_pretrained(str(d))
    return d


@pytest.mark.parametrize("case, message", [
    ("no_data_dir", "BLiMP data dir not found"),
    ("no_suite_folder", "suite folder not found"),
    ("empty_suite", "empty suite"),
    ("bad_json", "agreement.jsonl:2: malformed JSON"),
    ("missing_key", "agreement.jsonl:1: missing or non-string 'sentence_bad'"),
    ("no_tokenizer", "has no tokenizer"),
    ("no_bos", "has no BOS token"),
    ("supplement_of_flat_dir", "--suite supplement needs"),
    ("missing_model", "model dir not found"),
])
def test_cli_user_errors(tmp_path, eval_dir, debug_model_dir, case, message):
    model, data, extra = debug_model_dir, eval_dir, []
    agreement = eval_dir / "blimp_filtered" / "agreement.jsonl"
    if case == "no_data_dir":
        data = tmp_path / "nowhere"
    elif case == "no_suite_folder":
        shutil.rmtree(eval_dir / "supplement_filtered")
    elif case == "empty_suite":
        extra = ["--suite", "supplement"]
        (eval_dir / "supplement_filtered" / "turn_taking.jsonl").unlink()
    elif case == "bad_json":
        agreement.write_text('{"sentence_good": "a", "sentence_bad": "b"}\n{"sentence_good": "a", oops\n')
    elif case == "missing_key":
        agreement.write_text('{"sentence_good": "a"}\n')
    elif case == "no_tokenizer":
        model = _no_tokenizer_dir(tmp_path, debug_model_dir)
    elif case == "no_bos":
        model = _no_bos_dir(tmp_path, debug_model_dir)
    elif case == "supplement_of_flat_dir":
        data, extra = eval_dir / "blimp_filtered", ["--suite", "supplement"]
    elif case == "missing_model":
        model = tmp_path / "no_model"
    result = run_cli(model, "--data-dir", data, *extra)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output


def test_cli_subprocess_error_is_one_clean_line(tmp_path, debug_model_dir):
    """The installed entry point: exit code 2, one stderr line, no traceback (also without --data-dir)."""
    bl2 = Path(sys.executable).with_name("bl2")
    cmd = [str(bl2)] if bl2.is_file() else [sys.executable, "-m", "bl2"]
    env = {k: v for k, v in os.environ.items() if k != "BL2_EVAL_DATA"}
    proc = subprocess.run([*cmd, "eval", "blimp", str(debug_model_dir)], capture_output=True, text=True, env=env)
    assert proc.returncode == 2
    assert proc.stderr == "error: no BLiMP data dir: pass --data-dir DIR or set BL2_EVAL_DATA\n"
