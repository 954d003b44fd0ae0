"""bl2 report: every file from run dirs + evaluations + a cache + a sweep study; the numbers equal the JSON
inputs; roles; missing evaluations are gaps; bad inputs are one-line errors; same inputs, identical files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import assert_user_error, run_cli

from bl2.distill.config import TrainConfig
from bl2.distill.run import distill, pretrain

COMMON = dict(preset="debug", batch_size=8, warmup_steps=1, lr=1e-2, log_every_steps=2, val_every_steps=3,
              ckpt_every_steps=100, eval_batch_size=32, max_steps=6)
FIGURES = ("curves", "fig1_metrics", "fig2_blimp_vs_val_ce", "caches")


@pytest.fixture(scope="module")
def study(tmp_path_factory, data_dir) -> dict:
    """2 teachers, their topk cache, 3 students, 1 CE-only baseline, a sweep study with 1 trial, and
    eval loss / eval blimp JSONs of all but the trial (whose evaluation is missing on purpose)."""
    from bl2.data.sample import write_sample_pairs
    from bl2.eval.blimp import evaluate_blimp
    from bl2.eval.loss import evaluate_loss

    root = tmp_path_factory.mktemp("report")
    runs, evals = root / "runs", root / "evals"
    evals.mkdir()
    teachers = [runs / f"teacher{s}" for s in (0, 1)]
    for s, t in enumerate(teachers):
        pretrain(TrainConfig(**(COMMON | dict(seed=s))), data_dir, t, device="cpu")
    cache = root / "topk.zarr"
    r = run_cli("cache-logits", "--data", data_dir, "--teachers", f"{teachers[0]},{teachers[1]}", "--out", cache,
                "--k", "8", "--max-windows", "48", "--batch-size", "16", "--device", "cpu")
    assert r.exit_code == 0, r.stderr
    students = [runs / f"student{s}" for s in range(3)]
    for s, out in enumerate(students):
        distill(TrainConfig(**(COMMON | dict(seed=s, alpha=0.5))), out, cache=cache, device="cpu")
    baseline = runs / "baseline0"
    distill(TrainConfig(**(COMMON | dict(seed=0, alpha=1.0))), baseline, cache=cache, device="cpu")
    trial = root / "study-a" / "trial-0"  # what `bl2 sweep` writes: an ordinary run dir with a sweep record
    shutil.copytree(students[0], trial)
    info = json.loads((trial / "run.json").read_text())
    info["sweep"] = {"study": str(root / "study-a"), "trial": 0, "params": {"lr": 0.01}, "state": "complete"}
    (trial / "run.json").write_text(json.dumps(info))

    evaluate_loss(teachers, data_dir, device="cpu", out=evals / "loss_teachers.json")
    for m in students + [baseline]:
        evaluate_loss([m], data_dir, device="cpu", out=evals / f"loss_{m.name}.json")
    pairs = write_sample_pairs(root / "pairs")
    kw = dict(suite="filtered", limit=4, device="cpu", progress=False, show=False)
    evaluate_blimp(teachers, pairs, out=evals / "blimp_teachers.json", **kw)
    for m in students + [baseline]:
        evaluate_blimp([m], pairs, out=evals / "sub" / f"blimp_{m.name}.json", **kw)
    (evals / "notes.json").write_text('{"not": "an evaluation"}')  # ignored: not ours
    return dict(root=root, runs=runs, evals=evals, cache=cache, teachers=teachers, students=students,
                baseline=baseline, trial=trial, study=root / "study-a")


def make_report(study: dict, out: Path, *extra) -> dict:
    r = run_cli("report", study["runs"], study["study"], "--evals", study["evals"], "--cache", study["cache"],
                "--label", f"{study['baseline']}=CE only", "--out", out, *extra)
    assert r.exit_code == 0, r.stderr + r.stdout
    return json.loads((out / "results.json").read_text())


def test_every_file_roles_and_numbers_equal_the_inputs(study, tmp_path):
    out = tmp_path / "rep"
    doc = make_report(study, out)
    for stem in FIGURES:
        for ext in ("png", "svg"):
            assert (out / f"{stem}.{ext}").stat().st_size > 1000, (stem, ext)
    text = (out / "report.md").read_text()
    for stem in FIGURES:
        assert f"]({stem}.png)" in text
    models = {m["label"]: m for m in doc["models"]}
    assert {m["label"]: m["group"] for m in doc["models"]} == {
        "teacher0": "teachers", "teacher1": "teachers", "ensemble(teacher0+teacher1)": "direct ensemble",
        "student0": "students (2 teachers)", "student1": "students (2 teachers)", "student2": "students (2 teachers)",
        "CE only": "baselines (alpha 1)", "study-a/trial-0": "sweep study-a"}
    # the numbers are the evaluation JSONs' (the table shows them rounded)
    loss = json.loads((study["evals"] / "loss_teachers.json").read_text())["results"]
    blimp = json.loads((study["evals"] / "blimp_teachers.json").read_text())["results"]
    assert models["teacher1"]["metrics"]["test CE"] == loss[str(study["teachers"][1])]["ce"]
    assert models["ensemble(teacher0+teacher1)"]["metrics"]["test CE"] == loss["ensemble"]["ce"]
    # the built-in pairs are labelled as what they are (SYNTHETIC.md beside them), never "BLiMP filtered"
    assert models["ensemble(teacher0+teacher1)"]["metrics"]["Minimal pairs, synthetic (not BLiMP)"] == \
        100 * blimp[-1]["suites"]["blimp_filtered"]["score"]
    assert not any("BLiMP filtered" in m["metrics"] for m in doc["models"])
    for s in study["students"]:
        ce = json.loads((study["evals"] / f"loss_{s.name}.json").read_text())["results"][str(s)]["ce"]
        assert models[s.name]["metrics"]["test CE"] == ce
        row = next(line for line in text.splitlines() if line.startswith(f"| {s.name} |"))
        assert f"| {ce:.4f} |" in row
    students = next(g for g in doc["groups"] if g["group"] == "students (2 teachers)")
    ces = [models[s.name]["metrics"]["test CE"] for s in study["students"]]
    assert students["n"] == 3 and students["metrics"]["test CE"]["mean"] == pytest.approx(sum(ces) / 3)
    assert models["teacher0"]["n_params"] > 0 and models["teacher0"]["tokens_seen"] == 6 * 8 * 128
    assert doc["caches"][0]["mode"] == "topk" and doc["caches"][0]["bytes_per_token"] > 0
    fit = doc["fits"]["Minimal pairs, synthetic (not BLiMP)"]
    assert fit["n"] == 6  # 2 teachers, 3 students, the baseline: the ensemble has no val CE, the trial no BLiMP
    assert "R² = " in text


def test_missing_evaluations_are_gaps(study, tmp_path):
    out = tmp_path / "rep"
    r = run_cli("report", study["runs"], "--evals", study["evals"] / "loss_teachers.json", "--out", out)
    assert r.exit_code == 0, r.stderr
    assert not (out / "fig2_blimp_vs_val_ce.png").exists()  # no BLiMP data: no empty Figure 2 (#32.9)
    assert "Figure 2 is not drawn" in (out / "report.md").read_text()
    doc = json.loads((out / "results.json").read_text())
    models = {m["label"]: m for m in doc["models"]}
    assert set(models["student0"]["metrics"]) == {"val CE"} and "test CE" in models["teacher0"]["metrics"]
    assert "| student0 | students (2 teachers) | – |" in (out / "report.md").read_text()
    r = run_cli("report", study["students"][0], "--out", tmp_path / "bare")  # no evaluation, no cache at all
    assert r.exit_code == 0, r.stderr
    assert {p.name for p in (tmp_path / "bare").iterdir()} >= {"report.md", "fig1_metrics.svg", "curves.png"}


@pytest.mark.slow
def test_same_inputs_identical_files(study, tmp_path):
    make_report(study, tmp_path / "a")
    make_report(study, tmp_path / "b")
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir())
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_teacher_found_by_weights_hash(study, tmp_path):
    moved = tmp_path / "elsewhere" / "t1"
    shutil.copytree(study["teachers"][1], moved)  # not the path the cache recorded: the sha256 identifies it
    r = run_cli("report", moved, study["students"][0], study["baseline"], "--group", f"{study['baseline']}=controls",
                "--out", tmp_path / "rep")
    assert r.exit_code == 0, r.stderr
    groups = {m["label"]: m["group"] for m in json.loads((tmp_path / "rep" / "results.json").read_text())["models"]}
    assert groups == {"t1": "teachers", "student0": "students (2 teachers)", "baseline0": "controls"}


def test_online_student_and_its_teachers(study, data_dir, tmp_path):
    online = tmp_path / "online"
    distill(TrainConfig(**(COMMON | dict(seed=0, alpha=0.5, max_steps=2))), online, teachers=study["teachers"],
            data_dir=data_dir, device="cpu")
    r = run_cli("report", online, *study["teachers"], "--out", tmp_path / "rep")
    assert r.exit_code == 0, r.stderr
    groups = {m["label"]: m["group"] for m in json.loads((tmp_path / "rep" / "results.json").read_text())["models"]}
    assert groups == {"online": "students (2 teachers, online)", "teacher0": "teachers", "teacher1": "teachers"}


def test_bad_inputs_are_one_line_errors(study, tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "rep"
    assert_user_error(run_cli("report", empty, "--out", out), "no run dir")
    assert_user_error(run_cli("report", tmp_path / "nope", "--out", out), "no such run dir")
    assert_user_error(run_cli("report", study["runs"], "--evals", empty, "--out", out), "no evaluation JSON")
    assert_user_error(run_cli("report", study["runs"], "--label", "x=y", "--out", out), "not one of")
    assert_user_error(run_cli("report", study["runs"], "--label", "nolabel", "--out", out), "DIR=NAME")
    assert_user_error(run_cli("report", study["runs"], "--cache", empty, "--out", out), "cache")
    garbled = tmp_path / "garbled"
    garbled.mkdir()
    (garbled / "run.json").write_text("{not json")
    r = run_cli("report", garbled, "--out", out)
    assert_user_error(r, "none of the given run dirs could be read")
    assert "skipped" in r.stdout and "run.json is unreadable" in r.stdout  # the bad run is named
    assert not out.exists()  # nothing written before the inputs are checked
    r = run_cli("report", study["students"][0], garbled, "--out", out)  # several runs: the bad one is skipped
    assert r.exit_code == 0 and "skipped" in r.stdout, r.stdout + r.stderr
    shutil.rmtree(out)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    assert_user_error(run_cli("report", study["students"][0], "--out", tmp_path / "taken"), "already exists")
    assert_user_error(run_cli("report", study["students"][0], "--out", tmp_path / "taken", "--overwrite"),
                      "not a bl2 report folder")
    assert (tmp_path / "taken" / "keep.txt").read_text() == "mine"
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    assert_user_error(run_cli("report", study["students"][0], "--out", out), "bl2[report]")


def test_match_by_path_tail(study):
    from bl2.workflows.report.inputs import collect_runs, match_dir

    models = collect_runs([str(study["runs"])], {})
    assert match_dir("runs/student1", models) == str(study["students"][1].resolve())
    assert match_dir("student1", models) == str(study["students"][1].resolve())
    assert match_dir("other/student1", models) is None


def test_train_time_adds_the_segments_of_a_resumed_run():
    from bl2.workflows.report.inputs import train_seconds

    rows = [{"kind": "train", "step": 2, "elapsed_s": 4.0}, {"kind": "train", "step": 4, "elapsed_s": 10.0},
            {"kind": "event", "event": "resume", "step": 4}, {"kind": "train", "step": 6, "elapsed_s": 5.0},
            {"kind": "event", "event": "done", "step": 6, "train_s": 7.0}]
    assert train_seconds(rows) == 17.0
    assert train_seconds(rows[:4]) == 15.0  # still running: the last row so far
    assert train_seconds([]) is None


def test_zero_shot_columns_and_words_figure(study, tmp_path):
    """`bl2 eval zero-shot --out` JSONs: a column per task named after the set scored, the macro-average, the
    direct ensemble's row, and (from --all-revisions documents) the scores-vs-words figure."""
    from bl2.eval.zero_shot.suite import Settings, evaluate_zero_shot, public

    data = tmp_path / "evaluation_data" / "fast_eval"
    (data / "blimp_fast").mkdir(parents=True)
    (data / "blimp_fast" / "agr.jsonl").write_text("".join(json.dumps(
        {"sentence_good": f"The {n} sees.", "sentence_bad": f"The {n} see.", "field": "m", "UID": "agr",
         "linguistics_term": "a"}) + "\n" for n in ("dog", "cat", "boy")))
    settings = Settings(str(data.parent), tasks=("blimp", "ewok"))
    both = evaluate_zero_shot(study["teachers"], settings, progress=False)
    one = evaluate_zero_shot(study["teachers"][:1], settings, progress=False)
    evals = tmp_path / "zs"
    evals.mkdir()
    (evals / "zs.json").write_text(json.dumps(public(both)))
    (evals / "zs_revisions.json").write_text(json.dumps({"revisions": {"chck_1M": public(one),
                                                                      "chck_2M": public(one)}}))
    out = tmp_path / "rep"
    doc = make_report(study, out, "--evals", evals)
    models = {m["label"]: m for m in doc["models"]}
    teacher = both["systems"][0]["tasks"]["blimp"]["score"]
    assert models["teacher0"]["metrics"]["BLiMP fast (2025)"] == teacher
    assert models["teacher0"]["metrics"]["BabyLM macro fast (2025)"] == teacher  # the only accuracy task present
    ensemble = both["systems"][-1]["tasks"]["blimp"]["score"]
    assert models["ensemble(teacher0+teacher1)"]["metrics"]["BLiMP fast (2025)"] == ensemble
    assert "Minimal pairs, synthetic (not BLiMP)" in models["teacher0"]["metrics"]  # a column of its own
    text = (out / "report.md").read_text()
    assert "| BLiMP fast (2025) |" in text or "BLiMP fast (2025)" in text.split("## Groups")[0]
    assert "## BabyLM 2025 zero-shot suite" in text and "](zero_shot_vs_words.png)" in text
    assert (out / "zero_shot_vs_words.png").stat().st_size > 1000


