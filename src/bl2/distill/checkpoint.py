"""Checkpoints: `checkpoints/step-NNNNNN/` holds the model and optimizer state dicts, the RNG states and a
human-readable state.json (step, epoch, batch position, best validation). Each is written under a temporary
name and renamed, so a crash never leaves a half-written checkpoint that resume would pick up."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import torch

CKPT_DIR = "checkpoints"
BEST = "best"


def _write_atomic_dir(final: Path, write) -> None:
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write(tmp)
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)


def rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def save(run_dir: Path, step: int, model, optimizer, state: dict, keep: int) -> Path:
    final = Path(run_dir) / CKPT_DIR / f"step-{step:06d}"

    def write(d: Path):
        torch.save(model.state_dict(), d / "model.pt")
        torch.save(optimizer.state_dict(), d / "optimizer.pt")
        torch.save(rng_state(), d / "rng.pt")
        (d / "state.json").write_text(json.dumps(state, indent=2))

    _write_atomic_dir(final, write)
    for old in step_dirs(run_dir)[:-keep]:
        shutil.rmtree(old)
    return final


def step_dirs(run_dir: Path) -> list[Path]:
    root = Path(run_dir) / CKPT_DIR
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-") and p.suffix != ".tmp")


def latest(run_dir: Path) -> Path | None:
    dirs = step_dirs(run_dir)
    return dirs[-1] if dirs else None


def load(path: Path, model, optimizer) -> dict:
    """Restore model, optimizer and RNG states in place; returns state.json's content."""
    model.load_state_dict(torch.load(path / "model.pt", weights_only=True))
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    set_rng_state(torch.load(path / "rng.pt", weights_only=False))
    return json.loads((path / "state.json").read_text())


def save_best(run_dir: Path, model, info: dict) -> None:
    def write(d: Path):
        torch.save(model.state_dict(), d / "model.pt")
        (d / "best.json").write_text(json.dumps(info, indent=2))

    _write_atomic_dir(Path(run_dir) / CKPT_DIR / BEST, write)


def load_best(run_dir: Path, model) -> dict | None:
    d = Path(run_dir) / CKPT_DIR / BEST
    if not (d / "model.pt").is_file():
        return None
    model.load_state_dict(torch.load(d / "model.pt", weights_only=True))
    return json.loads((d / "best.json").read_text())
