"""`bl2 eval zero-shot`: each task's scoring against a naive per-sentence scorer written here (the official
rule: whole-sentence tokens, completion tokens only, first token never scored), the official averages
(entity-tracking splits, WUG Spearman), the reading regressions, EWoK's zip read in memory, the official
layout, and bad input as one line."""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_user_error, run_cli

from bl2.eval.zero_shot import metrics, reading, scoring
from bl2.eval.zero_shot.suite import Settings, evaluate_zero_shot, load_offsets_tokenizer, write_official
from bl2.eval.zero_shot.tasks import TASKS, Item, load_task

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "babylm_eval_2025"
needs_shared = pytest.mark.skipif(not (SHARED / "fast_eval").is_dir(), reason="no ../shared/data/babylm_eval_2025")

EWOK = [("physical-relations", "The cup is on the table.", "The table is on the cup.", "The cup is above the table.",
         "The cup is below the table."),
        ("physical-relations", "The dog is in the box.", "The box is in the dog.", "The dog is inside.",
         "The dog is outside."),
        ("social-relations", "Ann helps Bob.", "Bob helps Ann.", "Ann is kind.", "Ann is rude.")]


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture(scope="module")
def eval_data(tmp_path_factory) -> Path:
    """An evaluation_data folder with our own items in every task's official shape."""
    root = tmp_path_factory.mktemp("evaluation_data")
    fast = root / "fast_eval"
    write_jsonl(fast / "blimp_fast" / "anaphor_agreement.jsonl", [
        {"sentence_good": "The boy saw himself.", "sentence_bad": "The boy saw herself.", "field": "morphology",
         "UID": "anaphor_agreement", "linguistics_term": "anaphor"},
        {"sentence_good": "The girls saw themselves.", "sentence_bad": "The girls saw himself.",
         "field": "syntax_semantics", "UID": "anaphor_agreement", "linguistics_term": "anaphor"}])
    write_jsonl(fast / "supplement_fast" / "turn_taking.jsonl", [
        {"sentence_good": "A: Hi. B: Hello.", "sentence_bad": "A: Hi. A: Hello."}])
    write_jsonl(fast / "ewok_fast" / "physical-relations.jsonl", [
        {"Domain": d, "ConceptA": "a", "ConceptB": "b", "ContextType": "t", "ContextDiff": "c", "TargetDiff": "d",
         "Context1": c1, "Context2": c2, "Target1": t1, "Target2": t2} for d, c1, c2, t1, t2 in EWOK])
    write_jsonl(fast / "entity_tracking_fast" / "regular.jsonl", [
        {"sample_id": i, "numops": i % 2, "input_prefix": "Box 0 contains the hat. Box 0 contains ",
         "options": ["the hat.", "the cat.", "nothing."]} for i in range(4)])
    write_jsonl(fast / "wug_adj_nominalization" / "wug_adj_nominalization.jsonl", [
        {"sentences": f"Make a noun: {w}. {w}ness\tMake a noun: {w}. {w}ity", "ratio": r}
        for w, r in [("blick", 0.9), ("dax", 0.2), ("wug", 0.5), ("fep", 0.7)]])
    return root


def naive_score(model, tok, sentence: str, completion: str) -> float:
    """One sentence alone: sum of log p(token) over the tokens whose span ends after the completion's start."""
    import torch

    enc = tok(sentence, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    start = len(sentence) - len(completion)
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].double(), -1)
    return sum(float(logp[j - 1, ids[j]]) for j in range(1, len(ids)) if offsets[j][1] > start)