def test_two_studies_confirm_runs_and_evaluations_of_other_runs(study, tmp_path):
    """#32.9: trials of two studies keep distinct labels; `sweep confirm` runs are the sweep's, not baselines;
    evaluation files about runs outside the report are left out of its counts; the legend of Figure 1 names only
    what is drawn."""
    root = tmp_path / "sweeps"
    for name in ("study-a", "study-b"):
        trial = root / name / "trials" / "trial-0000"
        shutil.copytree(study["students"][0], trial)
        info = json.loads((trial / "run.json").read_text())
        info["sweep"] = {"study": str(root / name), "trial": 0, "params": {"lr": 0.01}, "state": "complete"}
        (trial / "run.json").write_text(json.dumps(info))
    confirm = root / "study-a" / "confirm" / "trial-0000-seed-1"
    shutil.copytree(study["students"][1], confirm)
    info = json.loads((confirm / "run.json").read_text())
    info["sweep_confirm"] = {"study": str(root / "study-a"), "trial": 0, "params": {"lr": 0.01}, "seed": 1}
    (confirm / "run.json").write_text(json.dumps(info))
    out = tmp_path / "rep"
    r = run_cli("report", root, "--evals", study["evals"] / "loss_teachers.json", "--evals",
                study["evals"] / "sub", "--out", out)
    assert r.exit_code == 0, r.stderr
    doc = json.loads((out / "results.json").read_text())
    groups = {m["label"]: m["group"] for m in doc["models"]}
    assert groups == {"study-a/trial-0000": "sweep study-a", "study-b/trial-0000": "sweep study-b",
                      "study-a/trial-0000-seed-1": "sweep study-a: best config, new seeds"}
    text = (out / "report.md").read_text()
    assert "3 models (3 run dirs), 0 evaluation files (" in text  # teachers' and students' files: other runs
    assert "left out" in text and "loss_teachers.json" in text


def test_fig1_legend_names_only_what_is_drawn():
    import matplotlib

    from bl2.workflows.report.figures import fig1, group_styles
    from bl2.workflows.report.inputs import Model

    def model(label, group, ce):
        m = Model(label, label, label, "student", group)
        m.metrics["test CE"] = ce
        return m

    rows = [model("a", "one", 3.0), model("b", "two", 3.1), model("c", "two", 3.2)]  # no group of 3: no violin
    with matplotlib.rc_context({"svg.hashsalt": "x"}):
        legend = [t.get_text() for t in fig1(rows, group_styles(rows)).legends[0].get_texts()]
    assert legend == ["one model", "group mean ± sd"]
    rows += [model("d", "two", 3.4)]
    legend = [t.get_text() for t in fig1(rows, group_styles(rows)).legends[0].get_texts()]
    assert legend[0] == "distribution (groups of ≥ 3)"
