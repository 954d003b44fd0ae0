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
    if r.mode in ("topk", "hybrid"):
        top = r.vocab_size - (r.mode == "hybrid")  # hybrid needs a tail to draw from
        c.check("attrs", 1 <= int(r.k) <= top, f"k {r.k} outside 1..{top}")
    if r.mode in ("sample", "hybrid"):
        c.check("attrs", 1 <= int(r.n_draws) <= schema.MAX_DRAWS, f"n_draws {r.n_draws} outside 1..255")
    c.check("encoding", True)
    c.details["encoding"] = r.encoding.describe()
    c.check("complete", r.complete and r.windows_done == r.n_windows,
            f"complete={r.complete}, {r.windows_done} of {r.n_windows} windows committed")


def read_block(r: CacheReader, start: int, stop: int, c: Checks) -> dict[str, np.ndarray] | None:
    """The arrays of rows [start, stop); a missing shard or a checksum failure is recorded, not raised (the reader
    checks the shard files before it decodes). None when a shard of these rows is missing or damaged: the checks
    of their values then say "skipped" for them, never "pass"."""
    out, damaged = {}, False
    for name in r.arrays:
        try:
            out[name] = r.read(start, stop, [name])[name]
            c.check("shards", True)
            c.check("checksums", True)
        except ShardError as e:
            c.check("shards", False, str(e))
            damaged = True
        except UserError as e:
            c.check("checksums", False, str(e))
    return None if damaged else out


# checks of the cache as a whole; every other check reads the rows' values
WHOLE_CACHE = ("attrs", "encoding", "complete", "shards", "data identity")


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


def check_sample(r: CacheReader, block: dict, where: str, c: Checks, prefix: str = "sample") -> None:
    ids_name, cnt_name = f"{prefix}_ids", f"{prefix}_counts"
    if cnt_name not in block or ids_name not in block:
        return
    cnt, ids = block[cnt_name].astype(np.int64), block[ids_name].astype(np.int64)
    sums = cnt.sum(-1)
    # hybrid: a position whose tail mass underflowed to 0 has no draws at all
    ok = (sums == r.n_draws) | ((sums == 0) if prefix == "tail" else False)
    c.check(f"{prefix} counts", bool(ok.all()),
            f"counts sum to {sums.min()}..{sums.max()}, not n_draws {r.n_draws} ({where})")
    c.check(f"{prefix} order", _sorted_slots(cnt, ids), f"slots not sorted by count then id ({where})")
    c.check(f"{prefix} ids", bool((ids < r.vocab_size).all() and (ids[cnt == 0] == 0).all()),
            f"ids out of range or non-zero in empty slots ({where})")


def check_hybrid(r: CacheReader, block: dict, where: str, c: Checks) -> None:
    """The head as in topk mode, the tail draws as in sample mode, and no tail draw inside the head."""
    check_topk(r, block, where, c)
    check_sample(r, block, where, c, "tail")
    if "topk_ids" in block and "tail_ids" in block and "tail_counts" in block:
        head, tail, drawn = block["topk_ids"], block["tail_ids"], block["tail_counts"] > 0
        clash = any(bool(((tail[i : i + 16, ..., :, None] == head[i : i + 16, ..., None, :]).any(-1)
                          & drawn[i : i + 16]).any()) for i in range(0, len(head), 16))  # 16 rows: bounded memory
        c.check("tail ids", not clash, f"a tail draw is a head id ({where})")


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
    from bl2.progress import make_progress

    done, unread = 0, []
    with make_progress("rows") as bar:  # a large cache takes minutes to decode: progress on stderr
        task = bar.add_task("cache verify", total=r.windows_done)
        for start, stop in r.committed_ranges():
            done += stop - start
            bar.advance(task, stop - start)
            block = read_block(r, start, stop, c)
            if block is None:
                unread.append((start, stop))
                continue
            where = f"rows {start}:{stop}"
            check_tokens(r, block, tokens, start, c)
            {"topk": check_topk, "full": check_full, "sample": check_sample, "hybrid": check_hybrid}[r.mode](
                r, block, where, c)
    c.details["checksums"] = f"{len(r.arrays)} arrays, {done} rows"
    c.details["shards"] = f"every shard file of the {done} committed rows is present"
    if unread:
        rows = sum(e - s for s, e in unread)
        why = (f"{rows} of {done} committed rows unread (their shard files are missing or damaged, first rows "
               f"{unread[0][0]}:{unread[0][1]}); passes on the other {done - rows} rows")
        for name in ["checksums", *c.results]:
            if name not in WHOLE_CACHE and not c.results.get(name):
                c.skip(name, why)
    if teachers:
        from bl2.cache.recompute import recompute_check

        recompute_check(r, teachers, n_windows, device, c)
    else:
        c.skip("recompute", "pass --teachers to recompute random windows")
    ok = c.report(say)
    say(f"{'OK' if ok else 'FAILED'}: {path}")
    return ok
