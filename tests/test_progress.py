"""Progress off a terminal (`> log`, nohup, SLURM): a plain line on stderr every $BL2_PROGRESS_EVERY_S seconds
with done/total, rate and ETA; results stay alone on stdout; under torchrun only rank 0 prints."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from conftest import TORCHRUN_TIMEOUT, run_cli

from bl2 import progress


def test_line_progress_prints_rate_done_total_and_eta(capsys, monkeypatch):
    monkeypatch.setenv("BL2_PROGRESS_EVERY_S", "0")
    bar = progress.make_progress("windows")
    assert isinstance(bar, progress.LineProgress)  # pytest's stderr is not a terminal
    with bar:
        task = bar.add_task("cache-logits", total=40)
        for _ in range(4):
            bar.advance(task, 10)
    out = capsys.readouterr()
    assert out.out == ""  # progress never goes to stdout
    lines = out.err.strip().splitlines()
    assert len(lines) == 5, lines  # one per advance (every 0 s) and a last one at the end
    assert re.match(r"cache-logits: 10/40 windows \(25%\)  [\d,.]+ windows/s  elapsed 0:00  ETA 0:00", lines[0])
    assert lines[-1].startswith("cache-logits: 40/40 windows (100%)")


def test_line_progress_waits_its_interval(capsys, monkeypatch):
    monkeypatch.setenv("BL2_PROGRESS_EVERY_S", "3600")
    with progress.make_progress("sentences") as bar:
        task = bar.add_task("BLiMP", total=5)
        for _ in range(5):
            bar.advance(task)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("BLiMP: 5/5 sentences (100%)"), lines


def test_slow_rates_read_seconds_per_item():
    assert progress.rate_text(0.25, "steps") == "4.0 s/step"
    assert progress.rate_text(2.5, "steps") == "2.5 steps/s"
    assert progress.rate_text(1234.0, "windows") == "1,234 windows/s"


def test_eval_loss_results_on_stdout_progress_on_stderr(monkeypatch, data_dir, debug_model_dir):
    monkeypatch.setenv("BL2_PROGRESS_EVERY_S", "0")
    r = run_cli("eval", "loss", debug_model_dir, "--data", data_dir, "--split", "test", "--device", "cpu")
    assert r.exit_code == 0, r.stderr
    assert "perplexity" in r.stdout and "windows/s" not in r.stdout and "eval loss (test)" not in r.stdout
    assert re.search(r"eval loss \(test\): \d+/\d+ windows \(100%\)", r.stderr), r.stderr
    assert str(debug_model_dir) in r.stdout  # a table in a pipe is not cut at 80 columns (#32.10)


@pytest.mark.slow
def test_torchrun_user_error_is_one_line_and_exit_2(tmp_path):
    """bl2-torchrun: the job ends with the rank's exit code 2 and its one line (no torchrun traceback); plain
    torchrun shows the line once (rank 1 is stopped before it would print its copy)."""
    args = ["--standalone", "--nproc-per-node", "2", "-m", "bl2", "pretrain", "--data", str(tmp_path / "missing"),
            "--preset", "debug", "--out", str(tmp_path / "run")]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "bl2.cli.launch", *args], capture_output=True, text=True, env=env,
                       timeout=TORCHRUN_TIMEOUT)
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stdout == "" and r.stderr.strip().splitlines() == [f"error: data directory not found: {tmp_path}/missing"]
    plain = subprocess.run([sys.executable, "-m", "torch.distributed.run", *args], capture_output=True, text=True,
                           env=env, timeout=TORCHRUN_TIMEOUT)
    assert plain.returncode != 0
    assert [line for line in plain.stderr.splitlines() if line.startswith("error:")] == r.stderr.strip().splitlines()
