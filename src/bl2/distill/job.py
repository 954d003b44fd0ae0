"""The job seam. A `Job` is one training run as a value: its identity (what `--resume` must match), the window
source it reads, the objective it optimises, the validation windows, the tokenizer that goes into the final
model dir, and the resolved config. Three small builders make the jobs of bl2's commands; `loop.train` runs
any of them. Pretraining is the alpha = 1 job with no targets; the two distillation jobs differ only in where
the soft targets come from (a cache, or live teachers).

Everything that starts training from code (the CLI, quickstart, sweeps, benchmarks, tests) builds a Job and
calls `train(job, out, ..., hooks=...)`; it never assembles identities or sources by hand.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from bl2 import storage
from bl2.distill.config import TrainConfig
from bl2.distill.objective import LiveTargets, LossSpec, Objective
from bl2.errors import UserError, require
from bl2.runs.ledger import budget_info
from bl2.storage import display


@dataclass
class Job:
    """One training run, ready to start."""

    cfg: TrainConfig  # resolved config (the cache's seq_len already applied)
    identity: dict  # what a resumed run must share with the run it continues (run.json "identity")
    source: object  # window source: .n_windows and .batch(epoch, index, batch_size) -> Batch
    objective: Objective  # loss spec + target source
    val_windows: np.ndarray  # [N, L+1] validation windows
    tokenizer_dir: str  # tokenizer files copied into the final model dir
    info: dict = field(default_factory=dict)  # extra run.json entries (e.g. a sweep trial's number and params)
    words_per_token: float | None = None  # of the split the windows come from: words seen = tokens x this

    def __post_init__(self):
        # refused here, before a run dir exists, rather than by the loop after creating one
        n = self.source.n_windows
        require(n >= self.cfg.batch_size, f"{n} training windows are fewer than one batch of {self.cfg.batch_size}: "
                "lower --batch-size (or give more data)")
        require(self.words_per_token or not self.cfg.word_checkpoints, "--word-checkpoints needs the words per "
                "token of the training split, which this DATA dir does not record (run `bl2 prepare` again)")


# Identities hold content hashes, never paths: a DATA dir, a cache or a teacher that moved is the same input,
# and `--resume` accepts it. The paths go to run.json's "paths" (for humans).
def _data_identity(store, with_train: bool = True) -> dict:
    out = {"tokenizer_sha256": store.tokenizer_sha256}
    return out | ({"train_sha256": store.split_sha256("train")} if with_train else {})


def _val_windows(store, seq_len: int) -> np.ndarray:
    from bl2.data.windows import eval_windows

    val = eval_windows(store.split("val"), seq_len)
    require(len(val) > 0, f"the val split of {store.data_dir} has no full window of {seq_len + 1} tokens")
    return val


def pretrain_job(cfg: TrainConfig, data: str) -> Job:
    """`bl2 pretrain`: CE only, on DATA's train split with fresh random window offsets every epoch."""
    from bl2.data.store import TokenStore
    from bl2.distill.sources import RandomOffsetWindows

    store = TokenStore(data)
    identity = {"command": "pretrain", "config": cfg.identity(), "vocab_size": store.vocab_size,
                "data": _data_identity(store)}
    source = RandomOffsetWindows(store.split("train"), cfg.seq_len, cfg.seed)
    return Job(cfg, identity, source, Objective(LossSpec()), _val_windows(store, cfg.seq_len), store.tokenizer_dir,
               {"paths": {"data": display(store.data_dir)}, "budget": budget_info(store)},
               store.words_per_token("train"))


# The cache's content identity: its defining attrs and its teachers' weight hashes (not their paths).
CACHE_IDENTITY = ("mode", "k", "n_windows", "seq_len", "temperatures", "ensemble", "tokens_sha256",
                  "n_draws", "sample_temperature", "window_offsets")


# Compact encodings (#18) are part of what the cache is; recorded only where they differ from the canonical arrays,
# so the identity of runs from canonical caches (made before or after #18) is unchanged.
ENCODING_IDENTITY = ("head_logp_encoding", "head_logp_step", "head_order", "sparse_ids_encoding")


def cache_identity(attrs: dict) -> dict:
    return {k: attrs.get(k) for k in CACHE_IDENTITY} | {
        "teacher_sha256": [t.get("sha256") for t in attrs.get("teachers") or []]} | {
        k: attrs[k] for k in ENCODING_IDENTITY if attrs.get(k) not in (None, "float16", "plain", "value")}


