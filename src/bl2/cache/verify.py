"""`bl2 cache verify CACHE`: read every chunk of a cache (crc32c), check its attrs, counts, tokens and the
invariants of its mode, and with --teachers recompute random windows. One PASS/FAIL/SKIP line per check.

Exit codes (set by the CLI): 0 all checks pass, 1 a check failed, 2 a usage error (no such cache, bad --data).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bl2 import storage
from bl2.cache import schema
from bl2.cache.checks import ABS_TOL, Checks, logsumexp
from bl2.cache.diagnostics import head_mass
from bl2.cache.reader import CacheReader
from bl2.cache.shards import ShardError
from bl2.data.windows import gather_windows, row_starts, window_offsets
from bl2.errors import UserError


def check_attrs(r: CacheReader, c: Checks) -> None:
    a = r.attrs
    c.check("attrs", 1 <= r.vocab_size <= schema.MAX_VOCAB, f"vocab_size {r.vocab_size} outside 1..65536")
    c.check("attrs", all(t > 0 for t in r.temperatures), f"temperatures {r.temperatures} must be > 0")
    offsets = window_offsets(r.seq_len, len(r.window_offsets))
    c.check("attrs", r.window_offsets == offsets and a["window_offset"] == offsets[0],
            f"window_offsets {r.window_offsets} != {offsets}")
    if r.mode == "topk":
        c.check("attrs", 1 <= int(r.k) <= r.vocab_size, f"k {r.k} outside 1..vocab_size")
    if r.mode == "sample":
        c.check("attrs", 1 <= int(r.n_draws) <= schema.MAX_DRAWS, f"n_draws {r.n_draws} outside 1..255")
    c.check("complete", r.complete and r.windows_done == r.n_windows,
            f"complete={r.complete}, {r.windows_done} of {r.n_windows} windows committed")


def read_block(r: CacheReader, start: int, stop: int, c: Checks) -> dict[str, np.ndarray]:
    """The arrays of rows [start, stop) that decode; a missing shard or a checksum failure is recorded, not
    raised (the reader checks the shard files before it decodes)."""
    out = {}
    for name in r.arrays:
        try:
            out[name] = r.read(start, stop, [name])[name]
            c.check("shards", True)
            c.check("checksums", True)
        except ShardError as e:
            c.check("shards", False, str(e))
        except UserError as e:
            c.check("checksums", False, str(e))
    return out


def check_topk(r: CacheReader, block: dict, where: str, c: Checks) -> None:
    if "topk_ids" in block:
        ids = block["topk_ids"].astype(np.int64)
        srt = np.sort(ids, axis=-1)
        c.check("topk ids", bool((ids < r.vocab_size).all() and (srt[..., 1:] != srt[..., :-1]).all()),
                f"ids out of range or repeated in a position ({where})")
    if "topk_logp" in block:
        lp = block["topk_logp"].astype(np.float32)
        c.check("topk order", bool((np.diff(lp, axis=-1) <= 0).all()), f"log-probs not descending ({where})")
        c.check("topk values", bool(np.isfinite(lp).all() and (lp <= ABS_TOL).all()),
                f"log-probs must be finite and <= 0 ({where})")
        for t in r.temperatures:
            ti = r.temperature_index(t)
            if ti is not None and "logz" not in block:  # logz failed its checksum: reported above
                continue
            mass = head_mass(block["topk_logp"], block.get("logz"), t, ti)
            c.check("head mass", bool(np.isfinite(mass).all() and (mass <= 1 + 1e-2).all()),
                    f"head mass at T={t:g} exceeds 1 (max {np.nanmax(mass):.4f}) ({where})")


def check_full(r: CacheReader, block: dict, where: str, c: Checks) -> None:
    if "logp" not in block:
        return
    worst = float(np.abs(logsumexp(block["logp"].astype(np.float32))).max())
    c.check("logp normalised", worst < 1e-2, f"max |logsumexp(logp)| {worst:.4f} ({where})")


def check_sample(r: CacheReader, block: dict, where: str, c: Checks) -> None:
    if "sample_counts" not in block or "sample_ids" not in block:
        return
    cnt, ids = block["sample_counts"].astype(np.int64), block["sample_ids"].astype(np.int64)
    sums = cnt.sum(-1)
    c.check("sample counts", bool((sums == r.n_draws).all()),
            f"counts sum to {sums.min()}..{sums.max()}, not n_draws {r.n_draws} ({where})")
    c.check("sample order", _sorted_slots(cnt, ids), f"slots not sorted by count then id ({where})")
    c.check("sample ids", bool((ids < r.vocab_size).all() and (ids[cnt == 0] == 0).all()),
            f"ids out of range or non-zero in empty slots ({where})")


def _sorted_slots(cnt: np.ndarray, ids: np.ndarray) -> bool:
    """Non-empty slots strictly ordered by (count desc, id asc), empty slots only at the end."""
    key = np.where(cnt > 0, cnt * (1 << 16) + ((1 << 16) - 1 - ids), -1)
    d = np.diff(key, axis=-1)
    return bool(((d < 0) | ((key[..., 1:] == -1) & (key[..., :-1] == -1))).all())


def check_tokens(r: CacheReader, block: dict, tokens: np.ndarray | None, start: int, c: Checks) -> None:
    if tokens is None or "input_ids" not in block:
        return
    rows = np.arange(start, start + len(block["input_ids"]))
    starts = row_starts(rows, r.windows_per_offset, r.window_offsets, r.seq_len)
    ok = bool(starts.max() + r.seq_len < len(tokens))
    ok = ok and np.array_equal(gather_windows(tokens, starts, r.seq_len), block["input_ids"])
    c.check("input_ids", ok, f"rows {start}:{start + len(rows)} differ from the token store's windows")


def load_tokens(r: CacheReader, data: Path | None, c: Checks) -> np.ndarray | None:
    from bl2.data.store import TokenStore

    if data is None and not storage.is_dir(r.data_dir):
        c.skip("input_ids", f"recorded data_dir {r.data_dir} not found: pass --data to check the tokens")
        return None
    store = TokenStore(data if data is not None else r.data_dir)
    split = r.attrs["split"]
    c.check("data identity", store.tokenizer_sha256 == r.tokenizer_sha256, "DATA tokenizer differs from the cache's")
    c.check("data identity", store.split_sha256(split) == r.attrs["tokens_sha256"],
            f"DATA split {split!r} differs from the one the cache was made from (tokens_sha256)")
    return store.split(split)


def verify(path: str, data: Path | None = None, teachers: list[Path] | None = None, n_windows: int = 4,
           device: str = "auto", say=None) -> bool:
    """Run every check; prints one line per check and returns True when all pass."""
    from bl2.progress import console

    say = say or (lambda message: console.print(message, soft_wrap=True, markup=False))
    r = CacheReader(path)
    c = Checks()
    check_attrs(r, c)
    tokens = load_tokens(r, data, c)
    done = 0
    for start, stop in r.committed_ranges():
        done += stop - start
        block = read_block(r, start, stop, c)
        where = f"rows {start}:{stop}"
        check_tokens(r, block, tokens, start, c)
        {"topk": check_topk, "full": check_full, "sample": check_sample}[r.mode](r, block, where, c)
    c.details["checksums"] = f"{len(r.arrays)} arrays, {done} rows"
    c.details["shards"] = f"every shard file of the {done} committed rows is present"
    if teachers:
        from bl2.cache.recompute import recompute_check

        recompute_check(r, teachers, n_windows, device, c)
    else:
        c.skip("recompute", "pass --teachers to recompute random windows")
    ok = c.report(say)
    say(f"{'OK' if ok else 'FAILED'}: {path}")
    return ok
