"""`bl2 cache-logits`: run the teacher ensemble once over the windows of a split and store its soft targets
in a cache (format v1, DESIGN §5).

The main thread forwards the teachers batch by batch and turns the fp32 ensemble log-probs into the mode's
arrays (`bl2.cache.targets`); a background thread (`bl2.cache.store.ShardWriter`) compresses and writes whole
shards and commits `windows_done`. Batches never cross a shard boundary, so a resumed run forwards exactly the
batches an uninterrupted run would and produces identical arrays.

Built for growth (DESIGN §8): the shard plan takes rank/world_size (rank r writes shards r, r+world, ...;
shards are separate files, so ranks never touch the same file). Only the commit counter is single-process
today: with several ranks each would commit its own progress (e.g. a per-rank subgroup's attrs) and rank 0
would set `windows_done`/`complete` after a barrier. The store path stays a string (fsspec URLs later).
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bl2.cache import schema
from bl2.cache.targets import TargetSpec, compute_targets
from bl2.data.windows import gather_windows, row_starts, window_offsets, windows_per_offset
from bl2.errors import require


@dataclass
class CacheLogitsConfig:
    """Everything `bl2 cache-logits` needs; checks that need no file run in __post_init__."""

    data: Path  # prepared DATA dir (tokenizer + tokens.zarr)
    teachers: list[Path]  # teacher model dirs (same vocab and tokenizer as DATA)
    out: str  # cache path (a string: zarr over fsspec URLs later)
    split: str = "train"  # which token split the windows come from
    mode: str = "topk"  # topk | full | sample
    k: int = 64  # topk: ids kept per position
    temperatures: list[float] | None = None  # topk: logZ grid; default [1] ([T_sample] in sample mode)
    ensemble: str = "logit_mean"  # logit_mean (the paper's) | prob_mean
    n_draws: int = 50  # sample: draws with replacement per position (1..255)
    sample_temperature: float = 1.0  # sample: draw from p_T
    offsets: int = 1  # window alignments (epoch e of the student uses alignment e mod N)
    seq_len: int | None = None  # default: the teachers' (max_position_embeddings // 2)
    batch_size: int = 32  # windows per teacher forward
    device: str = "auto"  # auto | cpu | cuda | mps
    overwrite: bool = False  # replace an existing cache with other settings
    max_windows: int | None = None  # first N windows per alignment only (quick runs, full-mode subsets)
    seed: int = 0  # sample: mixed with each row index into that window's generator seed
    rank: int = 0  # this process's rank (shards rank, rank+world, ...)
    world_size: int = 1  # writing processes (1 today)
    quiet: bool = False  # no progress bar / summary (benchmarks)

    def __post_init__(self):
        require(self.mode in schema.MODES, f"unknown --mode {self.mode!r}; choose one of {', '.join(schema.MODES)}")
        require(self.ensemble in schema.ENSEMBLES, f"unknown --ensemble {self.ensemble!r}")
        require(self.batch_size >= 1, f"--batch-size must be >= 1, got {self.batch_size}")
        require(self.offsets >= 1, f"--offsets must be >= 1, got {self.offsets}")
        require(self.seq_len is None or self.seq_len >= 1, f"--seq-len must be >= 1, got {self.seq_len}")
        require(self.max_windows is None or self.max_windows >= 1, "--max-windows must be >= 1")
        require(0 <= self.rank < self.world_size, f"rank {self.rank} outside 0..{self.world_size - 1}")
        require(self.world_size == 1, "several writing processes are not supported yet (world_size must be 1)")
        temps = [float(t) for t in (self.temperatures or [])]
        require(all(math.isfinite(t) and t > 0 for t in temps), f"--temperatures must be > 0, got {temps}")
        if self.mode == "topk":
            require(self.k >= 1, f"--k must be >= 1, got {self.k}")
        if self.mode == "sample":
            require(1 <= self.n_draws <= schema.MAX_DRAWS, f"--n-draws must be in 1..255, got {self.n_draws}")
            require(math.isfinite(self.sample_temperature) and self.sample_temperature > 0,
                    f"--sample-temperature must be > 0, got {self.sample_temperature}")
            require(not temps or temps == [self.sample_temperature],
                    "in sample mode the only temperature is --sample-temperature (do not pass --temperatures)")

    @property
    def grid(self) -> list[float]:
        """The temperatures the cache records: sorted and unique, [1] by default, [T_sample] in sample mode."""
        if self.mode == "sample":
            return [float(self.sample_temperature)]
        return sorted({float(t) for t in self.temperatures or [1.0]})


@dataclass
class Plan:
    """The validated job: the attrs the cache will carry, the tokens, the target spec."""

    attrs: dict
    tokens: np.ndarray
    spec: TargetSpec

    def windows(self, rows: np.ndarray) -> np.ndarray:
        """[len(rows), L+1] uint16 tokens of the given (alignment-major) rows."""
        a = self.attrs
        starts = row_starts(rows, a["windows_per_offset"], a["window_offsets"], a["seq_len"])
        return gather_windows(self.tokens, starts, a["seq_len"])


def window_geometry(cfg: CacheLogitsConfig, n_tokens: int, seq: int) -> tuple[list[int], int]:
    """(window offsets, windows per offset) of the split, checked to hold at least one window."""
    require(cfg.offsets <= seq, f"--offsets {cfg.offsets} exceeds seq_len {seq}")
    offsets = window_offsets(seq, cfg.offsets)
    per = windows_per_offset(n_tokens, seq, offsets)
    require(per >= 1, f"split {cfg.split!r} has {n_tokens} tokens: too few for one window of {seq + 1} "
            f"tokens at offsets {offsets}")
    return offsets, min(per, cfg.max_windows or per)


def plan_cache(cfg: CacheLogitsConfig) -> Plan:
    """Check DATA, teachers and geometry and build the cache's attrs; writes nothing."""
    from bl2 import __version__
    from bl2.cache.teachers import check_teachers, resolve_seq_len, teacher_records
    from bl2.data.store import TokenStore

    store = TokenStore(cfg.data)
    check_teachers(cfg.teachers, store.vocab_size, store.tokenizer_sha256)
    vocab, topk, sample = store.vocab_size, cfg.mode == "topk", cfg.mode == "sample"
    require(not topk or cfg.k <= vocab, f"--k {cfg.k} exceeds the vocabulary size {vocab}")
    seq = resolve_seq_len(cfg.teachers, cfg.seq_len)
    tokens = store.split(cfg.split)
    offsets, per = window_geometry(cfg, len(tokens), seq)
    attrs = {
        "bl2_cache_format": schema.FORMAT_VERSION, "mode": cfg.mode, "k": cfg.k if topk else None,
        "vocab_size": vocab, "seq_len": seq, "n_windows": per * len(offsets), "window_offset": offsets[0],
        "window_offsets": offsets, "windows_per_offset": per, "temperatures": cfg.grid, "ensemble": cfg.ensemble,
        "teachers": teacher_records(cfg.teachers), "tokenizer_sha256": store.tokenizer_sha256,
        "tokens_sha256": store.split_sha256(cfg.split), "split": cfg.split,
        "data_dir": str(Path(cfg.data).resolve()), "n_draws": cfg.n_draws if sample else None,
        "sample_temperature": float(cfg.sample_temperature) if sample else None,
        "sample_seed": cfg.seed if sample else None,
        "windows_done": 0, "complete": False, "diagnostics": {}, "bl2_version": __version__,
    }
    spec = TargetSpec(mode=cfg.mode, ensemble=cfg.ensemble, k=attrs["k"], temperatures=tuple(cfg.grid),
                      with_logz=schema.needs_logz(cfg.mode, cfg.grid), n_draws=attrs["n_draws"],
                      sample_temperature=float(cfg.sample_temperature), seed=cfg.seed)
    return Plan(attrs, tokens, spec)


