"""--report-to: TensorBoard event files, a W&B offline run and an MLflow server (started here) hold exactly the
metrics.jsonl values; a missing package or an unknown sink is one line before training; resume continues the sink
runs; `bl2 eval loss --report-to` reaches the run's sinks."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import assert_user_error, run_cli, run_with_crash

from bl2.distill.config import TrainConfig
from bl2.runs import metrics, sinks

TRAIN_KEYS = ("ce", "lr", "tokens_per_s", "tokens_seen", "epoch")


def cfg(**kw) -> TrainConfig:
    return TrainConfig(**(dict(preset="debug", seed=0, batch_size=8, max_steps=6, warmup_steps=2, lr=3e-3,
                               log_every_steps=2, val_every_steps=3, ckpt_every_steps=2, eval_batch_size=32) | kw))


def expected(run_dir: Path) -> dict[str, dict[int, float]]:
    """tag -> {step: value} of metrics.jsonl, under the sinks' names."""
    from bl2.runs.sink_backends import scalars

    out: dict[str, dict[int, float]] = {}
    for row in metrics.read(run_dir / "metrics.jsonl"):
        if row["kind"] in ("train", "val"):
            for tag, v in scalars(row).items():
                out.setdefault(tag, {})[row["step"]] = v
    return out


def tb_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_equals_metrics_jsonl(tmp_path, data_dir):
    pytest.importorskip("tensorboard")
    from bl2.distill.run import pretrain

    out = tmp_path / "run"
    pretrain(cfg(report_to="tensorboard"), data_dir, out, device="cpu")
    want, got = expected(out), tb_scalars(out)
    assert {"train/ce", "train/lr", "train/grad_norm", "train/tokens_per_s", "val/val_ce"} <= set(want)
    for tag, by_step in want.items():
        assert [s for s, _ in got[tag]] == sorted(by_step), tag  # each step once, in order
        assert [v for _, v in got[tag]] == pytest.approx([by_step[s] for s in sorted(by_step)], rel=1e-6), tag
    done = metrics.events(out / "metrics.jsonl", "done")[0]
    assert got["final/best_val_ce"] == [(6, pytest.approx(done["best_val_ce"], rel=1e-6))]
    assert sinks.read_state(out) == {"tensorboard": {"dir": "tensorboard"}}


def test_distill_reports_ce_and_kl_separately(tmp_path, data_dir, debug_model_dir):
    pytest.importorskip("tensorboard")
    from bl2.distill.run import distill

    out = tmp_path / "student"
    distill(cfg(report_to="tensorboard", alpha=0.5, max_steps=4), out, teachers=[debug_model_dir],
            data_dir=data_dir, device="cpu")
    want, got = expected(out), tb_scalars(out)
    assert set(want["train/kl"]) == {2, 4}
    for tag in ("train/ce", "train/kl"):
        assert dict(got[tag]) == pytest.approx(want[tag], rel=1e-6), tag


def test_resume_continues_without_duplicate_steps(tmp_path, data_dir, monkeypatch):
    """A crash after step 4 (rows 1-4 logged) resumed from checkpoint 2: the resumed run logs steps 3 and 4 again,
    and TensorBoard (which drops the first process's events from step 3 on) reads every step once, equal to the
    resumed metrics.jsonl."""
    pytest.importorskip("tensorboard")
    from bl2.distill.run import pretrain

    out = tmp_path / "run"
    c = cfg(report_to="tensorboard", log_every_steps=1, ckpt_every_steps=2)
    run_with_crash(monkeypatch, lambda: pretrain(c, data_dir, out, device="cpu"), crash_step=4)
    shutil.rmtree(out / "checkpoints" / "step-000004")
    pretrain(c, data_dir, out, resume=True, device="cpu")
    assert len(list((out / "tensorboard").glob("events.out.tfevents.*"))) == 2
    want, got = expected(out), tb_scalars(out)
    assert [s for s, _ in got["train/ce"]] == [1, 2, 3, 4, 5, 6]
    assert [v for _, v in got["train/ce"]] == pytest.approx([want["train/ce"][s] for s in range(1, 7)], rel=1e-6)


