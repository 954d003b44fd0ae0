"""bl2 quickstart end to end, scaled down (debug preset, a small built-in corpus, a few steps)."""

from __future__ import annotations

import json

import pytest
from conftest import assert_user_error, run_cli

pytestmark = pytest.mark.slow  # the whole pipeline


def test_quickstart_end_to_end(tmp_path):
    from bl2.workflows.quickstart import QuickstartConfig, quickstart

    out = tmp_path / "qs"
    report = quickstart(QuickstartConfig(out=out, preset="debug", vocab_size=400, sample_lines=1500, epochs=1,
                                         batch_size=8, max_steps=4, k=8, eval_limit=20, device="cpu",
                                         extra={"warmup_steps": 1, "log_every_steps": 2}))
    assert [r["model"].split()[0] for r in report["rows"]] == ["teacher0", "teacher1", "ensemble", "student"]
    for r in report["rows"]:
        assert 0 < r["test_ce"] < 10 and 0 <= r["minimal_pairs_pct"]["blimp_filtered"] <= 100
    saved = json.loads((out / "quickstart.json").read_text())
    assert saved["student_beats_best_teacher"] == report["student_beats_best_teacher"]
    assert saved["paths"]["report"] == str(out / "report" / "report.md")
    for p in ("data/tokens.zarr", "runs/teacher0/model.safetensors", "runs/teacher1/run.json", "cache.zarr/zarr.json",
              "runs/student/model.safetensors", "sample/blimp_filtered", "eval/loss_teachers.json",
              "report/report.md", "report/fig1_metrics.png", "report/caches.svg"):
        assert (out / p).exists(), p
    # #32.3: every model it evaluated has its results in evals.json and its card; the caption claims an effect only
    # beyond the seed noise of the two teachers; the pairs are named for what they are; the budget is stated
    for run in ("teacher0", "teacher1", "student"):
        card = (out / "runs" / run / "README.md").read_text()
        evals = json.loads((out / "runs" / run / "evals.json").read_text())
        assert "Not evaluated yet" not in card and "| test loss |" in card
        assert "| built-in synthetic pairs (not BLiMP) blimp_filtered |" in card
        assert set(evals) == {"loss", "blimp"} and evals["blimp"]["blimp_filtered"]["label"].startswith("built-in")
        # #32.4: nothing local and absolute in what is published with the model
        assert str(tmp_path) not in card and str(tmp_path) not in json.dumps(evals), run
    effect = saved["effect"]
    assert effect["seed_noise"] == pytest.approx(abs(report["rows"][0]["test_ce"] - report["rows"][1]["test_ce"]))
    assert saved["student_beats_best_teacher"] == (effect["gap"] > effect["seed_noise"])
    assert "seed noise" in saved["caption"] and saved["minimal_pairs"] == "built-in synthetic pairs (not BLiMP)"
    assert "budget: the student and its teachers used" in saved["budget_note"]
    assert "sample data" in saved["timings_s"]
    from bl2.cache.reader import CacheReader

    assert CacheReader(str(out / "cache.zarr")).n_windows == 4 * 8  # --max-steps 4 x batch 8: what the student reads
    assert_user_error(run_cli("quickstart", "--out", out), "already exists")


@pytest.mark.parametrize(("t0", "t1", "student", "established", "words"), [
    (5.0, 5.2, 4.5, True, "beats both teachers by more than the seed noise"),
    (5.0, 5.4, 4.8, False, "within the seed noise: the effect is not established"),
    (5.0, 5.01, 5.3, False, "worse than the best teacher"),
])
def test_effect_is_claimed_only_beyond_the_seed_noise(t0, t1, student, established, words):
    from bl2.workflows.quickstart import effect_verdict

    verdict = effect_verdict(t0, t1, student)
    assert verdict["established"] is established and words in verdict["text"]


def test_quickstart_real_data_needs_all_three(tmp_path):
    assert_user_error(run_cli("quickstart", "--out", tmp_path / "q", "--corpus", tmp_path), "--blimp-dir")
