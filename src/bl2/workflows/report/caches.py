"""Cache diagnostics for `bl2 report`: what `bl2 cache info` prints, plus per-position distributions over a
cache's first windows (the report's cache figure)."""

from __future__ import annotations

DIST_WINDOWS = 256  # windows read for the per-position distributions (one shard: cheap for any cache size)


def read_cache(location: str) -> dict:
    """A cache's diagnostics (those `bl2 cache info` prints) and the per-position distributions over its first
    windows: head mass at each temperature (topk), unique sampled ids (sample)."""
    from bl2.cache.diagnostics import head_mass
    from bl2.cache.reader import CacheReader

    r = CacheReader(location)
    a, diag = r.attrs, r.attrs.get("diagnostics") or {}
    tokens = max(1, r.n_windows * r.seq_len)
    info = {"path": str(location), "mode": r.mode, "k": a.get("k"), "n_windows": r.n_windows, "seq_len": r.seq_len,
            "teachers": len(a.get("teachers") or []), "complete": r.complete,
            "bytes_per_token": diag.get("bytes_per_token", r.nbytes_stored() / tokens),
            "head_mass": diag.get("head_mass") or {}, "unique_ids": diag.get("unique_ids"), "dist": {}}
    ranges = r.committed_ranges()  # the first written shard (any one, in a cache still being written)
    start, stop = ranges[0] if ranges else (0, 0)
    stop = min(stop, start + DIST_WINDOWS)
    info["dist_windows"] = stop - start
    if stop > start and r.mode == "topk":
        block = r.read(start, stop, ["topk_logp"] + (["logz"] if "logz" in r.specs else []))
        for t in r.temperatures:
            mass = head_mass(block["topk_logp"], block.get("logz"), t, r.temperature_index(t))
            info["dist"][f"T={t:g}"] = mass.ravel()
    elif stop > start and r.mode == "sample":
        counts = r.read(start, stop, ["sample_counts"])["sample_counts"]
        info["dist"]["unique ids"] = (counts > 0).sum(-1).ravel()
    return info