def test_unknown_sink_or_missing_package_is_one_line_before_training(tmp_path, data_dir, monkeypatch):
    out = tmp_path / "run"
    base = ["pretrain", "--data", data_dir, "--preset", "debug", "--out", out, "--max-steps", "2", "--device", "cpu"]
    assert_user_error(run_cli(*base, "--report-to", "tensorboard,comet"), "unknown sink 'comet'")
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if not installed
    assert_user_error(run_cli(*base, "--report-to", "tensorboard,mlflow"), "pip install 'bl2[mlflow]'")
    assert not out.exists()  # nothing written, no training started
    r = run_cli("eval", "loss", out, "--data", data_dir, "--report-to", "mlflow")
    assert_user_error(r, "pip install 'bl2[mlflow]'")
    assert TrainConfig(preset="debug", report_to="wandb").identity() == TrainConfig(preset="debug").identity()


# ---------------------------------------------------------------------------------- W&B offline, MLflow server
def wandb_records(run_dir: Path) -> list:
    """The records of RUN/wandb/offline-run-*/run-*.wandb (W&B's LevelDB-log framing of protobuf Records)."""
    from wandb.proto import wandb_internal_pb2

    out = []
    for path in sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb")):
        data, pos, buf = path.read_bytes(), 7, b""  # 7: the ":W&B" header, its magic and version
        assert data[:4] == b":W&B"
        while pos + 7 <= len(data):
            left = 32768 - pos % 32768
            _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
            if left < 7 or (length == 0 and kind == 0):  # block trailer / padding
                pos += left
                continue
            buf, pos = buf + data[pos + 7 : pos + 7 + length], pos + 7 + length
            if kind in (1, 4):  # FULL or LAST
                rec = wandb_internal_pb2.Record()
                rec.ParseFromString(buf)
                out.append(rec)
                buf = b""
    return out


def wandb_history(run_dir: Path) -> dict[str, dict[int, float]]:
    out: dict[str, dict[int, float]] = {}
    for rec in wandb_records(run_dir):
        if rec.WhichOneof("record_type") == "history":
            for item in rec.history.item:
                key = item.key or "/".join(item.nested_key)
                if not key.startswith("_"):
                    out.setdefault(key, {})[rec.history.step.num] = json.loads(item.value_json)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def started_mlflow_server(folder: Path):
    """`mlflow server` on 127.0.0.1 (a free port, a SQLite store in `folder`); yields (its URI, the process)."""
    pytest.importorskip("mlflow")
    import urllib.request

    port, log_path = free_port(), folder / "mlflow-server.log"
    log = open(log_path, "w")
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                             "--workers", "1", "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
                             "--default-artifact-root", str(folder / "artifacts")],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(uri + "/health", timeout=1)
                break
            except OSError:
                assert proc.poll() is None, log_path.read_text()[-2000:]
                time.sleep(0.5)
        else:
            pytest.fail("mlflow server did not start: " + log_path.read_text()[-2000:])
        yield uri, proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """One server for the module's tests (it starts in about 20 s); each test uses its own experiment or run."""
    with started_mlflow_server(tmp_path_factory.mktemp("mlflow")) as server:
        yield server


