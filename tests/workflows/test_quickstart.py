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
    assert_user_error(run_cli("quickstart", "--out", out), "already exists")


def test_quickstart_real_data_needs_all_three(tmp_path):
    assert_user_error(run_cli("quickstart", "--out", tmp_path / "q", "--corpus", tmp_path), "--blimp-dir")
