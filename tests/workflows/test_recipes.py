"""experiments/paper_345m.sh and paper_16m.sh --dry-run: the whole plan, in order, with the paper's flags and the
BabyLM budget it spends (24 epoch-equivalents, 10 with --compliant)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def plan(script: str, tmp_path: Path, *args: str) -> tuple[list[tuple[str, str]], str]:
    proc = subprocess.run([str(ROOT / "experiments" / script), "--dry-run", "--out", str(tmp_path / "out"), *args],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    steps = re.findall(r"^\[([^\]]+)\] (.*)$", proc.stderr, flags=re.M)
    assert not (tmp_path / "out").exists()  # a dry run writes nothing
    return steps, proc.stderr


def test_paper_345m_plan_on_8_gpus(tmp_path):
    steps, text = plan("paper_345m.sh", tmp_path, "--gpus", "8")
    names = [n for n, _ in steps]
    assert names[:5] == ["prepare", "teacher0", "teacher1", "cache", "student"]
    assert names[-2:] == ["budget", "report"]
    assert {"zero-shot student", "finetune student", "loss student", "zero-shot ensemble"} <= set(names)
    cmd = dict(steps)
    for teacher, gpus in (("teacher0", "0,1,2,3"), ("teacher1", "4,5,6,7")):
        assert f"CUDA_VISIBLE_DEVICES={gpus} torchrun --standalone --nproc-per-node 4 -m bl2 pretrain" in cmd[teacher]
        assert "--preset 345m --batch-size 128 --lr 7e-4" in cmd[teacher] and "--epochs 8" in cmd[teacher]
    assert "--nproc-per-node 8 -m bl2 cache-logits" in cmd["cache"] and "--k 64" in cmd["cache"]
    student = cmd["student"]
    for flag in ("--alpha 0.5", "--temperature 1", "--epochs 8", "--word-checkpoints babylm", "--cache"):
        assert flag in student
    assert "planned budget: 24 epoch-equivalents" in text


@pytest.mark.parametrize("script", ["paper_16m.sh", "paper_345m.sh"])
def test_compliant_variant_fits_the_cap(script, tmp_path):
    steps, text = plan(script, tmp_path, "--gpus", "1", "--compliant")
    cmd = dict(steps)
    assert "--epochs 3" in cmd["teacher0"] and "--epochs 3" in cmd["teacher1"] and "--epochs 4" in cmd["student"]
    assert "torchrun" not in cmd["student"]  # one GPU: the plain command
    assert "planned budget: 10 epoch-equivalents (--compliant)" in text
