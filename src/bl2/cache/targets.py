"""Teacher logits -> the soft targets stored in a cache (the maths of DESIGN §5), shared by the writer and by
`verify`, which recomputes windows with exactly this code.

The ensemble is combined in fp32 (the rules of `bl2.model.ensemble.combine`) in slices of a few dozen positions
on CPU: a [B, L, V] fp32 temporary is hundreds of MB, and allocating and touching it costs more than the
arithmetic. On CPU this post-processing is what separates cache-logits from a bare teacher forward (it is
O(V) per position whatever the teacher size), so the hot path avoids copies: in-place logit mean, one
log_softmax, a grouped top-k. On CPU the positions are also split over a small pool of threads that each run
torch single-threaded: many small ops under torch's own 2-thread OpenMP pool stall at every barrier as soon
as another process (or our shard writer) takes a core (measured: 5 s instead of 0.1 s per batch on a busy
2-core box); independent single-threaded workers never wait for each other. Every position's result depends
only on its own logits, so the split never changes a value.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from bl2.cache.encodings import Encoding, encode
from bl2.model.ensemble import combine


@dataclass(frozen=True)
class TargetSpec:
    """What to compute from each position's ensemble log-probs."""

    mode: str  # topk | full | sample | hybrid
    ensemble: str  # logit_mean | prob_mean
    k: int | None = None  # topk, hybrid: head size
    temperatures: tuple[float, ...] = (1.0,)  # topk: the logz grid (hybrid: [sample_temperature])
    with_logz: bool = False  # topk, hybrid: store logz (grid other than just T=1)
    n_draws: int | None = None  # sample, hybrid (draws from the tail)
    sample_temperature: float = 1.0  # sample, hybrid
    seed: int = 0  # sample, hybrid: the run's seed, mixed with the row index
    logp_dtype: str = "float16"  # full: the stored dtype of the log-probs
    encoding: Encoding = Encoding()  # compact encodings of the stored arrays (bl2.cache.encodings)


def rows_per_slice(device: str) -> int:
    """Positions combined at once: small slices stay in CPU caches; a GPU wants big kernels."""
    return 32 if device == "cpu" else 1 << 14


_POOL: tuple[ThreadPoolExecutor, int] | None = None


def cpu_pool() -> tuple[ThreadPoolExecutor, int]:
    """(pool, workers): one worker per torch thread, each running torch single-threaded (made once)."""
    import torch

    global _POOL
    if _POOL is None:
        workers = max(1, torch.get_num_threads())
        pool = ThreadPoolExecutor(workers, thread_name_prefix="bl2-targets", initializer=torch.set_num_threads,
                                  initargs=(1,))
        _POOL = (pool, workers)
    return _POOL


