"""`bl2 report` with `bl2 finetune` results: the "(Super)GLUE avg (fine-tuned)" column (results table, groups,
Figure 1), the per-task table (Table 5 analogue), results.json's "finetune" section, different task sets said
out loud, fine-tuning results of other models listed as left out, and fine-tuning task dirs under RUNS not taken
for models. The fine-tuning JSONs are written by hand (made-up scores) except in the last test, which runs
`bl2 finetune` once on a few rows to check the report reads what it really writes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import assert_user_error, run_cli

from bl2.distill.config import TrainConfig
from bl2.distill.run import pretrain
from bl2.workflows.report.finetune import AVG

METRIC = {"rte": "accuracy", "mrpc": "f1", "wsc": "accuracy", "cola": "mcc"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data_dir) -> dict:
    """RUNS/teacher0, teacher1 (2-step debug pretraining) and student0 (teacher0's copy, recorded as distilled
    from both: its group is "students (2 teachers)")."""
    root = tmp_path_factory.mktemp("report_ft")
    cfg = dict(preset="debug", batch_size=4, max_steps=2, val_every_steps=2, log_every_steps=1, ckpt_every_steps=100,
               eval_batch_size=16)
    teachers = [root / "runs" / f"teacher{s}" for s in (0, 1)]
    for s, t in enumerate(teachers):
        pretrain(TrainConfig(**(cfg | dict(seed=s))), data_dir, t, device="cpu")
    student = root / "runs" / "student0"
    shutil.copytree(teachers[0], student)
    info = json.loads((student / "run.json").read_text())
    info["identity"]["command"], info["config"]["alpha"] = "distill", 0.5
    info.setdefault("paths", {})["teachers"] = [str(t) for t in teachers]
    (student / "run.json").write_text(json.dumps(info))
    return dict(root=root, runs=root / "runs", teachers=teachers, student=student)


def task_result(model: Path | str, task: str, score: float, select: str = "last") -> dict:
    metrics = {"accuracy": score, "f1": score, "mcc": score} | {METRIC[task]: score}
    return {"task": task, "model": str(model), "metric": METRIC[task], "score": score, "metrics": metrics,
            "select": select, "selected_epoch": 3, "majority_baseline": 0.5, "head": "hf (AutoModel..., last)"}


def write_finetune(out: Path, model: Path | str, scores: dict[str, float], select: str = "last",
                   top: bool = True) -> None:
    """What `bl2 finetune --out OUT` writes: OUT/TASK/results.json per task (+ OUT/results.json when `top`)."""
    tasks = {t: task_result(model, t, s, select) for t, s in scores.items()}
    for t, r in tasks.items():
        (out / t).mkdir(parents=True, exist_ok=True)
        (out / t / "results.json").write_text(json.dumps(r))
    if top:
        doc = {"kind": "finetune", "model": str(model), "head": "hf", "tasks": tasks, "select": select,
               "average": sum(scores.values()) / len(scores), "recipe": "babylm2025"}
        (out / "results.json").write_text(json.dumps(doc))


def report(runs: dict, out: Path, *evals: Path) -> tuple[dict, str]:
    r = run_cli("report", runs["runs"], *[a for e in evals for a in ("--evals", e)], "--out", out)
    assert r.exit_code == 0, r.stderr + r.stdout
    return json.loads((out / "results.json").read_text()), (out / "report.md").read_text()


def row(text: str, label: str, after: str = "") -> list[str]:
    """The cells of `label`'s row in the first table after the heading `after`."""
    line = next(x for x in text.split(after, 1)[1].splitlines() if x.startswith(f"| {label} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_average_column_per_task_table_and_section(runs, tmp_path):
    evals = tmp_path / "evals"
    t0 = {"rte": 0.55, "mrpc": 0.70, "wsc": 0.40}
    s0 = {"rte": 0.60, "mrpc": 0.75, "wsc": 0.50}
    write_finetune(evals / "ft-teacher0", runs["teachers"][0], t0)
    write_finetune(evals / "ft-student0", "runs/student0", s0, top=False)  # per-task files only; path by its tail
    write_finetune(evals / "ft-other", "/elsewhere/other-model", {"rte": 0.9})  # not a run dir of the report
    doc, text = report(runs, tmp_path / "rep", evals)
    models = {m["label"]: m for m in doc["models"]}
    avg_t0, avg_s0 = 100 * sum(t0.values()) / 3, 100 * sum(s0.values()) / 3
    assert models["teacher0"]["metrics"][AVG] == pytest.approx(avg_t0)
    assert models["student0"]["metrics"][AVG] == pytest.approx(avg_s0)
    assert AVG not in models["teacher1"]["metrics"]  # not fine-tuned: a gap
    header = next(x for x in text.splitlines() if x.startswith("| model | group |"))
    assert header.split(" | ")[-4] == AVG  # the last metric column, before parameters
    assert f"{avg_t0:.2f}" in row(text, "teacher0", "## Results") and "–" in row(text, "teacher1", "## Results")
    assert f"`{AVG}`: avg of mrpc, rte, wsc; model selection: last epoch" in text
    # the per-task table: tasks in a fixed order, each named with its headline metric
    table = text.split("## Fine-tuning: (Super)GLUE per task")[1]
    assert "| model | group | MRPC (F1) | RTE (acc.) | WSC (acc.) | average |" in table
    assert row(text, "student0", "## Fine-tuning")[2:] == ["75.00", "60.00", "50.00", f"{avg_s0:.2f}"]
    assert "teacher1" not in table.split("##")[0]
    sec = doc["finetune"]
    assert sec["tasks"] == ["mrpc", "rte", "wsc"] and sec["metrics"]["mrpc"] == "f1" and sec["same_tasks"]
    by = {d["label"]: d for d in sec["models"]}
    assert by["teacher0"]["scores"] == pytest.approx({t: 100 * s for t, s in t0.items()})
    assert by["student0"]["average"] == pytest.approx(avg_s0) and by["student0"]["select"] == ["last"]
    students = next(g for g in doc["groups"] if g["group"] == "students (2 teachers)")
    assert students["metrics"][AVG]["mean"] == pytest.approx(avg_s0)
    # OUT/results.json stands for its per-task files; the other model's results are left out, named
    evals_listed = text.split("Evaluation files:")[1].split("Evaluations of models")[0]
    assert "ft-teacher0/results.json" in evals_listed and "ft-teacher0/rte" not in evals_listed
    assert "ft-student0/rte/results.json" in evals_listed and "ft-other" not in evals_listed
    left_out = text.split("(left out):")[1]
    assert "ft-other/results.json: /elsewhere/other-model (fine-tuned: rte)" in left_out
    assert (tmp_path / "rep" / "fig1_metrics.png").stat().st_size > 1000


def test_no_finetune_results_no_column(runs, tmp_path):
    doc, text = report(runs, tmp_path / "rep")
    assert doc["finetune"] is None and AVG not in doc["metrics"] and "Fine-tuning" not in text


def test_different_task_sets_and_rules_are_said(runs, tmp_path):
    evals = tmp_path / "evals"
    write_finetune(evals / "a", runs["teachers"][0], {"rte": 0.5, "mrpc": 0.7})
    write_finetune(evals / "b", runs["student"], {"rte": 0.8}, select="best")
    write_finetune(evals / "c", runs["student"], {"rte": 0.1})  # rte again: first file kept, the other named
    trial = evals / "study" / "trials" / "trial-0000"  # a `bl2 sweep finetune` trial: a search, not a score
    write_finetune(trial.parent, runs["teachers"][0], {"rte": 0.99}, top=False)
    (trial.parent / "rte").rename(trial)
    (trial / "run.json").write_text(json.dumps({"bl2_run": 1, "kind": "finetune", "sweep": {"trial": 0}}))
    r = run_cli("report", runs["runs"], "--evals", evals, "--out", tmp_path / "rep")
    assert r.exit_code == 0, r.stderr
    assert "skipped 1 fine-tuning result(s) of `bl2 sweep finetune` trials" in r.stdout
    doc = json.loads((tmp_path / "rep" / "results.json").read_text())
    text = (tmp_path / "rep" / "report.md").read_text()
    sec = doc["finetune"]
    assert not sec["same_tasks"] and sec["select"] == ["best", "last"]
    assert "DIFFER between models (not comparable): teacher0: mrpc, rte; student0: rte" in text
    assert "model selection DIFFERS between models: teacher0: last; student0: best" in text
    assert row(text, "student0", "## Results")[-4] == "80.00 (1 task)"
    assert "student0: rte fine-tuned again in" in text and str(evals / "c" / "results.json") in text
    assert {d["label"]: d["average"] for d in sec["models"]} == pytest.approx({"teacher0": 60.0, "student0": 80.0})
    assert "trial-0000" not in text


def test_figure1_panel_names_the_tasks_and_rule():
    import matplotlib

    from bl2.workflows.report.figures import fig1, group_styles
    from bl2.workflows.report.inputs import Model

    rows = []
    for label, score in (("a", 60.0), ("b", 70.0)):
        m = Model(label, label, label, "student", "students")
        m.finetune = {t: {"metric": METRIC[t], "score": score, "select": "last", "head": "hf", "recipe": None,
                          "file": "x", "also": []} for t in ("rte", "cola")}
        m.metrics[AVG] = score
        rows.append(m)
    with matplotlib.rc_context({"svg.hashsalt": "x"}):
        titles = [ax.get_title() for ax in fig1(rows, group_styles(rows)).axes if ax.get_visible()]
    assert titles == [f"{AVG}\n(cola, rte; last epoch)"]


def test_finetune_task_dirs_under_runs_are_not_models(runs, tmp_path):
    """A real `bl2 finetune` (8 rows, 1 epoch) written under RUNS: its task dir (run.json of kind finetune) is
    skipped as a model, and its results, given with --evals, are the teacher's column."""
    data = tmp_path / "glue"
    data.mkdir()
    for split in ("train", "valid"):
        (data / f"rte.{split}.jsonl").write_text("".join(json.dumps(
            {"sentence1": f"the cat {i} sat", "sentence2": "yes" if i % 2 else "no", "label": i % 2, "idx": i})
            + "\n" for i in range(8)))
    local = tmp_path / "runs"
    shutil.copytree(runs["runs"], local)
    ft = local / "teacher0" / "finetune"  # inside a run dir: the report must not find a model in it
    r = run_cli("finetune", local / "teacher0", "--task", "rte", "--data-dir", data, "--out", ft, "--epochs", "1",
                "--batch-size", "4", "--device", "cpu")
    assert r.exit_code == 0, r.stderr
    score = json.loads((ft / "results.json").read_text())["tasks"]["rte"]["score"]
    out = tmp_path / "rep"
    r = run_cli("report", local, "--evals", ft, "--out", out)
    assert r.exit_code == 0, r.stderr
    assert "skipped 1 fine-tuning task dir" in r.stdout
    doc = json.loads((out / "results.json").read_text())
    assert sorted(m["label"] for m in doc["models"]) == ["student0", "teacher0", "teacher1"]
    teacher0 = next(m for m in doc["models"] if m["label"] == "teacher0")
    assert teacher0["metrics"][AVG] == pytest.approx(100 * score)
    assert_user_error(run_cli("report", ft / "rte", "--out", tmp_path / "rep2"), "outputs, not models", "--evals")
