"""--report-to: TensorBoard event files, a W&B offline run and an MLflow server (started here) hold exactly the
metrics.jsonl values; a missing package or an unknown sink is one line before training; resume continues the sink
runs; `bl2 eval loss --report-to` reaches the run's sinks."""

from __future__ import annotations

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
    assert {"train/ce", "train/lr", "train/tokens_per_s", "val/val_ce"} <= set(want)
    for tag, by_step in want.items():
        assert [s for s, _ in got[tag]] == sorted(by_step), tag  # each step once, in order
        assert [v for _, v in got[tag]] == pytest.approx([by_step[s] for s in sorted(by_step)], rel=1e-6), tag
    done = metrics.events(out / "metrics.jsonl", "done")[0]
    assert got["final/best_val_ce"] == [(6, pytest.approx(done["best_val_ce"], rel=1e-6))]
    assert sinks.read_state(out) == {"tensorboard": {"dir": "tensorboard"}}


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
