"""Run dirs and the entry points of `bl2 pretrain` and `bl2 distill`.

A run dir is itself the final Hugging Face model dir (config.json, model.safetensors and the tokenizer files
at its root) and also holds run.json (resolved config, data/teacher identity, versions, device, git sha),
metrics.jsonl (one JSON object per log step / validation) and checkpoints/.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from bl2.distill import checkpoint
from bl2.errors import UserError, require

RUN_JSON = "run.json"
METRICS = "metrics.jsonl"


class RunDir:
    """Creates, validates and writes a run dir. `identity` is what must match for --resume to continue."""

    def __init__(self, path: Path, identity: dict, tokenizer_dir: Path, resume: bool, overwrite: bool):
        self.path, self.identity, self.tokenizer_dir, self.resume = Path(path), identity, Path(tokenizer_dir), resume
        require(not (resume and overwrite), "--resume and --overwrite exclude each other")
        exists = self.path.exists() and any(self.path.iterdir()) if self.path.is_dir() else self.path.exists()
        if exists and not resume:
            require(overwrite, f"{self.path} already exists; pass --resume to continue it or --overwrite to replace it")
            require((self.path / RUN_JSON).is_file() or (self.path / "config.json").is_file(),
                    f"{self.path} is not a bl2 run dir; refusing to overwrite it")
            shutil.rmtree(self.path)
        if resume and exists:
            require((self.path / RUN_JSON).is_file(), f"--resume: {self.path} is not a bl2 run dir (no {RUN_JSON})")
            self._check_identity()
        self.path.mkdir(parents=True, exist_ok=True)

    def _check_identity(self) -> None:
        saved = json.loads((self.path / RUN_JSON).read_text()).get("identity")
        if saved != json.loads(json.dumps(self.identity)):
            diff = sorted(_diff(saved or {}, self.identity))
            raise UserError(f"--resume: {self.path} was made with a different configuration ({', '.join(diff[:6])})")

    def resume_checkpoint(self) -> Path | None:
        return checkpoint.latest(self.path) if self.resume else None

    def write_run_json(self, extra: dict) -> None:
        """Written once, when the run starts; a resumed run keeps the original (resumes go to metrics.jsonl)."""
        target = self.path / RUN_JSON
        if not target.exists():
            target.write_text(json.dumps({"identity": self.identity, **extra}, indent=2, default=str))

    def log(self, row: dict) -> None:
        with open(self.path / METRICS, "a") as f:
            f.write(json.dumps(row | {"time": round(time.time(), 3)}) + "\n")

    def truncate_metrics(self, step: int) -> None:
        """Drop rows logged after the checkpoint we resume from (they will be logged again)."""
        path = self.path / METRICS
        if path.exists():
            rows = [line for line in path.read_text().splitlines() if line.strip()]
            keep = [r for r in rows if json.loads(r).get("step", 0) <= step and json.loads(r).get("event") != "done"]
            path.write_text("".join(r + "\n" for r in keep))

    def save_final(self, model) -> None:
        from bl2.model.io import save_model_dir

        save_model_dir(model, self.path, self.tokenizer_dir)


def _diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    out = []
    for key in set(a) | set(b):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _diff(va, vb, f"{prefix}{key}.")
        elif va != vb:
            out.append(f"{prefix}{key}: {va!r} -> {vb!r}")
    return out


def _start(cfg, device_name: str, run_dir: Path, identity: dict, tokenizer_dir: Path, resume: bool, overwrite: bool):
    """Shared set-up: device, dtype, run dir, seeded model."""
    from bl2.model.io import build_model, count_params
    from bl2.progress import console
    from bl2.runtime import autocast_dtype, pick_device, provenance, seed_everything

    device = pick_device(device_name)
    autocast, reason = autocast_dtype(device)
    run = RunDir(run_dir, identity, tokenizer_dir, resume, overwrite)
    seed_everything(cfg.seed)
    vocab = identity["vocab_size"]
    model = build_model(cfg.preset, vocab, cfg.seq_len, cfg.seed).to(device)
    run.write_run_json({"provenance": provenance(device), "dtype": reason, "n_params": count_params(model),
                        "started": time.strftime("%Y-%m-%dT%H:%M:%S")})
    console.print(f"{identity['command']}: preset {cfg.preset} ({count_params(model) / 1e6:.2f}M params) on "
                  f"{device}, {reason}; run dir {run.path}")
    return device, autocast, run, model


def pretrain(cfg, data_dir: Path, out: Path, resume: bool = False, overwrite: bool = False, device: str = "auto"):
    """`bl2 pretrain`: CE-only training on DATA's train split with random window offsets per epoch."""
    from bl2.data.store import TokenStore
    from bl2.distill.loop import fit
    from bl2.distill.objective import CrossEntropy
    from bl2.distill.sources import RandomOffsetWindows

    store = TokenStore(data_dir)
    identity = {"command": "pretrain", "config": cfg.to_dict(), "vocab_size": store.vocab_size,
                "data": {"dir": str(Path(data_dir).resolve()), "tokenizer_sha256": store.tokenizer_sha256,
                         "train_sha256": store.split_sha256("train")}}
    source = RandomOffsetWindows(store.split("train"), cfg.seq_len, cfg.seed)
    val = _val_windows(store, cfg.seq_len)
    dev, autocast, run, model = _start(cfg, device, out, identity, data_dir, resume, overwrite)
    return fit(model, cfg, source, CrossEntropy(), val, run, dev, autocast)


def _val_windows(store, seq_len: int):
    from bl2.distill.sources import eval_windows

    val = eval_windows(store.split("val"), seq_len)
    require(len(val) > 0, f"the val split of {store.data_dir} has no full window of {seq_len + 1} tokens")
    return val