def cache_job(cfg: TrainConfig, cache, data: str | None = None, teacher_words=None) -> Job:
    """`bl2 distill --cache`: targets streamed from a logit cache; the teachers are never loaded.
    `cache` is a location or an already opened `OpenedCache` (a process training many students decodes the
    cache once and hands it to every job). teacher_words: the teachers' training words where their run.json
    cannot tell (the budget ledger)."""
    from bl2.cache.loader import CacheWindows, OpenedCache, open_cache
    from bl2.data.store import TokenStore
    from bl2.progress import console

    opened = cache if isinstance(cache, OpenedCache) else open_cache(str(cache), cfg.cache_in_memory)
    reader = opened.reader
    if data is None:
        require(storage.is_dir(reader.data_dir),
                f"the DATA dir recorded in cache {reader.path} ({reader.data_dir}) is not there: pass --data DATA_DIR")
    data = str(data or reader.data_dir)
    store = TokenStore(data)
    require(store.vocab_size == reader.vocab_size and store.tokenizer_sha256 == reader.tokenizer_sha256,
            f"cache {reader.path} was made with another tokenizer than {data}'s (vocab {reader.vocab_size} vs "
            f"{store.vocab_size}); the student must share the teachers' tokenizer")
    cfg = dataclasses.replace(cfg, seq_len=reader.seq_len)  # the cache's windows fix the sequence length
    t_index = reader.temperature_index(cfg.temperature)  # refuses a T the cache cannot give exactly
    identity = {"command": "distill", "config": cfg.identity(), "vocab_size": store.vocab_size,
                "data": _data_identity(store, with_train=False),
                "cache": cache_identity(reader.attrs)}
    console.print(f"cache {reader.path}: mode {reader.mode}, {reader.n_windows} windows, "
                  f"{reader.nbytes_decoded() / 2**20:.0f} MiB decoded, "
                  f"{'in RAM' if opened.data is not None else 'streamed'}")
    source = CacheWindows(opened, cfg.seed, cfg.shuffle_buffer)
    objective = Objective(LossSpec.of(cfg, reader.mode, t_index, reader.n_draws))
    paths = {"data": display(store.data_dir), "cache": display(reader.path)}
    words_store, split = _cache_words_store(reader, store)
    budget = budget_info(words_store, split, [t["path"] for t in reader.attrs.get("teachers", [])], teacher_words)
    return Job(cfg, identity, source, objective, _val_windows(store, cfg.seq_len), store.tokenizer_dir,
               {"paths": paths, "budget": budget}, words_store.words_per_token(split))


def _cache_words_store(reader, store):
    """The DATA dir the cache's windows came from (its recorded one; else the one in use) and their split."""
    from bl2.data.store import TokenStore

    split = reader.attrs.get("split", "train")
    try:
        return TokenStore(reader.data_dir), split
    except (UserError, KeyError):
        return store, split


def online_job(cfg: TrainConfig, teachers: list[str], data: str, ensemble: str = "logit_mean",
               device: str = "auto", teacher_words=None, fresh_offsets: bool = False) -> Job:
    """`bl2 distill --teachers`: the online baseline. The ensemble runs live on the very windows, in the very
    order, that a cache of the same teachers would hold (offset 0), with the loss of a full cache; with
    fresh_offsets, on pretraining's windows instead (a new random offset per window every epoch, as the
    reference code), which no cache can hold."""
    from bl2.cache.teachers import teacher_records
    from bl2.data.store import TokenStore
    from bl2.distill.sources import FixedWindows, RandomOffsetWindows
    from bl2.model.ensemble import Ensemble
    from bl2.runtime import pick_device

    require(data is not None, "online distillation (--teachers) needs --data DATA_DIR")
    store = TokenStore(data)
    ens = Ensemble(teachers, pick_device(device), rule=ensemble)
    require(ens.vocab_size == store.vocab_size and ens.tokenizer_sha256 in (None, store.tokenizer_sha256),
            f"the teachers' tokenizer differs from {data}'s")
    require(cfg.seq_len <= ens.max_positions, f"seq_len {cfg.seq_len} exceeds the teachers' limit {ens.max_positions}")
    records = teacher_records(teachers)
    identity = {"command": "distill-online", "config": cfg.identity(), "vocab_size": store.vocab_size,
                "data": _data_identity(store), "teachers": [t["sha256"] for t in records], "ensemble": ensemble}
    if fresh_offsets:  # recorded only when set: the identity of fixed-window online runs is unchanged
        identity["windows"] = "fresh"
        source = RandomOffsetWindows(store.split("train"), cfg.seq_len, cfg.seed)
    else:
        source = FixedWindows(store.split("train"), cfg.seq_len, cfg.seed, offsets=(0,), buffer=cfg.shuffle_buffer)
    objective = Objective(LossSpec.of(cfg, "full"), LiveTargets(ens))
    paths = {"data": display(store.data_dir), "teachers": [t["path"] for t in records]}
    budget = budget_info(store, "train", teachers, teacher_words)
    return Job(cfg, identity, source, objective, _val_windows(store, cfg.seq_len), store.tokenizer_dir,
               {"paths": paths, "budget": budget}, store.words_per_token("train"))
