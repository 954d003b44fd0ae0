"""The Figure 3 analogue of `bl2 report`: runs of one preset on nested subsets (`bl2 prepare --max-words`) give
validation CE against training words, from the words their run.json records."""

from __future__ import annotations

import json

from conftest import run_cli

from bl2.distill.config import TrainConfig
from bl2.distill.run import pretrain


def test_figure3_from_runs_on_nested_subsets(tmp_path, corpus_dirs):
    corpus, dev = corpus_dirs
    runs = tmp_path / "runs"
    cfg = TrainConfig(preset="debug", batch_size=4, max_steps=3, val_every_steps=3, log_every_steps=1,
                      ckpt_every_steps=100, eval_batch_size=16)
    words = {}
    for size in ("2K", "6K"):
        data = tmp_path / f"data_{size}"
        r = run_cli("prepare", corpus, "--dev", dev, "--out", data, "--vocab-size", "400", "--max-words", size)
        assert r.exit_code == 0, r.stderr
        pretrain(cfg, data, runs / f"debug_{size}", device="cpu")
        words[size] = json.loads((runs / f"debug_{size}" / "run.json").read_text())["budget"]["train_words"]
    assert 2000 <= words["2K"] < words["6K"]
    out = tmp_path / "rep"
    r = run_cli("report", runs, "--out", out)
    assert r.exit_code == 0, r.stderr
    doc = json.loads((out / "results.json").read_text())
    assert [w for w, _ in doc["scaling"]["debug"]] == [words["2K"], words["6K"]]
    assert (out / "fig3_val_ce_vs_data.png").stat().st_size > 1000
    assert "## Figure 3 analogue" in (out / "report.md").read_text()
