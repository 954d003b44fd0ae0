"""bl2 sweep: a 6-trial teacher study (pruning, the best trial, trial dirs, rerun), a killed worker and its rerun,
two workers on one SQLite study, a student sweep that never loads a teacher, confirm, status, the space file's
refusals; and the two config fields sweeps added (lr_schedule, attention_dropout)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import assert_user_error, imports_torch, make_debug_model, run_cli, slow_bl2

from bl2.distill.config import TrainConfig
from bl2.errors import UserError
from bl2.runs import metrics

pytest.importorskip("optuna")

# 12 steps, validations every 3: one Hyperband bracket (max_resource 13 < eta * min_resource), rung at step 6
FIXED = ["--preset", "debug", "--max-steps", "12", "--batch-size", "8", "--val-every-steps", "3",
         "--log-every-steps", "4", "--device", "cpu", "--eta", "3", "--min-resource-steps", "6"]
LR_SPACE = "lr: {log_uniform: [1e-5, 3.0e-2]}\nwarmup: {int: [0, 4]}\n"  # 1e-5 without a dot: YAML reads a string


def base_cfg(**kw) -> TrainConfig:
    return TrainConfig(**(dict(preset="debug", max_steps=12, batch_size=8, val_every_steps=3, log_every_steps=4) | kw))


def teacher_sweep(study: Path, space: Path, data_dir: Path, trials: int, **kw) -> dict:
    from bl2.workflows.sweep.worker import SweepConfig, run_sweep

    return run_sweep(SweepConfig(kind="teachers", study=study, space=space, trials=trials, base=base_cfg(),
                                 data=str(data_dir), eta=3, min_resource=6, device="cpu", **kw))


def finished_trials(study: Path) -> list:
    from bl2.workflows.sweep.worker import load_study

    return load_study(study)[1].get_trials(deepcopy=False)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def study(tmp_path_factory, data_dir) -> Path:
    """A finished 6-trial teacher study (the folder's name fixes the study name, so Hyperband's brackets)."""
    root = tmp_path_factory.mktemp("sweep")
    space = write(root / "space.yaml", LR_SPACE)
    teacher_sweep(root / "study", space, data_dir, trials=6)
    return root / "study"


def test_six_trials_prune_and_keep_the_best(study, data_dir):
    from bl2.workflows.sweep.results import trial_rows
    from bl2.workflows.sweep.worker import load_study

    rows = trial_rows(load_study(study)[1])
    states = [r["state"] for r in rows]
    assert len(rows) == 6 and states.count("complete") + states.count("pruned") == 6, states
    assert states.count("pruned") >= 1 and states.count("complete") >= 2, states
    complete = {r["trial"]: r["value"] for r in rows if r["state"] == "complete"}
    status = run_cli("sweep", "status", study, "--out", study.parent / "status.json")
    assert status.exit_code == 0, status.stderr
    best = json.loads((study.parent / "status.json").read_text())["best"]
    assert best["value"] == min(complete.values()) and complete[best["trial"]] == best["value"]
    for r in rows:  # every trial is an ordinary run dir: HF model files, run.json with the sweep entry, no checkpoints
        run_dir = study / "trials" / f"trial-{r['trial']:04d}"
        run = json.loads((run_dir / "run.json").read_text())
        assert run["sweep"] == {"study": str(study.resolve()), "trial": r["trial"], "params": r["params"],
                                "kind": "teachers"}
        assert run["config"]["lr"] == r["params"]["lr"] and run["config"]["warmup_steps"] == r["params"]["warmup_steps"]
        assert (run_dir / "model.safetensors").is_file() and not (run_dir / "checkpoints").exists()
        done = metrics.events(run_dir / "metrics.jsonl", "done")[-1]
        if r["state"] == "complete":  # Optuna's value is the run's best val CE (its final weights)
            assert done["best_val_ce"] == pytest.approx(r["value"]) and done["stopped"] is None
        else:
            assert done["stopped"] == "pruned" and r["step"] < 12
    # rerunning the command finds the study finished: no new trial
    assert teacher_sweep(study, study.parent / "space.yaml", data_dir, trials=6)["finished"] == 6
    assert len(finished_trials(study)) == 6


def test_rerun_with_other_settings_is_refused(study, data_dir, tmp_path):
    other = write(tmp_path / "other.yaml", "lr: {log_uniform: [1.0e-4, 1.0e-3]}\n")
    with pytest.raises(UserError, match=r"other settings \(the space \(--space\) differs in lr, warmup_steps\)"):
        teacher_sweep(study, other, data_dir, trials=6)
    from bl2.workflows.sweep.worker import SweepConfig, run_sweep

    with pytest.raises(UserError, match=r"--lr 0.005 \(the study: 0.003\); --max-steps 10 \(the study: 12\)"):
        run_sweep(SweepConfig(kind="teachers", study=study, space=study.parent / "space.yaml", trials=6,
                              base=base_cfg(lr=5e-3, max_steps=10), data=str(data_dir), eta=3, min_resource=6,
                              device="cpu"))


def test_settings_diff_names_the_options():
    from bl2.workflows.sweep.show import settings_diff

    old = {"kind": "teachers", "fixed": {"lr": 3e-4, "seed": 0}, "data": "DATA", "pruner": {"reduction_factor": 3}}
    new = {"kind": "teachers", "fixed": {"lr": 1e-3, "seed": 0}, "data": "DATA2", "pruner": {"reduction_factor": 2}}
    assert settings_diff(old, new) == ["--data DATA2 (the study: DATA)", "--lr 0.001 (the study: 0.0003)",
                                       "--eta 2 (the study: 3)"]


def test_a_finished_study_prints_its_best_parameters_rounded(study, data_dir, capsys):
    teacher_sweep(study, study.parent / "space.yaml", data_dir, trials=6)
    out = capsys.readouterr().out
    table = out[out.index("best trial"):]
    assert "parameter" in table and "value" in table and re.search(r"│ lr\s+│\s+[\d.e-]+ │", table), table
    lr = re.search(r"│ lr\s+│\s+([\d.e-]+) │", table).group(1)
    assert len(lr.replace(".", "").replace("-", "").split("e")[0].lstrip("0")) <= 3  # 3 significant digits


def test_status_and_confirm(study, monkeypatch):
    from bl2.workflows.sweep.results import confirm

    result = confirm(study, seeds=2, device="cpu")
    assert [v["seed"] for v in result["seeds"]] == [1, 2] and result["trial"] == json.loads(
        (study / "confirm.json").read_text())["trial"]
    for v in result["seeds"]:
        run = json.loads((Path(v["run_dir"]) / "run.json").read_text())
        assert run["config"]["seed"] == v["seed"] and run["sweep_confirm"]["trial"] == result["trial"]
        assert "sweep" not in run  # confirmation runs are not trials
        assert run["config"]["lr"] == result["params"]["lr"]
    assert result["sd"] > 0 and abs(result["mean"] - sum(v["best_val_ce"] for v in result["seeds"]) / 2) < 1e-12

    import bl2.distill.loop as loop

    monkeypatch.setattr(loop, "train", lambda *a, **k: pytest.fail("finished seeds must not be retrained"))
    assert confirm(study, seeds=2, device="cpu")["mean"] == result["mean"]


def test_a_diverging_trial_fails_and_the_study_goes_on(tmp_path, data_dir):
    """A trial whose loss overflows (lr 1e30, enqueued first) fails with the divergence as its note; the worker
    goes on and the study still reaches --trials finished trials."""
    import optuna

    from bl2.workflows.sweep.results import trial_rows
    from bl2.workflows.sweep.worker import default_storage, load_study

    study = tmp_path / "study"
    study.mkdir()
    space = write(tmp_path / "space.yaml", "lr: {categorical: [1.0e30, 3.0e-3]}\nwarmup_steps: {int: [0, 0]}\n")
    created = optuna.create_study(study_name=study.name, storage=default_storage(study), direction="minimize")
    created.enqueue_trial({"lr": 1.0e30, "warmup_steps": 0})
    teacher_sweep(study, space, data_dir, trials=2)
    rows = trial_rows(load_study(study)[1])
    assert rows[0]["state"] == "failed" and "not finite" in rows[0]["note"], rows[0]
    assert sum(r["state"] in ("complete", "pruned") for r in rows) == 2


def test_status_never_imports_torch(study):
    torch, out = imports_torch("sweep", "status", study)
    assert not torch and "finished" in out, out


def start_worker(data_dir: Path, study: Path, space: Path, trials: int, sleep: float,
                 heartbeat: float = 1) -> subprocess.Popen:
    """`bl2 sweep teachers ...` in its own process group, every metrics row of a trial followed by `sleep` s."""
    cmd = [sys.executable, *slow_bl2(sleep), "sweep", "teachers", "--data", str(data_dir), "--space", str(space),
           "--trials", str(trials), "--study", str(study), "--heartbeat-s", str(heartbeat), *FIXED]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def wait_for_training(proc: subprocess.Popen, run_dir: Path, timeout: float = 120) -> None:
    """Until the worker has logged a train row in `run_dir` (it is mid-trial)."""
    rows = run_dir / "metrics.jsonl"
    deadline = time.time() + timeout
    while not metrics.read(rows, "train"):
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        assert time.time() < deadline, f"the worker never started training {run_dir}"
        time.sleep(0.2)


@pytest.mark.slow
def test_killed_worker_then_rerun(tmp_path, data_dir):
    """kill -9 of a worker mid-trial; the rerun fails the lost trial, retries its configuration and finishes the
    study with exactly --trials finished trials, none twice."""
    from optuna.trial import TrialState

    space = write(tmp_path / "space.yaml", LR_SPACE)
    study = tmp_path / "study"
    proc = start_worker(data_dir, study, space, 3, sleep=0.25)
    try:
        wait_for_training(proc, study / "trials" / "trial-0000")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    teacher_sweep(study, space, data_dir, trials=3, heartbeat=1)  # the rerun (here: in-process)
    trials = finished_trials(study)
    states = [t.state for t in trials]
    assert states.count(TrialState.COMPLETE) + states.count(TrialState.PRUNED) == 3
    assert [t.number for t in trials if t.state == TrialState.FAIL] == [0] and TrialState.RUNNING not in states
    retry = [t for t in trials if t.user_attrs.get("retry_of") == 0]
    assert len(retry) == 1 and retry[0].params == trials[0].params and retry[0].state.is_finished()
    assert len(trials) == 4 and sorted(p.name for p in (study / "trials").glob("trial-*")) == \
        [f"trial-{n:04d}" for n in range(4)]
    # the rerun's own samples are new (worker 1's sampler seed differs), not a replay of the lost trial's
    fresh = [t for t in trials if t.number > 0 and "retry_of" not in t.user_attrs]
    assert fresh and all(t.params != trials[0].params for t in fresh)


@pytest.mark.slow
def test_two_workers_share_one_sqlite_study(tmp_path, data_dir):
    """A worker process and this one, concurrently on one SQLite study: exactly --trials trials, both worked."""
    from optuna.trial import TrialState

    space = write(tmp_path / "space.yaml", LR_SPACE)
    study = tmp_path / "study"
    proc = start_worker(data_dir, study, space, 5, sleep=0.3, heartbeat=2)  # a loaded machine: no false "lost"
    try:
        wait_for_training(proc, study / "trials" / "trial-0000")
        teacher_sweep(study, space, data_dir, trials=5, heartbeat=2)
        assert proc.wait(timeout=120) == 0, proc.stderr.read()[-2000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    trials = finished_trials(study)
    assert len(trials) == 5 and all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    assert {t.user_attrs["worker"] for t in trials} == {0, 1}
    assert sorted(p.name for p in (study / "trials").glob("trial-*")) == [f"trial-{n:04d}" for n in range(5)]


@pytest.fixture(scope="module")
def cache(tmp_path_factory, data_dir) -> Path:
    """A topk cache (T grid 1, 2) of two untrained debug teachers, whose dirs are deleted afterwards."""
    root = tmp_path_factory.mktemp("student-sweep")
    teachers = [make_debug_model(root / f"t{s}", data_dir, seed=s) for s in (0, 1)]
    r = run_cli("cache-logits", "--data", data_dir, "--teachers", ",".join(map(str, teachers)), "--out",
                root / "c.zarr", "--k", "8", "--temperatures", "1,2", "--batch-size", "16", "--device", "cpu")
    assert r.exit_code == 0, r.stderr
    for t in teachers:
        shutil.rmtree(t)
    return root / "c.zarr"


def test_student_sweep_never_loads_a_teacher(tmp_path, cache, monkeypatch):
    import bl2.cache.reader as reader
    import bl2.model.ensemble as ensemble
    import bl2.model.io as io
    from bl2.workflows.sweep.worker import SweepConfig, run_sweep

    def refuse(*a, **k):
        raise AssertionError("a student sweep loaded a teacher")

    monkeypatch.setattr(ensemble, "Ensemble", refuse)
    monkeypatch.setattr(io, "load_model", refuse)
    decoded = []
    real = reader.CacheReader.read_all
    monkeypatch.setattr(reader.CacheReader, "read_all", lambda self: decoded.append(1) or real(self))
    space = write(tmp_path / "s.yaml", "alpha: {uniform: [0.0, 1.0]}\ntemperature: {categorical: cache}\n")
    study = tmp_path / "study"
    run_sweep(SweepConfig(kind="students", study=study, space=space, trials=3, cache=str(cache), device="cpu",
                          base=base_cfg(alpha=0.5)))
    assert decoded == [1]  # decoded once for every trial of the worker
    trials = finished_trials(study)
    assert len(trials) == 3 and {t.params["temperature"] for t in trials} <= {1.0, 2.0}
    run = json.loads((study / "trials" / "trial-0000" / "run.json").read_text())
    assert run["sweep"]["kind"] == "students" and run["identity"]["command"] == "distill"
    assert run["config"]["alpha"] == trials[0].params["alpha"]


def test_student_space_must_match_the_cache(tmp_path, cache):
    for text, fragment in [("temperature: {uniform: [1.0, 2.0]}\n", "offers only T in [1.0, 2.0]"),
                           ("temperature: {categorical: [1.0, 3.0]}\n", "T=3.0 is not in the cache's")]:
        space = write(tmp_path / "s.yaml", text)
        r = run_cli("sweep", "students", "--cache", cache, "--space", space, "--trials", "2", "--study",
                    tmp_path / "st", "--preset", "debug", "--device", "cpu")
        assert_user_error(r, fragment)


@pytest.mark.parametrize("text, fragment", [
    ("lrr: {uniform: [0.1, 0.2]}\n", "unknown parameter 'lrr'"),
    ("lr: {log_uniform: [0, 0.1]}\n", "log_uniform needs 0 < low"),
    ("lr: {uniform: [0.2, 0.1]}\n", "needs low < high"),
    ("lr: {normal: [0.1, 0.2]}\n", "expected exactly one of"),
    ("lr: {uniform: [0.1]}\n", "takes [low, high]"),
    ("warmup_steps: {uniform: [0, 10]}\n", "integer parameter"),
    ("warmup_steps: {int: [-5, 10]}\n", "warmup_steps: -5 is not allowed"),
    ("lr_schedule: {categorical: [cosine, exponential]}\n", "lr_schedule must be one of"),
    ("alpha: {uniform: [0.0, 1.0]}\n", "only student sweeps"),
    ("beta2: {uniform: [0.9, 1.0]}\n", "outside [0, 1)"),
    ("batch_size: {categorical: []}\n", "non-empty list"),
    ("lr: [0.1, 0.2]\n", "expected a mapping"),
])
def test_space_refusals(tmp_path, data_dir, text, fragment):
    space = write(tmp_path / "s.yaml", text)
    r = run_cli("sweep", "teachers", "--data", data_dir, "--space", space, "--trials", "2", "--study",
                tmp_path / "st", "--preset", "debug", "--device", "cpu")
    assert_user_error(r, fragment)
    assert not (tmp_path / "st").exists()  # nothing written before the space is checked


def test_shipped_spaces_load(tmp_path, monkeypatch):
    """By name from any folder (#32.8); a path still works; a warning when --max-steps ends inside the space's
    warm-up range."""
    from bl2.workflows.sweep.space import SHIPPED, load_space, space_warnings

    monkeypatch.chdir(tmp_path)  # not the repository
    teacher = load_space("teacher", TrainConfig(preset="tiny"), students=False)
    assert teacher.params == load_space(SHIPPED / "teacher.yaml", TrainConfig(preset="tiny"), students=False).params
    with pytest.raises(UserError, match=r"--space teachr: no such file, and not a space shipped with bl2 \(by name: "
                       r"finetune, student, teacher\)"):
        load_space("teachr", TrainConfig(preset="tiny"), students=False)
    [warning] = space_warnings(teacher, TrainConfig(preset="tiny", max_steps=100))
    assert "--max-steps 100 is shorter than the space's warm-up range (warmup_steps up to 500)" in warning
    assert space_warnings(teacher, TrainConfig(preset="tiny", max_steps=600)) == []
    assert space_warnings(teacher, TrainConfig(preset="tiny")) == []  # epochs: the length is not known here
    assert {"lr", "lr_schedule", "beta1", "beta2", "eps", "batch_size", "epochs", "warmup_steps", "weight_decay",
            "grad_clip", "attention_dropout"} == set(teacher.params)
    student = load_space("student", TrainConfig(preset="tiny"), students=True)
    assert {"alpha", "temperature"} <= set(student.params)
    cfg = teacher.apply(TrainConfig(preset="tiny"), {"beta1": 0.85, "beta2": 0.98, "lr_schedule": "linear"})
    assert cfg.betas == (0.85, 0.98) and cfg.lr_schedule == "linear"
    from bl2.eval.finetune.tasks import recipe
    from bl2.eval.finetune.train import Hyper
    from bl2.workflows.sweep.space import FINETUNE

    finetune = load_space("finetune", Hyper(**recipe("babylm2025", "rte")), students=False, vocab=FINETUNE)
    assert set(finetune.params) == {"lr", "batch_size", "epochs", "weight_decay", "schedule", "warmup_proportion"}


def test_without_optuna_one_line_error(monkeypatch, tmp_path, data_dir):
    monkeypatch.setitem(sys.modules, "optuna", None)
    r = run_cli("sweep", "status", tmp_path)
    assert_user_error(r, "pip install 'bl2[sweep]'")


def test_lr_schedules_and_attention_dropout(tmp_path, data_dir):
    from bl2.distill.loop import lr_at
    from bl2.distill.run import pretrain

    def lrs(schedule):
        c = TrainConfig(preset="debug", lr=1.0, warmup_steps=2, lr_schedule=schedule)
        return [lr_at(s, c, 12) for s in (0, 1, 2, 7, 12)]

    assert lrs("cosine") == pytest.approx([0, 0.5, 1.0, 0.5, 0.0])
    assert lrs("linear") == pytest.approx([0, 0.5, 1.0, 0.5, 0.0])
    linear, cosine = (TrainConfig(preset="debug", lr=1.0, warmup_steps=2, lr_schedule=s) for s in ("linear", "cosine"))
    assert [lr_at(s, linear, 12) for s in (4, 9)] == pytest.approx([0.8, 0.3])
    assert [lr_at(s, cosine, 12) for s in (4, 9)] == pytest.approx([0.9045085, 0.2061074])
    assert lrs("constant") == pytest.approx([0, 0.5, 1.0, 1.0, 1.0])
    # new fields at their defaults stay out of the identity (older run dirs still resume)
    assert "lr_schedule" not in TrainConfig(preset="debug").identity()
    assert TrainConfig(preset="debug", attention_dropout=0.1).identity()["attention_dropout"] == 0.1
    pretrain(base_cfg(max_steps=2, attention_dropout=0.25, lr_schedule="linear"), data_dir, tmp_path / "r",
             device="cpu")
    assert json.loads((tmp_path / "r" / "config.json").read_text())["attention_dropout"] == 0.25
