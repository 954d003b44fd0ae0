"""`bl2 cache-logits`: run the teacher ensemble once over the windows of a split and store its soft targets
in a cache (format v2, DESIGN §5 and docs/cache-format.md), on one process or many (torchrun).

The main thread forwards the teachers batch by batch and turns the fp32 ensemble log-probs into the mode's
arrays (`bl2.cache.targets`); a background thread (`bl2.cache.store.ShardWriter`) compresses and writes whole
shards and commits each one. Batches never cross a shard boundary, so any run forwards exactly the batches of
an uninterrupted one and produces identical arrays.

Under torchrun, rank 0 checks --out and creates the group and arrays before any other rank writes; every rank
then takes every N-th of the shards not yet committed and is the only writer of those shard files (Zarr loses
data when two writers touch one shard); after all ranks are done rank 0 computes the diagnostics and sets
`complete`. --out may be a local folder or an fsspec URL (s3://...).
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np

from bl2 import storage
from bl2.cache import schema
from bl2.cache.targets import TargetSpec, compute_targets
from bl2.data.windows import gather_windows, row_starts, window_offsets, windows_per_offset
from bl2.errors import require
from bl2.storage import display


@dataclass
class CacheLogitsConfig:
    """Everything `bl2 cache-logits` needs; checks that need no file run in __post_init__."""

    data: str  # prepared DATA dir (tokenizer + tokens.zarr): a folder or a URL
    teachers: list[str]  # teacher model dirs (local; same vocab and tokenizer as DATA)
    out: str  # cache location: a folder or an fsspec URL (s3://bucket/cache.zarr)
    split: str = "train"  # which token split the windows come from
    mode: str = "topk"  # topk | full | sample | hybrid
    k: int = 64  # topk, hybrid: ids kept per position (the exact head)
    temperatures: list[float] | None = None  # topk: logZ grid; default [1] ([T_sample] in sample/hybrid mode)
    ensemble: str = "logit_mean"  # logit_mean (the paper's) | prob_mean
    n_draws: int = 50  # sample: draws with replacement per position; hybrid: from the tail (1..255)
    sample_temperature: float = 1.0  # sample, hybrid: draw from p_T
    logp_dtype: str = "float16"  # full: float16 (half the bytes) | float32 (offline == online to float32)
    head_logp: str = "float16"  # topk, hybrid: float16 | uint8 (lossy, bl2.cache.encodings)
    logp_step: float | None = None  # head_logp uint8: quantisation step in nats (default 1/16)
    sparse_ids: str = "plain"  # sample, hybrid: plain | delta (lossless, bl2.cache.encodings)
    head_order: str = "value"  # topk, hybrid: value | id (stored by id, ids delta-coded; lossless)
    offsets: int = 1  # window alignments (epoch e of the student uses alignment e mod N)
    seq_len: int | None = None  # default: the teachers' (max_position_embeddings // 2)
    batch_size: int = 32  # windows per teacher forward
    device: str = "auto"  # auto | cpu | cuda | mps
    overwrite: bool = False  # replace an existing cache with other settings
    max_windows: int | None = None  # first N windows per alignment only (quick runs, full-mode subsets)
    seed: int = 0  # sample: mixed with each row index into that window's generator seed
    quiet: bool = False  # no progress bar / summary (benchmarks)

    def __post_init__(self):
        require(self.mode in schema.MODES, f"unknown --mode {self.mode!r}; choose one of {', '.join(schema.MODES)}")
        require(self.ensemble in schema.ENSEMBLES, f"unknown --ensemble {self.ensemble!r}")
        require(self.batch_size >= 1, f"--batch-size must be >= 1, got {self.batch_size}")
        require(self.offsets >= 1, f"--offsets must be >= 1, got {self.offsets}")
        require(self.seq_len is None or self.seq_len >= 1, f"--seq-len must be >= 1, got {self.seq_len}")
        require(self.max_windows is None or self.max_windows >= 1, "--max-windows must be >= 1")
        require(self.logp_dtype in schema.LOGP_DTYPES, f"--logp-dtype must be one of {', '.join(schema.LOGP_DTYPES)}")
        require(self.logp_dtype == "float16" or self.mode == "full", "--logp-dtype applies to --mode full only")
        temps = [float(t) for t in (self.temperatures or [])]
        require(all(math.isfinite(t) and t > 0 for t in temps), f"--temperatures must be > 0, got {temps}")
        if self.mode in ("topk", "hybrid"):
            require(self.k >= 1, f"--k must be >= 1, got {self.k}")
        if self.mode in ("sample", "hybrid"):
            require(1 <= self.n_draws <= schema.MAX_DRAWS, f"--n-draws must be in 1..255, got {self.n_draws}")
            require(math.isfinite(self.sample_temperature) and self.sample_temperature > 0,
                    f"--sample-temperature must be > 0, got {self.sample_temperature}")
            require(not temps or temps == [self.sample_temperature], f"in {self.mode} mode the only temperature "
                    "is --sample-temperature (do not pass --temperatures)")
        require((self.head_logp, self.head_order) == ("float16", "value") or self.mode in ("topk", "hybrid"),
                "--head-logp and --head-order apply to --mode topk and hybrid only")
        require(self.sparse_ids == "plain" or self.mode in ("sample", "hybrid"),
                "--sparse-ids applies to --mode sample and hybrid only")
        _ = self.encoding  # validates --head-logp / --logp-step / --sparse-ids

    @property
    def encoding(self):
        """The compact encodings asked for (bl2.cache.encodings)."""
        from bl2.cache.encodings import DEFAULT_STEP, Encoding

        step = self.logp_step if self.logp_step is not None or self.head_logp != "uint8" else DEFAULT_STEP
        return Encoding(self.head_logp, None if step is None else float(step), self.sparse_ids, self.head_order)

    @property
    def grid(self) -> list[float]:
        """The temperatures the cache records: sorted and unique, [1] by default, [T_sample] in sample and hybrid
        mode."""
        if self.mode in ("sample", "hybrid"):
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
    vocab, topk, sample = store.vocab_size, cfg.mode in ("topk", "hybrid"), cfg.mode in ("sample", "hybrid")
    require(not topk or cfg.k <= vocab, f"--k {cfg.k} exceeds the vocabulary size {vocab}")
    require(cfg.mode != "hybrid" or cfg.k < vocab, f"--mode hybrid needs --k below the vocabulary size {vocab} "
            "(the draws come from the ids outside the head)")
    seq = resolve_seq_len(cfg.teachers, cfg.seq_len)
    tokens = store.split(cfg.split)
    offsets, per = window_geometry(cfg, len(tokens), seq)
    attrs = {
        "bl2_cache_format": schema.FORMAT_VERSION, "mode": cfg.mode, "k": cfg.k if topk else None,
        "vocab_size": vocab, "seq_len": seq, "n_windows": per * len(offsets), "window_offset": offsets[0],
        "window_offsets": offsets, "windows_per_offset": per, "temperatures": cfg.grid, "ensemble": cfg.ensemble,
        "teachers": teacher_records(cfg.teachers), "tokenizer_sha256": store.tokenizer_sha256,
        "tokens_sha256": store.split_sha256(cfg.split), "split": cfg.split,
        "data_dir": display(cfg.data), "n_draws": cfg.n_draws if sample else None,
        "sample_temperature": float(cfg.sample_temperature) if sample else None,
        "sample_seed": cfg.seed if sample else None, "logp_dtype": cfg.logp_dtype if cfg.mode == "full" else None,
        "windows_done": 0, "complete": False, "diagnostics": {}, "bl2_version": __version__,
        **cfg.encoding.attrs(cfg.mode),
    }
    attrs["committed_columns"] = ["rows", *schema.array_specs(attrs)]  # v2's commit record, per shard
    spec = TargetSpec(mode=cfg.mode, ensemble=cfg.ensemble, k=attrs["k"], temperatures=tuple(cfg.grid),
                      with_logz=schema.needs_logz(cfg.mode, cfg.grid), n_draws=attrs["n_draws"],
                      sample_temperature=float(cfg.sample_temperature), seed=cfg.seed, logp_dtype=cfg.logp_dtype,
                      encoding=cfg.encoding)
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


def write_shards(ensemble, plan: Plan, arrays: dict, ranges: list, commit, cfg: CacheLogitsConfig) -> dict:
    """Forward + write this rank's shards; returns its throughput."""
    from bl2.cache.store import ShardWriter
    from bl2.progress import make_progress

    writer = ShardWriter(arrays, commit, depth=1 if cfg.mode == "full" else 2)
    progress = nullcontext(None) if cfg.quiet else make_progress("windows")
    t0, cpu0 = time.perf_counter(), time.process_time()
    windows = sum(e - s for s, e in ranges)
    with progress as bar:
        task = bar.add_task("cache-logits", total=windows) if bar else None
        try:
            for start, stop in ranges:
                block = compute_shard(ensemble, plan, start, stop, cfg.batch_size,
                                      lambda m: bar and bar.advance(task, m))
                writer.put(start // schema.SHARD_WINDOWS, start, stop, block)
            writer.close()
        except BaseException:
            writer.abort()
            raise
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0  # cpu: all threads, writer included
    return {"windows": windows, "seconds": seconds, "cpu_seconds": cpu}


def _throughput(parts: list[dict], plan: Plan, cfg: CacheLogitsConfig, device: str) -> dict:
    """All ranks together: windows written over the slowest rank's time."""
    windows, seconds = sum(p["windows"] for p in parts), max(p["seconds"] for p in parts)
    return {"windows": windows, "seconds": seconds, "cpu_seconds": sum(p["cpu_seconds"] for p in parts),
            "windows_per_s": windows / max(seconds, 1e-9), "processes": len(parts),
            "tokens_per_s": windows * plan.attrs["seq_len"] / max(seconds, 1e-9), "batch_size": cfg.batch_size,
            "device": device}


def output_lock(d, cfg: CacheLogitsConfig):
    """The cache's lock (bl2.locks), held by rank 0, the process that creates metadata and commits."""
    from bl2.locks import hold

    return hold(cfg.out, "cache") if d.is_main else nullcontext()


def cache_logits(cfg: CacheLogitsConfig) -> dict:
    """Create, resume or confirm the cache described by cfg; returns its final attrs (plus `state`). Under
    torchrun every rank calls this."""
    from bl2.cache.reader import CacheReader
    from bl2.cache.store import (
        committed_shards,
        open_for_write,
        output_state,
        prepare_store,
        repair_committed,
        shard_commit,
    )
    from bl2.model.ensemble import Ensemble
    from bl2.progress import console
    from bl2.runtime import Dist, init_distributed, pick_device, provenance

    def say(message: str) -> None:  # soft_wrap: no line breaks inside messages in logs and pipes
        if not cfg.quiet and d.is_main:
            console.print(message, soft_wrap=True, markup=False)

    device = pick_device(cfg.device)
    d = Dist(init_distributed(device))
    plan = plan_cache(cfg)
    with output_lock(d, cfg):  # one writer per cache (rank 0 holds it), from the state decision to `complete`
        state = d.on_main(lambda: output_state(cfg.out, plan.attrs, cfg.overwrite))
        if state in ("complete", "resume"):  # a rerun trusts the finished-shard record only where the files agree
            damaged = d.on_main(lambda: repair_committed(cfg.out))
            if damaged:
                say(f"{cfg.out}: {len(damaged)} finished shards are missing or damaged, writing them again "
                    f"(first: {damaged[0]})")
                state = "resume"
        if state == "complete":
            say(f"{cfg.out} is already complete ({plan.attrs['n_windows']} windows): nothing to do")
            return {**CacheReader(cfg.out).attrs, "state": state}
        ensemble = Ensemble(cfg.teachers, device, cfg.ensemble)  # load before touching --out: a bad teacher fails here
        plan.attrs["provenance"] = provenance(device) | {"batch_size": cfg.batch_size, "world_size": d.world_size}
        d.on_main(lambda: prepare_store(cfg.out, plan.attrs, state))  # rank 0 creates; the others wait for it
        group, arrays, record = open_for_write(cfg.out, plan.attrs)
        done = committed_shards(record)
        ranges = schema.shards_todo(plan.attrs["n_windows"], done, d.rank, d.world_size)
        say(f"cache-logits: {plan.attrs['n_windows']} windows x {plan.attrs['seq_len']} tokens, mode {cfg.mode}, "
            f"{len(cfg.teachers)} teachers on {device}" + (f" x {d.world_size} processes" if d.enabled else "")
            + (f", resuming: {len(done)} of {schema.n_shards(plan.attrs['n_windows'])} shards already written"
               if done else ""))
        part = write_shards(ensemble, plan, arrays, ranges, shard_commit(arrays, record), cfg)
        parts = d.gather(part)  # also the barrier: every rank has committed its shards
        attrs = d.on_main(lambda: _complete(cfg, plan, _throughput(parts, plan, cfg, device), say))
        return {**attrs, "state": state}


def _complete(cfg: CacheLogitsConfig, plan: Plan, throughput: dict, say) -> dict:
    """Rank 0, after every rank has finished: check every shard is committed, store diagnostics, set
    `complete` (the last write)."""
    from bl2.cache.diagnostics import compute_diagnostics, format_diagnostics
    from bl2.cache.reader import CacheReader

    reader = CacheReader(cfg.out)
    missing = schema.n_shards(reader.n_windows) - len(reader.committed)
    require(missing == 0, f"{cfg.out}: {missing} shards were not committed; rerun the same command to finish")
    diagnostics = compute_diagnostics(reader, throughput)
    group = storage.open_zarr_group(cfg.out, mode="r+")
    group.attrs.update({"diagnostics": diagnostics, "windows_done": reader.n_windows})
    group.attrs.update({"complete": True})  # `complete` is the last write
    for line in format_diagnostics(diagnostics):
        say(line)
    say(f"wrote {cfg.out}")
    return dict(group.attrs)
