"""`bl2 cache info CACHE`: what a cache holds (attrs, arrays, size on disk, bytes per token, diagnostics)."""

from __future__ import annotations

from bl2.cache.diagnostics import format_diagnostics
from bl2.cache.reader import CacheReader, dir_nbytes

# Printed one per line, in this order; the rest (teachers, diagnostics, provenance) get their own sections.
ATTR_ORDER = ("bl2_cache_format", "mode", "k", "vocab_size", "seq_len", "n_windows", "windows_per_offset",
              "window_offset", "window_offsets", "temperatures", "ensemble", "n_draws", "sample_temperature",
              "sample_seed", "logp_dtype", "head_logp_encoding", "head_logp_step", "head_order",
              "sparse_ids_encoding", "split",
              "data_dir", "tokenizer_sha256", "tokens_sha256", "windows_done", "complete", "bl2_version")


def array_rows(reader: CacheReader) -> list[tuple[str, str, str, str, int]]:
    """(name, dtype, shape, chunks/shards, bytes on disk) per array."""
    rows = []
    for name, spec in reader.specs.items():  # as stored (a compact encoding may add arrays)
        stored = dir_nbytes(f"{reader.path}/{name}")
        rows.append((name, spec.dtype, str(list(spec.shape)), f"{spec.chunks[0]}/{spec.shards[0]} rows", stored))
    return rows


def cache_info(path: str) -> dict:
    """Print the cache's description; returns it as a dict (attrs + arrays + sizes)."""
    from rich.table import Table

    from bl2.progress import console as rich_console

    def out(message: str) -> None:
        rich_console.print(message, soft_wrap=True, markup=False)

    r = CacheReader(path)
    a = r.attrs
    out(f"{path}  (bl2 logit cache)")
    for key in ATTR_ORDER:
        if a.get(key) is not None:
            out(f"  {key:<20} {a[key]}")
    for i, t in enumerate(a.get("teachers", [])):
        out(f"  teacher {i:<12} {t.get('path')}  sha256 {str(t.get('sha256'))[:16]}")
    out(f"  {'encoding':<20} {r.encoding.describe()}")
    table = Table("array", "dtype", "shape", "chunks/shards", "on disk", "B/token")
    tokens = max(1, r.n_windows * r.seq_len)
    rows = array_rows(r)
    for name, dtype, shape, chunks, stored in rows:
        table.add_row(name, dtype, shape, chunks, f"{stored / 1e6:,.2f} MB", f"{stored / tokens:.1f}")
    rich_console.print(table)
    total = r.nbytes_stored()
    out(f"  size on disk {total / 1e6:,.2f} MB = {total / tokens:.1f} B/token "
        f"({tokens:,} tokens); decoded in RAM {r.nbytes_decoded() / 1e6:,.1f} MB")
    status = "complete" if r.complete else f"INCOMPLETE: {r.windows_done}/{r.n_windows} windows written"
    out(f"  status: {status}")
    for line in format_diagnostics(a.get("diagnostics") or {}):
        out(f"  {line}")
    return {"attrs": a, "arrays": {n: {"dtype": d, "shape": s, "bytes": b} for n, d, s, _, b in rows},
            "bytes_on_disk": total, "bytes_per_token": total / tokens}
