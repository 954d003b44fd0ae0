"""Run dirs. A run dir is itself the final Hugging Face model dir (config.json, model.safetensors and the
tokenizer files at its root) and also holds run.json (resolved config, data/teacher identity, versions,
device, git sha), metrics.jsonl (rows of `bl2.metrics`) and checkpoints/.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from bl2 import metrics
from bl2.distill import checkpoint
from bl2.errors import UserError, require
from bl2.storage import local_path

RUN_JSON = "run.json"
METRICS = metrics.FILENAME


class RunDir:
    """Creates, validates and writes a run dir. `identity` is what must match for --resume to continue."""

    def __init__(self, path: str | Path, identity: dict, tokenizer_dir: str | Path, resume: bool, overwrite: bool,
                 writer: bool = True):
        """writer=False: a torchrun rank other than 0, which reads checkpoints but never writes or checks."""
        self.path = local_path(path, "a run dir (--out)")
        self.identity, self.tokenizer_dir, self.resume = identity, local_path(tokenizer_dir), resume
        self.writer = writer
        if not writer:
            return
        require(not (resume and overwrite), "--resume and --overwrite exclude each other")
        exists = any(self.path.iterdir()) if self.path.is_dir() else self.path.exists()  # an empty dir is new
        if exists and not resume:
            require(overwrite, f"{self.path} already exists; pass --resume to continue it or --overwrite to replace it")
            require((self.path / RUN_JSON).is_file() or (self.path / "config.json").is_file(),
                    f"{self.path} is not a bl2 run dir; refusing to overwrite it")
            shutil.rmtree(self.path)
        if resume and exists:
            require((self.path / RUN_JSON).is_file(), f"--resume: {self.path} is not a bl2 run dir (no {RUN_JSON})")
            self._check_identity()
        self.path.mkdir(parents=True, exist_ok=True)

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS

    def _check_identity(self) -> None:
        saved = json.loads((self.path / RUN_JSON).read_text()).get("identity")
        diff = sorted(_diff(saved or {}, json.loads(json.dumps(self.identity))))  # a new field at None is no change
        if diff:
            raise UserError(f"--resume: {self.path} was made with a different configuration ({', '.join(diff[:6])})")

    def resume_checkpoint(self) -> Path | None:
        return checkpoint.latest(self.path) if self.resume else None

    def write_run_json(self, extra: dict) -> None:
        """Written once, when the run starts; a resumed run keeps the original (resumes go to metrics.jsonl)."""
        target = self.path / RUN_JSON
        if self.writer and not target.exists():
            target.write_text(json.dumps({"identity": self.identity, **extra}, indent=2, default=str))

    def log(self, row: dict) -> dict:
        return metrics.append(self.metrics_path, row) if self.writer else row

    def truncate_metrics(self, step: int) -> None:
        """Drop rows logged after the checkpoint we resume from (they will be logged again)."""
        metrics.truncate_after(self.metrics_path, step)

    def save_final(self, model) -> None:
        from bl2.distill.card import write_card
        from bl2.model.io import save_model_dir

        save_model_dir(model, self.path, self.tokenizer_dir)
        write_card(self.path)  # README.md: the Hugging Face model card


def _diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    out = []
    for key in set(a) | set(b):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _diff(va, vb, f"{prefix}{key}.")
        elif va != vb:
            out.append(f"{prefix}{key}: {va!r} -> {vb!r}")
    return out