def compute_shard(ensemble, plan: Plan, start: int, stop: int, batch_size: int, on_batch) -> dict[str, np.ndarray]:
    """All arrays of rows [start, stop), forwarded in batches that never leave the shard."""
    import torch

    rows = np.arange(start, stop)
    windows = plan.windows(rows)
    block: dict[str, np.ndarray] = {"input_ids": windows}
    for b in range(0, len(rows), batch_size):
        x = torch.from_numpy(windows[b : b + batch_size, :-1].astype(np.int64)).to(ensemble.device)
        out = compute_targets(ensemble.member_logits(x), plan.spec, rows[b : b + batch_size], ensemble.device)
        for name, value in out.items():
            if name not in block:
                block[name] = np.empty((len(rows), *value.shape[1:]), dtype=value.dtype)
            block[name][b : b + len(value)] = value
        on_batch(len(x))
    return block


def write_shards(ensemble, plan: Plan, arrays: dict, group, done: int, cfg: CacheLogitsConfig) -> dict:
    """Forward + write every shard from `done` on; returns this run's throughput."""
    from bl2.cache.store import ShardWriter
    from bl2.progress import make_progress

    n = plan.attrs["n_windows"]
    ranges = schema.shard_ranges(n, done, cfg.rank, cfg.world_size)
    writer = ShardWriter(arrays, lambda stop: group.attrs.update({"windows_done": stop}),
                         depth=1 if cfg.mode == "full" else 2)
    progress = nullcontext(None) if cfg.quiet else make_progress("windows")
    t0, cpu0 = time.perf_counter(), time.process_time()
    with progress as bar:
        task = bar.add_task("cache-logits", total=n, completed=done) if bar else None
        try:
            for start, stop in ranges:
                block = compute_shard(ensemble, plan, start, stop, cfg.batch_size,
                                      lambda m: bar and bar.advance(task, m))
                writer.put(start, stop, block)
            writer.close()
        except BaseException:
            writer.abort()
            raise
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0  # cpu: all threads, writer included
    windows = sum(e - s for s, e in ranges)
    return {"windows": windows, "seconds": seconds, "cpu_seconds": cpu, "windows_per_s": windows / max(seconds, 1e-9),
            "tokens_per_s": windows * plan.attrs["seq_len"] / max(seconds, 1e-9), "batch_size": cfg.batch_size,
            "device": ensemble.device}