@pytest.mark.slow  # W&B starts its service process; the MLflow server is a process
def test_wandb_offline_and_mlflow_server_equal_metrics_jsonl(tmp_path, data_dir, mlflow_server, monkeypatch):
    pytest.importorskip("wandb")
    mlflow_server = mlflow_server[0]
    from mlflow.tracking import MlflowClient

    from bl2.distill.run import pretrain

    for var in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc: no W&B key known -> offline
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    out = tmp_path / "run"
    pretrain(cfg(report_to="wandb,mlflow,tensorboard"), data_dir, out, device="cpu")
    want, state = expected(out), sinks.read_state(out)
    assert state["wandb"]["mode"] == "offline" and state["mlflow"]["tracking_uri"] == mlflow_server

    got = wandb_history(out)  # W&B: the offline run's own records
    assert {k: v for k, v in got.items() if k in want} == want and set(want) <= set(got)
    run_rec = next(r.run for r in wandb_records(out) if r.WhichOneof("record_type") == "run")
    assert run_rec.run_id == state["wandb"]["id"] and run_rec.display_name == "run"

    client = MlflowClient(mlflow_server)  # MLflow: read back through the server
    run = client.get_run(state["mlflow"]["run_id"])
    assert run.info.status == "FINISHED" and run.data.params["config.preset"] == "debug"
    assert run.data.tags["bl2_run_dir"] == str(out.resolve())
    for tag, by_step in want.items():
        history = client.get_metric_history(run.info.run_id, tag)
        assert {m.step: m.value for m in history} == pytest.approx(by_step, rel=1e-12) and len(history) == len(by_step)
    done = metrics.events(out / "metrics.jsonl", "done")[0]
    assert run.data.metrics["final/best_val_ce"] == pytest.approx(done["best_val_ce"])

    # bl2 eval on the run dir: its results reach the same MLflow run and the run's TensorBoard folder
    r = run_cli("eval", "loss", out, "--data", data_dir, "--split", "val", "--report-to", "mlflow,tensorboard")
    assert r.exit_code == 0, r.stdout + r.stderr
    ce = client.get_metric_history(run.info.run_id, "eval/loss/val/ce")
    assert len(ce) == 1 and ce[0].step == 6 and 0 < ce[0].value < 10
    assert tb_scalars(out)["eval/loss/val/ce"] == [(6, pytest.approx(ce[0].value, rel=1e-6))]


@pytest.mark.slow
def test_sweep_trials_grouped_by_study(tmp_path, data_dir, mlflow_server, monkeypatch):
    pytest.importorskip("optuna")
    pytest.importorskip("wandb")
    from mlflow.tracking import MlflowClient

    mlflow_server = mlflow_server[0]
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # --mlflow-uri says where
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "sweeps")
    space = tmp_path / "space.yaml"
    space.write_text("lr: {log_uniform: [1e-4, 1e-2]}\n")
    study = tmp_path / "study"
    r = run_cli("sweep", "teachers", "--data", data_dir, "--space", space, "--trials", "2", "--study", study,
                "--preset", "debug", "--max-steps", "4", "--batch-size", "8", "--val-every-steps", "2",
                "--device", "cpu", "--report-to", "mlflow,wandb", "--mlflow-uri", mlflow_server)
    assert r.exit_code == 0, r.stdout + r.stderr
    trials = sorted((study / "trials").iterdir())
    assert len(trials) == 2
    client = MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name("sweeps").experiment_id
    parents = client.search_runs([exp], "tags.bl2_role = 'study'")
    assert len(parents) == 1 and parents[0].data.tags["bl2_study"] == str(study.resolve())
    children = client.search_runs([exp], f"tags.mlflow.parentRunId = '{parents[0].info.run_id}'")
    assert sorted(c.info.run_name for c in children) == [t.name for t in trials]
    assert all("trial.lr" in c.data.params for c in children)
    groups = {next(x.run for x in wandb_records(t) if x.WhichOneof("record_type") == "run").run_group for t in trials}
    assert groups == {"study"}


@pytest.mark.slow
def test_resume_continues_the_mlflow_run(tmp_path, data_dir, mlflow_server, monkeypatch):
    """Crash after step 4, resume from checkpoint 2: the same MLflow run, every step once, equal to metrics.jsonl."""
    from mlflow.tracking import MlflowClient

    from bl2.distill.run import pretrain

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server[0])
    out, c = tmp_path / "run", cfg(report_to="mlflow", log_every_steps=1, ckpt_every_steps=2)
    run_with_crash(monkeypatch, lambda: pretrain(c, data_dir, out, device="cpu"), crash_step=4)
    first = sinks.read_state(out)["mlflow"]["run_id"]
    client = MlflowClient(mlflow_server[0])
    assert client.get_run(first).info.status == "FAILED"
    shutil.rmtree(out / "checkpoints" / "step-000004")
    pretrain(c, data_dir, out, resume=True, device="cpu")
    assert sinks.read_state(out)["mlflow"]["run_id"] == first and client.get_run(first).info.status == "FINISHED"
    history = client.get_metric_history(first, "train/ce")
    assert [m.step for m in history] == [1, 2, 3, 4, 5, 6]
    assert {m.step: m.value for m in history} == expected(out)["train/ce"]  # CPU resume is bit-exact
    assert "bl2_event_resume" in client.get_run(first).data.tags