@pytest.mark.parametrize("task", ["blimp", "supplement", "ewok", "entity_tracking", "wug_adj"])
def test_scores_equal_a_naive_per_sentence_scorer(task, eval_data, debug_model_dir):
    from bl2.model.ensemble import Ensemble

    tok = load_offsets_tokenizer(debug_model_dir)
    ens = Ensemble([debug_model_dir])
    from bl2.eval.zero_shot.tasks import FOLDERS

    data = load_task(task, eval_data / "fast_eval" / FOLDERS[task][1]["fast"], "x")
    sentences = [s for it in data.items for s in it.sentences]
    completions = [c for it in data.items for c in it.completions]
    enc = scoring.encode(tok, sentences, completions)
    for packed in (True, False):
        got = scoring.score_encoded(ens, enc, [1.0], batch_size=3, packed=packed, progress=False)[0, 0]
        want = [naive_score(ens.models[0], tok, s, c) for s, c in zip(sentences, completions)]
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)


def test_ewok_scores_the_target_only(eval_data, debug_model_dir):
    tok = load_offsets_tokenizer(debug_model_dir)
    folder = eval_data / "fast_eval" / "ewok_fast"
    target = load_task("ewok", folder, "x").items[0]
    whole = load_task("ewok", folder, "x", full_sentence=True).items[0]
    assert target.sentences == whole.sentences == [f"{EWOK[0][1]} {EWOK[0][3]}", f"{EWOK[0][1]} {EWOK[0][4]}"]
    assert target.completions == [" " + EWOK[0][3], " " + EWOK[0][4]]
    t, w = scoring.encode(tok, target.sentences, target.completions), scoring.encode(tok, whole.sentences,
                                                                                     whole.completions)
    n_target = len(tok(" " + EWOK[0][3], add_special_tokens=False)["input_ids"])
    assert len(t[0].scored) == n_target  # the context's tokens are not scored
    assert len(w[0].scored) == len(w[0].tokens) - 1  # every token after the first


def test_entity_tracking_average_is_the_mean_of_split_means():
    items = [Item(["a", "b"], ["a", "b"], {"UID": uid}) for uid in
             ["regular_0_ops", "regular_0_ops", "regular_1_ops", "ambiref_0_ops"]]
    accs = metrics.accuracies(items, np.array([0, 1, 0, 0]))
    assert accs["UID"] == {"regular_0_ops": 50.0, "regular_1_ops": 100.0, "ambiref_0_ops": 100.0}
    assert metrics.average("entity_tracking", accs) == pytest.approx(((50 + 100) / 2 + 100) / 2)
    assert accs["UID"]["regular"] == 75.0  # the split means are listed, as the official report does
    assert metrics.average("blimp", {"UID": {"x": 50.0, "y": 100.0}}) == 75.0


def test_first_of_tied_options_is_chosen_and_ties_are_counted():
    items = [Item(["a", "b"], ["a", "b"], {"UID": "u"})] * 3
    r = metrics.evaluate_temperature("blimp", items, np.array([[1.0, 1.0], [0.0, 2.0], [3.0, 1.0]]))
    assert r["chosen"].tolist() == [0, 1, 0] and r["ties"] == 1
    assert r["average"] == pytest.approx(200 / 3)


def test_wug_is_spearman_of_p_first_against_human_ratio():
    from scipy.stats import rankdata

    ratios = [0.9, 0.2, 0.5, 0.7, 0.1]
    items = [Item(["a", "b"], ["a", "b"], {"ratio": r, "UID": "wug_adj"}, r) for r in ratios]
    options = np.array([[-1.0, -2.0], [-3.0, -1.0], [-2.0, -2.5], [-1.5, -1.0], [-4.0, -0.5]])
    p_first = [1 / (1 + math.exp(b - a)) for a, b in options]
    want = np.corrcoef(rankdata(p_first), rankdata(ratios))[0, 1]
    r = metrics.evaluate_temperature("wug_adj", items, options)
    assert r["average"] == pytest.approx(want) and r["probs"] == pytest.approx(p_first)
    preds = metrics.predictions("wug_adj", items, r)["wug_adj"]["predictions"]
    assert preds[1] == {"id": "wug_adj_1", "pred": "b", "prob": pytest.approx(p_first[1])}


