"""Checkpoints: `checkpoints/step-NNNNNN/` holds the model and optimizer state dicts, the RNG states (JSON) and a
human-readable state.json (step, epoch, batch position, best validation). Each is written under a temporary
name and renamed, so a crash never leaves a half-written checkpoint that resume would pick up."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from bl2.errors import require

CKPT_DIR = "checkpoints"
RNG = "rng.json"
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
    """This process's RNG states as plain JSON values (never a pickle: a checkpoint must not run code)."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    return {"torch": torch.get_rng_state().tolist(),
            "numpy": [np_state[0], np_state[1].tolist(), *[float(x) if i == 3 else int(x)
                                                             for i, x in enumerate(np_state[2:], 2)]],
            "python": [py_state[0], list(py_state[1]), py_state[2]]}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def save(run_dir: Path, step: int, model, optimizer, state: dict, keep: int, rng: list[dict] | None = None) -> Path:
    """`rng`: every rank's rng_state() (torchrun); stored once when they are all equal (no rank has drawn
    randomness of its own, so any number of processes can resume), else one per rank."""
    final = Path(run_dir) / CKPT_DIR / f"step-{step:06d}"
    rng = rng or [rng_state()]
    per_rank = any(r != rng[0] for r in rng[1:])

    def write(d: Path):
        torch.save(model.state_dict(), d / "model.pt")
        torch.save(optimizer.state_dict(), d / "optimizer.pt")
        (d / RNG).write_text(json.dumps({"world_size": len(rng), "per_rank": per_rank,
                                         "states": rng if per_rank else rng[:1]}))
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


def load(path: Path, model, optimizer, rank: int = 0, world_size: int = 1) -> dict:
    """Restore model, optimizer and this rank's RNG state in place; returns state.json's content. Tensors are
    loaded with weights_only=True and RNG states from JSON: nothing in a checkpoint can run code."""
    model.load_state_dict(torch.load(path / "model.pt", weights_only=True))
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    rng = json.loads((path / RNG).read_text())
    if rng["per_rank"]:
        require(rng["world_size"] == world_size,
                f"{path} was written by {rng['world_size']} processes whose random states differ; resume it with "
                f"{rng['world_size']} processes (torchrun --nproc-per-node ...), not {world_size}")
        set_rng_state(rng["states"][rank])
    else:
        set_rng_state(rng["states"][0])
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