@pytest.mark.slow
def test_a_sink_whose_server_dies_never_stops_training(tmp_path, data_dir, monkeypatch, capsys):

    with started_mlflow_server(tmp_path) as (uri, proc):  # its own server: this test kills it
        _run_while_the_server_dies(tmp_path, data_dir, monkeypatch, capsys, uri, proc)


def _run_while_the_server_dies(tmp_path, data_dir, monkeypatch, capsys, uri, proc):
    from bl2.distill.run import pretrain

    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # fail fast (MLflow's default retries for minutes)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")

    def kill_server_at_step_3(row):
        if row.get("step") == 3 and proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait()

    out = tmp_path / "run"
    summary = pretrain(cfg(report_to="mlflow,tensorboard", log_every_steps=1), data_dir, out, device="cpu",
                       hooks=[kill_server_at_step_3])
    assert summary["step"] == 6 and (out / "model.safetensors").is_file()
    assert [r["step"] for r in metrics.read(out / "metrics.jsonl", "train")] == [1, 2, 3, 4, 5, 6]
    said = capsys.readouterr()
    assert (said.out + said.err).count("--report-to mlflow failed") == 1
    assert [s for s, _ in tb_scalars(out)["train/ce"]] == [1, 2, 3, 4, 5, 6]  # the other sink went on


@pytest.mark.slow
def test_torchrun_two_processes_write_one_sink_run(tmp_path, data_dir):
    pytest.importorskip("tensorboard")
    pytest.importorskip("wandb")
    import torch

    if not torch.distributed.is_available():
        pytest.skip("torch.distributed unavailable")
    from conftest import torchrun

    out = tmp_path / "run"
    torchrun("pretrain", "--data", data_dir, "--out", out, "--preset", "debug", "--batch-size", "8", "--max-steps",
             "4", "--log-every-steps", "1", "--device", "cpu", "--report-to", "tensorboard,wandb",
             extra_env={"WANDB_MODE": "offline"})
    assert len(list((out / "tensorboard").glob("events.out.tfevents.*"))) == 1  # rank 0 alone
    assert len(list(out.glob("wandb/offline-run-*"))) == 1
    want, got = expected(out), tb_scalars(out)
    assert [s for s, _ in got["train/ce"]] == [1, 2, 3, 4]
    assert [v for _, v in got["train/ce"]] == pytest.approx([want["train/ce"][s] for s in range(1, 5)], rel=1e-6)
    assert {k: v for k, v in wandb_history(out).items() if k in want} == want


def test_export_metrics_replays_old_runs(tmp_path, data_dir):
    """Runs made without --report-to (a folder of them, as a sweep study) replayed into TensorBoard; twice is
    refused."""
    pytest.importorskip("tensorboard")
    from bl2.distill.run import pretrain

    runs = tmp_path / "runs"
    for seed in (0, 1):
        pretrain(cfg(seed=seed, max_steps=4), data_dir, runs / f"seed{seed}", device="cpu")
    r = run_cli("export-metrics", runs, "--to", "tensorboard")
    assert r.exit_code == 0, r.stdout + r.stderr
    for seed in (0, 1):
        out = runs / f"seed{seed}"
        want, got = expected(out), tb_scalars(out)
        assert set(want) <= set(got)
        for tag, by_step in want.items():
            assert dict(got[tag]) == pytest.approx(by_step, rel=1e-6), tag
    assert_user_error(run_cli("export-metrics", runs / "seed0", "--to", "tensorboard"), "already reports to")
    assert_user_error(run_cli("export-metrics", tmp_path / "nowhere", "--to", "tensorboard"), "neither a bl2 run")
