"""`bl2 budget`, `bl2 report --help` and `bl2 sweep status` never import torch (bl2.runs is torch-free, and the
CLI imports heavy packages only inside the commands that need them), so they start fast. `sweep status` on a
real study: tests/workflows/test_sweep.py."""

from __future__ import annotations

import pytest
from conftest import imports_torch


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, data_dir):
    from bl2.distill.config import TrainConfig
    from bl2.distill.run import pretrain

    out = tmp_path_factory.mktemp("torch_free") / "run"
    pretrain(TrainConfig(preset="debug", max_steps=2, batch_size=8, eval_batch_size=32), data_dir, out, device="cpu")
    return out


@pytest.mark.parametrize("args", [["--help"], ["report", "--help"], ["budget", "--help"],
                                  ["sweep", "status", "--help"]])
def test_help_never_imports_torch(args):
    torch, out = imports_torch(*args)
    assert not torch, out


def test_budget_never_imports_torch(trained_run):
    torch, out = imports_torch("budget", trained_run)
    assert not torch and "this run" in out, out


def test_export_metrics_never_imports_torch(trained_run, tmp_path):
    import shutil

    pytest.importorskip("tensorboard")
    run = shutil.copytree(trained_run, tmp_path / "run")
    torch, out = imports_torch("export-metrics", run, "--to", "tensorboard")
    assert not torch and "metrics rows -> tensorboard" in out, out