def test_temperature_sweep_picks_the_first_best():
    assert scoring.temperatures(1.0) == [1.0]
    sweep = scoring.temperatures(1.0, 1.1, 0.05)  # float32 arange(1.0, 1.15, 0.05), as official: 1.15 included
    assert sweep == pytest.approx([1.0, 1.05, 1.1, 1.15])
    assert metrics.best_temperature([{"average": 1}, {"average": 3}, {"average": 3}, {"average": math.nan}]) == 1


def test_reading_regression_on_a_toy_frame():
    rng = np.random.default_rng(0)
    n = 400
    cols = {k: rng.normal(size=n) for k in (*reading.BASE, "prev_length", "prev_pred", "pred")}
    noise = rng.normal(size=n)
    cols["RTfirstfix"] = 2 * cols["length"] + 3 * cols["pred"] + noise
    fit = reading.fit(cols, "RTfirstfix", reading.BASE)
    # surprisal explains 3^2 / (3^2 + 1) of what the baseline leaves: the gain is close to 0.9
    assert fit["gain"] == pytest.approx(0.9, abs=0.03)
    assert fit["Coefficient"] == pytest.approx(3, abs=0.15) and fit["P-value"] < 1e-10
    x = reading.design(cols, reading.BASE, "pred")
    assert x.shape == (n, 1 + 3 + 3 + 1)  # intercept, main effects, pairwise interactions, surprisal
    beta = np.linalg.solve(x.T @ x, x.T @ cols["RTfirstfix"])  # the normal equations, independently
    resid = cols["RTfirstfix"] - x @ beta
    se = math.sqrt(resid @ resid / (n - x.shape[1]) * np.linalg.inv(x.T @ x)[-1, -1])
    assert fit["Number of standard deviations"] == pytest.approx(beta[-1] / se, rel=1e-6)


def test_reading_contexts_follow_the_official_multi_token_rule(debug_model_dir):
    tok = load_offsets_tokenizer(debug_model_dir)
    word = "chocolateness"
    target = tok(word, add_special_tokens=False)["input_ids"]
    reqs = reading.word_requests(tok, "Arthur ate", word)
    assert len(reqs) == len(target) > 1 and reqs[0] == ("Arthur ate", target[0])
    assert reqs[1][0] == "Arthur ate" + tok.decode(target[0])


def test_suite_end_to_end_and_official_layout(tmp_path, eval_data, debug_model_dir):
    doc = evaluate_zero_shot([debug_model_dir], Settings(str(eval_data), tasks=TASKS), progress=False)
    system = doc["systems"][0]
    assert set(system["tasks"]) == {"blimp", "supplement", "ewok", "entity_tracking", "wug_adj"}
    assert set(doc["skipped"]) == {"wug_past", "comps", "reading"}
    assert system["macro_tasks"] == ["blimp", "supplement", "ewok", "entity_tracking"]
    assert system["tasks"]["ewok"]["subtasks"].keys() == {"physical-relations", "social-relations"}
    write_official(doc, tmp_path, "main")
    base = tmp_path / Path(debug_model_dir).stem / "main" / "zero_shot" / "causal"
    preds = json.loads((base / "ewok" / "ewok_fast" / "predictions.json").read_text())
    assert [p["id"] for p in preds["physical-relations"]["predictions"]] == ["physical-relations_0",
                                                                            "physical-relations_1"]
    report = (base / "blimp" / "blimp_fast" / "best_temperature_report.txt").read_text().splitlines()
    assert report[:4] == ["TEMPERATURE: 1.00", "", "### FIELD ACCURACY", report[3]]
    assert "### AVERAGE ACCURACY" in report


@needs_shared
def test_ewok_zip_is_read_in_memory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    zip_path = SHARED / "fast_eval" / "ewok_fast.zip"
    data = load_task("ewok", zip_path, "ewok_fast", password="BabyLM2025", limit=2)
    assert len(data.items) == 22 and not any(tmp_path.iterdir())  # 11 domains x 2, nothing unpacked
    with zipfile.ZipFile(zip_path) as z:
        assert all(i.flag_bits & 1 for i in z.infolist() if i.filename.endswith(".jsonl"))  # still encrypted


