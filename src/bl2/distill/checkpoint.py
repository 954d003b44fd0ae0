"""Checkpoints: `checkpoints/step-NNNNNN/` holds the model and optimizer state dicts, the RNG states and a
human-readable state.json (step, epoch, batch position, best validation). Each is written under a temporary
name and renamed, so a crash never leaves a half-written checkpoint that resume would pick up.

Everything is stored as tensors and plain values (the RNG states too) and loaded with `weights_only=True`: a
checkpoint never runs code, and a tampered or foreign file is refused with a one-line error."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from bl2.errors import UserError, require

CKPT_DIR = "checkpoints"
BEST = "best"
PARTS = (".tmp", ".old")  # suffixes of a checkpoint being written / being replaced


def _write_atomic_dir(final: Path, write) -> None:
    """Write into final.tmp, move the old final aside, rename, then delete the old one: a crash at any point
    leaves either the old or the new checkpoint complete (load_best also looks at the aside copy)."""
    tmp, old = (final.with_name(final.name + s) for s in PARTS)
    for stale in (tmp, old):  # leftovers of a crash, inside our own checkpoints/ folder
        shutil.rmtree(stale, ignore_errors=True)
    tmp.mkdir(parents=True)
    write(tmp)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def rng_state() -> dict:
    """torch, numpy and Python RNG states as tensors and plain values (loadable with weights_only=True)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {"torch": torch.get_rng_state(),
             "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
             "python": {"version": version, "state": torch.tensor(internal, dtype=torch.int64),
                        "gauss_next": gauss_next}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(x) for x in p["state"].tolist()), p["gauss_next"]))
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def safe_load(path: Path, hint: str = ""):
    """torch.load with weights_only=True; a file holding other Python objects, or an unreadable one, is a
    one-line UserError (never executed). `hint` ends the message (what the user can do)."""
    import pickle

    hint = f": {hint}" if hint else ""
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except FileNotFoundError:
        raise UserError(f"checkpoint file {path} is missing{hint}") from None
    except pickle.UnpicklingError:
        raise UserError(f"refusing to load {path}: it holds Python objects other than tensors and plain values "
                        f"(a tampered file, not bl2's, or from a bl2 that still pickled RNG states){hint}") from None
    except Exception as e:  # truncated zip, garbage bytes
        raise UserError(f"cannot read {path} ({_first_line(e)}){hint}") from None


def _first_line(e: BaseException) -> str:
    """The first sentence of an exception's message (torch's run on for several lines)."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text.split(". ")[0]


def save(run_dir: Path, step: int, model, optimizer, state: dict, keep: int, rng: list[dict] | None = None) -> Path:
    """`rng`: every rank's rng_state() (torchrun); stored once when they are all equal (no rank has drawn
    randomness of its own, so any number of processes can resume), else one per rank."""
    final = Path(run_dir) / CKPT_DIR / f"step-{step:06d}"
    rng = rng or [rng_state()]
    per_rank = any(not _same_state(r, rng[0]) for r in rng[1:])

    def write(d: Path):
        torch.save(model.state_dict(), d / "model.pt")
        torch.save(optimizer.state_dict(), d / "optimizer.pt")
        torch.save({"world_size": len(rng), "per_rank": per_rank, "states": rng if per_rank else rng[:1]},
                   d / "rng.pt")
        (d / "state.json").write_text(json.dumps(state, indent=2))

    _write_atomic_dir(final, write)
    for old in step_dirs(run_dir)[:-keep]:
        shutil.rmtree(old)
    return final


def step_dirs(run_dir: Path) -> list[Path]:
    root = Path(run_dir) / CKPT_DIR
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-") and p.suffix not in PARTS)


def latest(run_dir: Path) -> Path | None:
    dirs = step_dirs(run_dir)
    return dirs[-1] if dirs else None


def _same_state(a, b) -> bool:
    """Equal RNG states (nested dicts / lists of tensors and plain values)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same_state(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return isinstance(b, list | tuple) and len(a) == len(b) and all(map(_same_state, a, b))
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    return a == b


def _rank_rng(rng: dict, path: Path, rank: int, world_size: int) -> dict:
    """This rank's RNG state from a checkpoint's rng.pt (per rank when the ranks' states differ)."""
    if not rng.get("per_rank"):
        return rng["states"][0]
    require(rng["world_size"] == world_size,
            f"{path} was written by {rng['world_size']} processes whose random states differ; resume it with "
            f"{rng['world_size']} processes (torchrun --nproc-per-node ...), not {world_size}")
    return rng["states"][rank]


def load(path: Path, model, optimizer, rank: int = 0, world_size: int = 1) -> dict:
    """Restore model, optimizer and this rank's RNG state in place; returns state.json's content. Every file is
    read and checked before anything is restored; a bad checkpoint is a UserError naming it."""
    hint = f"delete {path} to resume from the checkpoint before it"
    try:
        state = json.loads((path / "state.json").read_text())
    except FileNotFoundError:
        raise UserError(f"--resume: {path / 'state.json'} is missing: {hint}") from None
    except (OSError, ValueError) as e:
        raise UserError(f"--resume: {path / 'state.json'} is unreadable ({_first_line(e)}): {hint}") from None
    require(isinstance(state, dict) and isinstance(state.get("step"), int),
            f"--resume: {path / 'state.json'} is not a bl2 checkpoint state (no step): {hint}")
    parts = {name: safe_load(path / f"{name}.pt", hint) for name in ("model", "optimizer", "rng")}
    try:
        model.load_state_dict(parts["model"])
        optimizer.load_state_dict(parts["optimizer"])
        set_rng_state(_rank_rng(parts["rng"], path, rank, world_size))
    except (RuntimeError, KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        raise UserError(f"--resume: checkpoint {path} does not fit this run ({_first_line(e)})") from None
    return state


def save_best(run_dir: Path, model, info: dict) -> None:
    def write(d: Path):
        torch.save(model.state_dict(), d / "model.pt")
        (d / "best.json").write_text(json.dumps(info, indent=2))

    _write_atomic_dir(Path(run_dir) / CKPT_DIR / BEST, write)


def load_best(run_dir: Path, model) -> dict | None:
    root = Path(run_dir) / CKPT_DIR
    d = next((p for p in (root / BEST, root / (BEST + ".old")) if (p / "best.json").is_file()), None)
    if d is None:
        return None
    model.load_state_dict(safe_load(d / "model.pt"))
    return json.loads((d / "best.json").read_text())
