"""Run dirs. A run dir is itself the final Hugging Face model dir (config.json, model.safetensors and the
tokenizer files at its root) and also holds run.json (resolved config, data/teacher identity, versions,
device, git sha), metrics.jsonl (rows of `bl2.runs.metrics`) and checkpoints/.

The rules for --out: a new (or empty) dir starts a run; an existing bl2 run dir (it has run.json) needs
--resume (same identity) or --overwrite (the only case where bl2 deletes a run dir); anything else is refused
and left alone. --resume of a dir that does not exist is refused too (resume is not a fresh start: a typo in
--out would silently begin a new run). The whole run holds the dir's lock (bl2.locks, see `locked_output`).
"""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

from bl2.distill import checkpoint
from bl2.distill.config import renamed
from bl2.errors import UserError, require
from bl2.runs import metrics, record
from bl2.storage import local_path, require_writable_dir

METRICS = metrics.FILENAME


def preflight(path: str | Path, resume: bool, overwrite: bool, check_lock: bool = True) -> Path:
    """Every check of --out that needs no job, before anything heavy is loaded; touches nothing. First: is another
    process writing it? (A run that is starting may not have written anything yet.)"""
    from bl2.locks import require_free
    from bl2.runtime import dist_env

    path = local_path(path, "a run dir (--out)")
    require(not (resume and overwrite), "--resume and --overwrite exclude each other")
    if check_lock and dist_env().rank == 0:  # under torchrun rank 0 takes the lock: other ranks would see it held
        require_free(path, "run dir")
    require(not path.exists() or path.is_dir(), f"--out {path} is a file, not a run dir")
    is_new = not path.exists() or not any(path.iterdir())  # an empty dir is new
    if resume:
        require(not is_new, f"--resume: nothing to resume at {path}; drop --resume to start a new run")
        record.read(path)  # a one-line error unless it is a bl2 run dir
    elif not is_new:
        require(overwrite, f"{path} already exists; pass --resume to continue it or --overwrite to replace it")
        require(record.is_run_dir(path), f"{path} is not a bl2 run dir (no {record.RUN_JSON} that bl2 wrote); "
                "refusing to overwrite it")
        foreign = record.foreign_entries(path)
        require(not foreign, f"{path} holds files bl2 did not write ({', '.join(foreign[:3])}"
                + (", ..." if len(foreign) > 3 else "") + "); refusing to overwrite it: move them away first")
    require_writable_dir(path, "run dir")
    return path


def locked_output(train):
    """Decorator of `train(job, out, ...)`: the run dir `out` is locked for the whole run, so a second bl2
    process on it is refused with the holder named. Under torchrun only rank 0 (the writer) takes it."""

    @functools.wraps(train)
    def run_locked(job, out, *args, **kwargs):
        from bl2.locks import hold
        from bl2.runtime import dist_env

        if dist_env().rank != 0:
            return train(job, out, *args, **kwargs)
        with hold(local_path(out, "a run dir (--out)"), "run dir"):
            return train(job, out, *args, **kwargs)

    return run_locked


class RunDir:
    """Creates, validates and writes a run dir. `identity` is what must match for --resume to continue.
    Construct it while holding the dir's lock (`locked_output`)."""

    def __init__(self, path: str | Path, identity: dict, tokenizer_dir: str | Path, resume: bool, overwrite: bool,
                 writer: bool = True):
        """writer=False: a torchrun rank other than 0, which reads checkpoints but never writes or checks."""
        self.identity, self.tokenizer_dir, self.resume = identity, local_path(tokenizer_dir), resume
        self.writer = writer
        self.saved: dict | None = None  # the run.json of the run this one resumes (rank 0)
        if not writer:
            self.path = local_path(path, "a run dir (--out)")
            return
        self.path = preflight(path, resume, overwrite, check_lock=False)  # again: we hold the lock now
        if resume:
            self.saved = self._check_identity()
        elif record.is_run_dir(self.path):  # --overwrite of a bl2 run dir holding only bl2's files (checked above)
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True, exist_ok=True)

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS

    def _check_identity(self) -> dict:
        """The saved run.json, once its identity is checked against this run's."""
        saved = record.read(self.path)
        require(isinstance(saved.get("identity"), dict),
                f"--resume: {record.path_of(self.path)} has no run identity: not a run dir bl2 can continue")
        saved_identity = dict(saved["identity"])
        if isinstance(saved_identity.get("config"), dict):  # runs made before fields were renamed
            saved_identity["config"] = renamed(saved_identity["config"])
        diff = sorted(_diff(saved_identity, json.loads(json.dumps(self.identity))))
        if diff:
            raise UserError(f"--resume: {self.path} was made with a different configuration ({', '.join(diff[:6])})")
        return saved

    def resume_checkpoint(self) -> Path | None:
        return checkpoint.latest(self.path) if self.resume else None

    def write_run_json(self, extra: dict) -> None:
        """Written once, when the run starts; a resumed run keeps the original (resumes go to metrics.jsonl)."""
        if self.writer and not record.path_of(self.path).exists():
            record.create(self.path, {"identity": self.identity, **extra})

    def log(self, row: dict) -> dict:
        return metrics.append(self.metrics_path, row) if self.writer else row

    def truncate_metrics(self, step: int) -> None:
        """Drop rows logged after the checkpoint we resume from (they will be logged again)."""
        metrics.truncate_after(self.metrics_path, step)

    def save_final(self, model) -> None:
        from bl2.model.io import save_model_dir
        from bl2.runs.card import write_card

        save_model_dir(model, self.path, self.tokenizer_dir)
        write_card(self.path)  # README.md: the Hugging Face model card


def _diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    """The keys of identity `b` (the new run's) whose values differ in `a` (the saved one). A new key at None
    is no change; a key only the saved identity has (one this bl2 no longer records, such as the paths of
    the data and the cache: they may move) is not compared."""
    out = []
    for key in b:
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _diff(va, vb, f"{prefix}{key}.")
        elif va != vb:
            out.append(f"{prefix}{key}: {va!r} -> {vb!r}")
    return out
