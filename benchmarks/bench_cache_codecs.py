"""Codec and encoding choices for the cache's arrays, measured on real teacher outputs (issue #18, part 2).

For every array of the given caches (read back decoded: the canonical values), and for the compact encodings
(uint8 head log-probs at a few steps, delta-coded sparse ids, and head ids sorted by id + delta with the values in
the same order), write the array into an in-memory zarr store with the cache's chunks and shards and each candidate
codec chain (then crc32c, as the cache does) and report bytes per token and compress / decompress speed (1 thread).

    python benchmarks/bench_cache_codecs.py CACHE [CACHE ...] [--windows 256] [--out-json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

CODECS = {  # name -> (kind, args)
    "zstd5-shuf": ("blosc", dict(cname="zstd", clevel=5, shuffle="shuffle")),  # the format's default
    "zstd5-none": ("blosc", dict(cname="zstd", clevel=5, shuffle="noshuffle")),
    "zstd5-bit": ("blosc", dict(cname="zstd", clevel=5, shuffle="bitshuffle")),
    "zstd1-shuf": ("blosc", dict(cname="zstd", clevel=1, shuffle="shuffle")),
    "zstd9-shuf": ("blosc", dict(cname="zstd", clevel=9, shuffle="shuffle")),
    "zstd9-bit": ("blosc", dict(cname="zstd", clevel=9, shuffle="bitshuffle")),
    "lz4-shuf": ("blosc", dict(cname="lz4", clevel=5, shuffle="shuffle")),
    "zstd-plain3": ("zstd", dict(level=3)),
    "zstd-plain9": ("zstd", dict(level=9)),
    "zstd-plain19": ("zstd", dict(level=19)),
}


def compressors(name: str):
    from zarr.codecs import BloscCodec, Crc32cCodec, ZstdCodec

    kind, args = CODECS[name]
    return [BloscCodec(**args) if kind == "blosc" else ZstdCodec(**args), Crc32cCodec()]


def stored_bytes(a: np.ndarray, codec: str) -> tuple[int, float, float]:
    """(bytes in the store, compress s, decompress s) of `a` as a sharded array (16 / 256 rows)."""
    import zarr
    from zarr.storage import MemoryStore

    store = MemoryStore()
    arr = zarr.create_array(store, shape=a.shape, chunks=(16, *a.shape[1:]), shards=(256, *a.shape[1:]),
                            dtype=a.dtype, compressors=compressors(codec), fill_value=0)
    t0 = time.perf_counter()
    arr[:] = a
    t1 = time.perf_counter()
    back = arr[:]
    t2 = time.perf_counter()
    assert np.array_equal(back, a)
    size = sum(len(v.to_bytes()) for k, v in store._store_dict.items() if not k.endswith("zarr.json"))
    return size, t1 - t0, t2 - t1


def head_by_id(ids: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Head ids sorted ascending, stored as deltas, with the values in the same order (a reader re-sorts by value)."""
    order = np.argsort(ids, axis=-1, kind="stable")
    sid = np.take_along_axis(ids, order, -1)
    return np.diff(sid, axis=-1, prepend=np.uint16(0)).astype(np.uint16), np.take_along_axis(values, order, -1)


def variants(block: dict[str, np.ndarray], mode: str) -> dict[str, np.ndarray]:
    """The arrays to measure: each canonical array and its encoded alternatives."""
    from bl2.cache.encodings import delta_ids, quantise_head

    out = {name: a for name, a in block.items() if name != "input_ids"}
    if "topk_logp" in block:
        for step in (1 / 8, 1 / 16, 1 / 32):
            out[f"topk_logp:u8/{round(1 / step)}"], top = quantise_head(block["topk_logp"], step)
        out["topk_logp_max"] = top
        q = quantise_head(block["topk_logp"], 1 / 16)[0]
        out["topk_logp:u8/16+kdelta"] = np.diff(q, axis=-1, prepend=np.uint8(0)).astype(np.uint8)
        d, v = head_by_id(block["topk_ids"], block["topk_logp"])
        out["topk_ids:by-id+delta"], out["topk_logp:by-id"] = d, v
        out["topk_logp:by-id,u8/16"] = head_by_id(block["topk_ids"], q)[1]
    for ids, counts in (("sample_ids", "sample_counts"), ("tail_ids", "tail_counts")):
        if ids in block:
            out[f"{ids}:delta"] = delta_ids(block[ids], block[counts])
    return out


def main(argv: list[str] | None = None) -> int:
    from bl2.cache.reader import CacheReader

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("caches", nargs="+")
    ap.add_argument("--windows", type=int, default=256)
    ap.add_argument("--codecs", default=",".join(CODECS))
    ap.add_argument("--out-json", default=None)
    args = ap.parse_args(argv)
    results = []
    for path in args.caches:
        r = CacheReader(path)
        n = min(args.windows, r.n_windows)
        block = r.read(0, n)
        tokens = n * r.seq_len
        print(f"\n{path} (mode {r.mode}, {tokens:,} positions)")
        for name, a in variants(block, r.mode).items():
            row = {"cache": path, "array": name, "raw": a.nbytes / tokens}
            for codec in args.codecs.split(","):
                size, tc, td = stored_bytes(a, codec)
                row[codec] = size / tokens
                row[f"{codec}:MB/s"] = (a.nbytes / 1e6 / tc, a.nbytes / 1e6 / td)
            results.append(row)
            best = min(args.codecs.split(","), key=lambda c: row[c])
            print(f"  {name:<26} raw {row['raw']:6.1f}  " + "  ".join(
                f"{c} {row[c]:6.2f}" for c in args.codecs.split(",")) + f"   best {best}")
    if args.out_json:
        with open(args.out_json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
