"""bl2 sweep finetune: a 3-trial study on a made-up RTE-shaped task (each trial a `bl2 finetune` run dir, its
value 1 - the task's metric, one Hyperband report per epoch), status, confirm with rounded values and new seeds,
and the space's refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import assert_user_error, run_cli

pytest.importorskip("optuna")


def write_rte(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"sentence1": f"the cat number {i} sat here", "sentence2": "answer yes" if i % 2 else "answer no",
             "label": i % 2, "idx": i} for i in range(n)]
    for split in ("train", "valid"):
        (folder / f"rte.{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def sweep(model, data, space, study, *extra):
    return run_cli("sweep", "finetune", model, "--task", "rte", "--data-dir", data, "--space", space, "--trials", "3",
                   "--study", study, "--startup-trials", "3", "--max-train-examples", "32", "--device", "cpu",
                   "--heartbeat-s", "5", *extra)


def test_a_finetune_sweep_its_status_and_confirm(tmp_path, debug_model_dir):
    from bl2.workflows.sweep.worker import load_study

    data = write_rte(tmp_path / "glue", 32)
    space = tmp_path / "space.yaml"
    space.write_text("lr: {log_uniform: [1.0e-3, 1.0e-2]}\nepochs: {int: [1, 3]}\nbatch_size: {categorical: [8, 16]}\n")
    study = tmp_path / "study"
    r = sweep(debug_model_dir, data, space, study)
    assert r.exit_code == 0, r.stderr
    meta, s = load_study(study)
    assert meta["settings"]["kind"] == "finetune" and meta["settings"]["fixed"]["task"] == "rte"
    trials = s.get_trials()
    assert len(trials) == 3 and all(t.state.name in ("COMPLETE", "PRUNED") for t in trials)
    for t in trials:
        out = study / "trials" / f"trial-{t.number:04d}"
        run = json.loads((out / "run.json").read_text())
        assert run["kind"] == "finetune" and run["sweep"]["trial"] == t.number
        assert run["hyper"]["lr"] == pytest.approx(t.params["lr"]) and run["hyper"]["epochs"] == t.params["epochs"]
        val = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if '"val"' in line]
        assert sorted(t.intermediate_values) == [row["epoch"] for row in val]  # one report per epoch
        assert t.intermediate_values[1] == pytest.approx(1 - val[0]["accuracy"])
        if t.state.name == "COMPLETE":
            score = json.loads((out / "results.json").read_text())["score"]
            assert t.value == pytest.approx(1 - score)

    status = run_cli("sweep", "status", study)
    assert status.exit_code == 0 and "val error" in status.stdout

    conf = run_cli("sweep", "confirm", study, "--seeds", "2", "--device", "cpu")
    assert conf.exit_code == 0, conf.stderr
    doc = json.loads((study / "confirm.json").read_text())
    best = min((t for t in trials if t.state.name == "COMPLETE"), key=lambda t: (t.value, t.number))
    assert doc["trial"] == best.number and [v["seed"] for v in doc["seeds"]] == [43, 44]  # recipe seed 42 + 1, + 2
    assert doc["rounded_params"]["lr"] == float(f"{best.params['lr']:.2g}")
    first = study / "confirm" / f"trial-{best.number:04d}-seed-43"
    assert json.loads((first / "run.json").read_text())["hyper"]["lr"] == doc["rounded_params"]["lr"]
    assert doc["mean"] == pytest.approx(sum(v["score"] for v in doc["seeds"]) / 2)


def test_finetune_space_refusals(tmp_path, debug_model_dir):
    data = write_rte(tmp_path / "glue", 8)
    bad = tmp_path / "bad.yaml"
    bad.write_text("alpha: {uniform: [0.1, 0.9]}\n")
    assert_user_error(sweep(debug_model_dir, data, bad, tmp_path / "s1"), "alpha")
    bad.write_text("warmup_proportion: {uniform: [0.0, 1.5]}\n")
    assert_user_error(sweep(debug_model_dir, data, bad, tmp_path / "s2"), "warmup_proportion", "1.5")
    bad.write_text("lr: {log_uniform: [1.0e-4, 1.0e-3]}\n")
    assert_user_error(sweep(debug_model_dir, data, bad, tmp_path / "s3", "--recipe", "paper"), "not available offline")
    r = run_cli("sweep", "finetune", debug_model_dir, "--task", "boolq", "--data-dir", data, "--space", "finetune",
                "--trials", "1", "--study", tmp_path / "s4", "--device", "cpu")
    assert_user_error(r, "boolq.train.jsonl")
    assert not (tmp_path / "s1").exists() and not (tmp_path / "s4").exists()