@needs_shared
def test_wrong_zip_password(debug_model_dir):
    assert_user_error(run_cli("eval", "ewok", debug_model_dir, "--data-dir", SHARED, "--zip-password", "wrong"),
                      "cannot decrypt")
    assert_user_error(run_cli("eval", "ewok", debug_model_dir, "--data-dir", SHARED), "--zip-password")


def test_bad_input_is_one_line(tmp_path, eval_data, debug_model_dir):
    out = tmp_path / "res.json"
    assert_user_error(run_cli("eval", "zero-shot", debug_model_dir, "--data-dir", tmp_path / "none"), "not found")
    empty = tmp_path / "empty"
    write_jsonl(empty / "fast_eval" / "blimp_fast" / "x.jsonl", [])
    assert_user_error(run_cli("eval", "zero-shot", debug_model_dir, "--data-dir", empty, "--tasks", "blimp"),
                      "empty")
    wrong = tmp_path / "wrong"
    write_jsonl(wrong / "fast_eval" / "entity_tracking_fast" / "regular.jsonl", [{"sentence": "no options"}])
    assert_user_error(run_cli("eval", "entity-tracking", debug_model_dir, "--data-dir", wrong, "--out", out),
                      "line 1", "entity_tracking")
    assert not out.exists()
    assert_user_error(run_cli("eval", "zero-shot", debug_model_dir, "--data-dir", eval_data, "--tasks", "nope"),
                      "unknown task")
    absent = run_cli("eval", "wug", debug_model_dir, "--data-dir", eval_data, "--out", out)
    assert absent.exit_code == 0, absent.stderr
    assert "skip wug_past" in absent.stdout and json.loads(out.read_text())["skipped"]["wug_past"]


def test_results_recorded_in_the_run_dir_and_its_card(tmp_path, eval_data, data_dir):
    from bl2.distill.config import TrainConfig
    from bl2.distill.run import pretrain

    run = tmp_path / "run"
    pretrain(TrainConfig(preset="debug", batch_size=4, max_steps=2, val_every_steps=100, log_every_steps=1,
                         ckpt_every_steps=100, eval_batch_size=8), data_dir, run, device="cpu")
    out = tmp_path / "zs.json"
    result = run_cli("eval", "zero-shot", run, "--data-dir", eval_data, "--tasks", "blimp,wug_adj", "--out", out)
    assert result.exit_code == 0, result.stderr
    doc = json.loads(out.read_text())
    entry = json.loads((run / "evals.json").read_text())["zero_shot"]["fast"]
    assert entry["tasks"]["blimp"]["score"] == doc["systems"][0]["tasks"]["blimp"]["score"]
    assert entry["file"] == "zs.json" and entry["macro_tasks"] == ["blimp"]  # a name, never a local path
    card = (run / "README.md").read_text()
    assert "| blimp (fast set) |" in card and "rho" in card.split("| wug_adj (fast set) |")[1].splitlines()[0]


def test_report_to_logs_the_scores_into_the_runs_sinks(tmp_path, eval_data, data_dir):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from bl2.distill.config import TrainConfig
    from bl2.distill.run import pretrain

    run = tmp_path / "run"
    pretrain(TrainConfig(preset="debug", batch_size=4, max_steps=2, val_every_steps=100, log_every_steps=1,
                         ckpt_every_steps=100, eval_batch_size=8), data_dir, run, device="cpu")
    out = tmp_path / "zs.json"
    result = run_cli("eval", "zero-shot", run, "--data-dir", eval_data, "--tasks", "blimp", "--out", out,
                     "--report-to", "tensorboard")
    assert result.exit_code == 0, result.stderr
    score = json.loads(out.read_text())["systems"][0]["tasks"]["blimp"]["score"]
    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    got = [(e.step, e.value) for e in acc.Scalars("eval/zero_shot/fast/tasks/blimp/score")]
    assert got == [(2, pytest.approx(score, rel=1e-6))]  # at the run's last step