def window_seed(seed: int, row: int) -> int:
    """A 63-bit seed per (run seed, global row): reruns, resumes and any batch size draw the same samples."""
    digest = hashlib.sha256(f"bl2-sample:{seed}:{row}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def _slices(n: int, step: int):
    for s in range(0, n, step):
        yield s, min(n, s + step)


def fast_topk(x, k: int, block: int = 16):
    """torch.topk(x, k) over rows (values descending; equal values in any order), ~1.4x faster for k << V on
    CPU. The row is split into `block`-sized groups of ids (strided, so the group maxima are one vectorised
    amax); the k groups with the largest maxima hold the top k. Exact: a group holding an element above the
    k-th largest value v_k has a maximum above the k-th largest group maximum, so it is chosen; and the k
    chosen maxima are k candidates >= v_k."""
    import torch

    rows, v = x.shape
    if v % block or 2 * k * block > v:  # grouping only pays when the candidates are a small part of the row
        return torch.topk(x, k, dim=-1)
    groups = v // block
    _, chosen = torch.topk(x.reshape(rows, block, groups).amax(1), k, dim=-1, sorted=False)
    cand = (chosen.unsqueeze(-1) + torch.arange(block, device=x.device) * groups).reshape(rows, k * block)
    values, j = torch.topk(x.gather(1, cand), k, dim=-1)
    return values, cand.gather(1, j)


def ensemble_logprobs(logits: list, rule: str, start: int, stop: int):
    """fp32 ensemble log-probs [stop-start, V] of flattened positions [start, stop).
    logit_mean is `combine`'s rule computed with an in-place sum instead of stack + mean (two fewer passes
    over the slice; the same result up to float rounding); prob_mean goes through `combine` itself."""
    import torch

    if rule != "logit_mean":
        return combine([z[start:stop] for z in logits], rule)
    if len(logits) == 1:
        return torch.log_softmax(logits[0][start:stop].float(), dim=-1)
    # the first sum writes a fresh buffer (no copy pass); the rest accumulate into it
    mean = torch.add(logits[0][start:stop].float(), logits[1][start:stop].float())
    for z in logits[2:]:
        mean.add_(z[start:stop])
    return torch.log_softmax(mean.div_(len(logits)), dim=-1)


def topk_targets(flat: list, spec: TargetSpec, slice_rows: int) -> dict[str, np.ndarray]:
    """topk_ids / topk_logp (/ logz) of positions [P] from member logits [P, V]."""
    import torch

    n, dev = flat[0].shape[0], flat[0].device
    ids = torch.empty(n, spec.k, dtype=torch.int32, device=dev)
    lps = torch.empty(n, spec.k, dtype=torch.float16, device=dev)
    lzs = torch.empty(n, len(spec.temperatures), dtype=torch.float32, device=dev)
    for s, e in _slices(n, slice_rows):
        lp = ensemble_logprobs(flat, spec.ensemble, s, e)
        val, idx = fast_topk(lp, spec.k)
        ids[s:e], lps[s:e] = idx, val
        if spec.with_logz:  # logZ_T = logsumexp(logp / T) over the full vocabulary, for every T of the grid
            for j, t in enumerate(spec.temperatures):
                lzs[s:e, j] = torch.logsumexp(lp * (1.0 / t), dim=-1)
    out = {"topk_ids": ids.cpu().numpy().astype(np.uint16), "topk_logp": lps.cpu().numpy()}
    if spec.with_logz:
        out["logz"] = lzs.cpu().numpy()
    return out


def full_targets(flat: list, spec: TargetSpec, slice_rows: int) -> dict[str, np.ndarray]:
    """logp [P, V] (fp16, or fp32 when asked) from member logits [P, V]."""
    import torch

    n, v = flat[0].shape
    out = torch.empty(n, v, dtype=getattr(torch, spec.logp_dtype), device=flat[0].device)
    for s, e in _slices(n, slice_rows):
        out[s:e] = ensemble_logprobs(flat, spec.ensemble, s, e)
    return {"logp": out.cpu().numpy()}


def unique_counts(draws):
    """Per row of draws [P, N]: unique ids and counts in N slots, by count descending then id ascending;
    empty slots hold id 0 and count 0."""
    import torch

    srt, _ = torch.sort(draws, dim=-1)
    new = torch.ones_like(srt, dtype=torch.bool)
    new[:, 1:] = srt[:, 1:] != srt[:, :-1]
    group = torch.cumsum(new, dim=-1) - 1  # slot of each draw's unique id
    counts = torch.zeros_like(srt).scatter_add_(1, group, torch.ones_like(srt))
    ids = torch.zeros_like(srt).scatter_(1, group, srt)
    key = counts * (1 << 16) + ((1 << 16) - 1 - ids)  # count desc, then id asc; empty slots sort last
    order = torch.argsort(key, dim=-1, descending=True)
    return ids.gather(1, order), counts.gather(1, order)


def sample_targets(logits: list, spec: TargetSpec, rows: np.ndarray) -> dict[str, np.ndarray]:
    """N draws with replacement from p_T per position, one generator per window seeded from its row."""
    import torch

    b, seq, v = logits[0].shape
    ids_out = np.zeros((b, seq, spec.n_draws), dtype=np.uint16)
    cnt_out = np.zeros((b, seq, spec.n_draws), dtype=np.uint8)
    for i, row in enumerate(rows):
        lp = ensemble_logprobs([z[i] for z in logits], spec.ensemble, 0, seq)  # [L, V] fp32
        p = torch.softmax(lp * (1.0 / spec.sample_temperature), dim=-1)
        gen = torch.Generator(device=p.device)
        gen.manual_seed(window_seed(spec.seed, int(row)))
        draws = torch.multinomial(p, spec.n_draws, replacement=True, generator=gen)
        ids, counts = unique_counts(draws)
        ids_out[i] = ids.cpu().numpy().astype(np.uint16)
        cnt_out[i] = counts.cpu().numpy().astype(np.uint8)
    return {"sample_ids": ids_out, "sample_counts": cnt_out}


def hybrid_window(lp, spec: TargetSpec, row: int) -> dict:
    """Mode hybrid (docs/cache-format.md, v2 additions) for one window's fp32 ensemble log-probs lp [L, V]: the
    exact top-k head (as topk_targets; logZ at the sampling T when T != 1) and n_draws draws with replacement from
    the tail, p_T restricted to the ids outside the head (renormalised by multinomial), as unique ids + counts.
    The loss's target t_R * count_j / n_draws on the tail is then unbiased for p_T (E[count_j / n] = p_T(j) / R_T),
    with noise on the tail mass only. Positions whose tail mass underflows to 0 in fp32 get no draws."""
    import torch

    val, idx = fast_topk(lp, spec.k)
    scaled = lp if spec.sample_temperature == 1.0 else lp * (1.0 / spec.sample_temperature)
    out = {"topk_ids": idx, "topk_logp": val.to(torch.float16)}
    if spec.with_logz:  # the grid is [T]; logZ_1 = 0 needs no array
        out["logz"] = torch.logsumexp(scaled, dim=-1, keepdim=True)
    w = torch.softmax(scaled, dim=-1).scatter_(-1, idx, 0.0)
    empty = w.sum(-1) <= 0
    if bool(empty.any()):  # nothing left to draw from: any valid weights, then the draws are dropped
        w[empty] = 1.0
    gen = torch.Generator(device=lp.device)
    gen.manual_seed(window_seed(spec.seed, row))
    ids, counts = unique_counts(torch.multinomial(w, spec.n_draws, replacement=True, generator=gen))
    ids[empty], counts[empty] = 0, 0
    return out | {"tail_ids": ids, "tail_counts": counts}


HYBRID_DTYPES = {"topk_ids": np.uint16, "topk_logp": np.float16, "logz": np.float32, "tail_ids": np.uint16,
                 "tail_counts": np.uint8}


def hybrid_targets(logits: list, spec: TargetSpec, rows: np.ndarray) -> dict[str, np.ndarray]:
    """topk_ids / topk_logp (/ logz) / tail_ids / tail_counts of a batch, one generator per window seeded from its
    row (as sample_targets): member logits [B, L, V] each."""
    seq = logits[0].shape[1]
    parts = [hybrid_window(ensemble_logprobs([z[i] for z in logits], spec.ensemble, 0, seq), spec, int(row))
             for i, row in enumerate(rows)]
    return {name: np.stack([p[name].cpu().numpy() for p in parts]).astype(HYBRID_DTYPES[name]) for name in parts[0]}


def _split(n: int, parts: int) -> list[tuple[int, int]]:
    bounds = np.linspace(0, n, min(parts, n) + 1).astype(int)
    return [(int(s), int(e)) for s, e in zip(bounds[:-1], bounds[1:]) if e > s]


def _on_pool(fn, jobs: list[tuple]) -> list[dict]:
    if len(jobs) == 1:
        return [fn(*jobs[0])]
    return [f.result() for f in [cpu_pool()[0].submit(fn, *job) for job in jobs]]


def compute_targets(logits: list, spec: TargetSpec, rows: np.ndarray, device: str) -> dict[str, np.ndarray]:
    """The mode's arrays (all but input_ids) for a batch of windows, as stored (the spec's encoding applied):
    member logits [B, L, V] each."""
    return encode(_canonical_targets(logits, spec, rows, device), spec.encoding)


def _canonical_targets(logits: list, spec: TargetSpec, rows: np.ndarray, device: str) -> dict[str, np.ndarray]:
    b, seq, v = logits[0].shape
    workers = cpu_pool()[1] if device == "cpu" else 1
    if spec.mode in ("sample", "hybrid"):  # split by window: each window has its own generator
        fn = sample_targets if spec.mode == "sample" else hybrid_targets
        parts = _on_pool(fn, [([z[s:e] for z in logits], spec, rows[s:e]) for s, e in _split(b, workers)])
        return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
    flat = [z.reshape(b * seq, v) for z in logits]
    fn = topk_targets if spec.mode == "topk" else full_targets
    jobs = [([z[s:e] for z in flat], spec, rows_per_slice(device)) for s, e in _split(b * seq, workers)]
    parts = _on_pool(fn, jobs)
    return {name: np.concatenate([p[name] for p in parts]).reshape(b, seq, -1) for name in parts[0]}