def output_lock(cfg: CacheLogitsConfig):
    """The cache's lock (bl2.locks), held by rank 0, the process that creates metadata and commits."""
    from bl2.locks import hold

    return hold(cfg.out, "cache") if cfg.rank == 0 else nullcontext()


def cache_logits(cfg: CacheLogitsConfig) -> dict:
    """Create, resume or confirm the cache described by cfg; returns its final attrs (plus `state`)."""
    from bl2.cache.diagnostics import compute_diagnostics, format_diagnostics
    from bl2.cache.reader import CacheReader
    from bl2.cache.store import open_store, output_state
    from bl2.model.ensemble import Ensemble
    from bl2.progress import console
    from bl2.runtime import pick_device, provenance

    def say(message: str) -> None:  # soft_wrap: no line breaks inside messages in logs and pipes
        if not cfg.quiet:
            console.print(message, soft_wrap=True, markup=False)

    plan = plan_cache(cfg)
    with output_lock(cfg):  # one writer per cache, from the state decision to the last commit
        state = output_state(cfg.out, plan.attrs, cfg.overwrite)
        if state == "complete":
            say(f"{cfg.out} is already complete ({plan.attrs['n_windows']} windows): nothing to do")
            return {**CacheReader(cfg.out).attrs, "state": state}
        device = pick_device(cfg.device)
        ensemble = Ensemble(cfg.teachers, device, cfg.ensemble)  # load before touching --out: a bad teacher fails here
        plan.attrs["provenance"] = provenance(device) | {"batch_size": cfg.batch_size}
        group, arrays, done = open_store(cfg.out, plan.attrs, state)
        say(f"cache-logits: {plan.attrs['n_windows']} windows x {plan.attrs['seq_len']} tokens, mode {cfg.mode}, "
            f"{len(cfg.teachers)} teachers on {device}" + (f", resuming at window {done}" if done else ""))
        throughput = write_shards(ensemble, plan, arrays, group, done, cfg)
        diagnostics = compute_diagnostics(CacheReader(cfg.out), throughput)
        group.attrs.update({"diagnostics": diagnostics, "complete": True})  # `complete` is the last write
    for line in format_diagnostics(diagnostics):
        say(line)
    say(f"wrote {cfg.out}")
    return {**dict(group.attrs), "state": state}
