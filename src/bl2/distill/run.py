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
    from bl2.runtime import autocast_dtype, pick_device, provenance, seed_everything, tune_allocator

    device = pick_device(device_name)
    if device == "cpu":
        tune_allocator()
    autocast, reason = autocast_dtype(device)
    run = RunDir(run_dir, identity, tokenizer_dir, resume, overwrite)
    seed_everything(cfg.seed)
    vocab = identity["vocab_size"]
    model = build_model(cfg.preset, vocab, cfg.seq_len, cfg.seed).to(device)
    run.write_run_json({"config": cfg.to_dict(), "provenance": provenance(device), "dtype": reason,
                        "n_params": count_params(model),
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
    identity = {"command": "pretrain", "config": cfg.identity(), "vocab_size": store.vocab_size,
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


def distill(cfg, out: Path, cache: Path | None = None, teachers: list[Path] | None = None,
            data_dir: Path | None = None, ensemble: str = "logit_mean", cache_in_memory: str = "auto",
            resume: bool = False, overwrite: bool = False, device: str = "auto"):
    """`bl2 distill`: from a cache (teachers never loaded) or, as the online baseline, from live teachers.
    Same loop, same loss; only the target source differs."""
    require((cache is None) != (teachers is None), "give either --cache or --teachers (not both)")
    if cache is not None:
        return _distill_from_cache(cfg, out, cache, data_dir, cache_in_memory, resume, overwrite, device)
    return _distill_online(cfg, out, teachers, data_dir, ensemble, resume, overwrite, device)


def _distill_from_cache(cfg, out, cache, data_dir, cache_in_memory, resume, overwrite, device):
    import dataclasses

    from bl2.cache.reader import CacheReader
    from bl2.data.store import TokenStore
    from bl2.distill.cache_source import CacheWindows, decide_in_memory
    from bl2.distill.loop import fit
    from bl2.distill.objective import CachedTargets
    from bl2.progress import console

    reader = CacheReader(cache)
    reader.require_complete()
    data_dir = Path(data_dir or reader.data_dir)
    store = TokenStore(data_dir)
    require(store.vocab_size == reader.vocab_size and store.tokenizer_sha256 == reader.tokenizer_sha256,
            f"cache {cache} was made with another tokenizer than {data_dir}'s (vocab {reader.vocab_size} vs "
            f"{store.vocab_size}); the student must share the teachers' tokenizer")
    cfg = dataclasses.replace(cfg, seq_len=reader.seq_len)  # the cache's windows fix the sequence length
    t_index = reader.temperature_index(cfg.temperature)  # refuses a T the cache cannot give exactly
    in_memory = decide_in_memory(cache_in_memory, reader.nbytes_decoded())
    identity = {"command": "distill", "config": cfg.identity(), "vocab_size": store.vocab_size,
                "data": {"dir": str(data_dir.resolve()), "tokenizer_sha256": store.tokenizer_sha256},
                "cache": {k: reader.attrs.get(k) for k in ("mode", "k", "n_windows", "seq_len", "temperatures",
                                                           "ensemble", "teachers", "tokens_sha256", "n_draws",
                                                           "sample_temperature", "window_offsets")}
                | {"path": str(Path(cache).resolve())}}
    console.print(f"cache {cache}: mode {reader.mode}, {reader.n_windows} windows, "
                  f"{reader.nbytes_decoded() / 2**20:.0f} MiB decoded, {'in RAM' if in_memory else 'streamed'}")
    source = CacheWindows(reader, cfg.seed, in_memory, cfg.shuffle_buffer)
    objective = CachedTargets(reader.mode, cfg.alpha, cfg.temperature, cfg.kl_reduction, t_index, reader.n_draws)
    val = _val_windows(store, cfg.seq_len)
    dev, autocast, run, model = _start(cfg, device, out, identity, data_dir, resume, overwrite)
    return fit(model, cfg, source, objective, val, run, dev, autocast)


def _distill_online(cfg, out, teachers, data_dir, ensemble, resume, overwrite, device):
    from bl2.cache.teachers import teacher_records
    from bl2.data.store import TokenStore
    from bl2.distill.loop import fit
    from bl2.distill.objective import LiveTeachers
    from bl2.distill.sources import FixedWindows
    from bl2.eval.ensemble import Ensemble
    from bl2.runtime import pick_device

    require(data_dir is not None, "online distillation (--teachers) needs --data DATA_DIR")
    store = TokenStore(data_dir)
    ens = Ensemble(teachers, pick_device(device), rule=ensemble)
    require(ens.vocab_size == store.vocab_size and ens.tokenizer_sha256 in (None, store.tokenizer_sha256),
            f"the teachers' tokenizer differs from {data_dir}'s")
    require(cfg.seq_len <= ens.max_positions, f"seq_len {cfg.seq_len} exceeds the teachers' limit {ens.max_positions}")
    identity = {"command": "distill-online", "config": cfg.identity(), "vocab_size": store.vocab_size,
                "data": {"dir": str(Path(data_dir).resolve()), "tokenizer_sha256": store.tokenizer_sha256,
                         "train_sha256": store.split_sha256("train")},
                "teachers": teacher_records(teachers), "ensemble": ensemble}
    source = FixedWindows(store.split("train"), cfg.seq_len, cfg.seed, offsets=(0,), buffer=cfg.shuffle_buffer)
    objective = LiveTeachers(ens, cfg.alpha, cfg.temperature, cfg.kl_reduction)
    val = _val_windows(store, cfg.seq_len)
    dev, autocast, run, model = _start(cfg, device, out, identity, data_dir, resume, overwrite)
    return fit(model, cfg, source, objective, val, run, dev, autocast)
