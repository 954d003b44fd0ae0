"""Compact encodings of cache arrays (docs/cache-format.md, "v2 additions"): what is stored differs from the
canonical arrays of DESIGN §5, the group attrs say so, and `CacheReader.read` always returns the canonical
arrays. Never applied silently: a cache without these attrs holds the canonical arrays.

- `head_logp_encoding = "uint8"` (lossy; modes topk and hybrid): each position's head is stored as its maximum
  `topk_logp_max` (float16 [W, L, 1], the canonical top-1 value, exact) and `topk_logp` as uint8 steps below it,
  q_i = min(255, round((max - logp_i) / step)) (q_0 = 0), with `head_logp_step` = step, 1/4, 1/8 or 1/16
  nats; read back as float16 max - q_i * step (the canonical dtype). Error bound: the top entry is exact; every
  other entry within 255 steps of the max (16 nats at 1/16) reads back within step / 2 + 2^-11 |logp_i| (the float16
  rounding of the result) of its canonical float16 value, entries further down read
  as max - 255 * step (at 1/16: p_i < 1.2e-7 p_0 is read as 1.2e-7 p_0). The head stays sorted (rounding is
  monotone). Where rounding to nearest would give the head more than all the mass at T = 1 (the tail bucket
  t_R = 1 - sum t_i would clamp to 0), that position is rounded down instead (within one step, t_i <= p_i except
  for entries clipped at 255 steps, so t_R >= p_R - k * 1.2e-7 p_0 at 1/16).
  Relative to the maximum, not to 0: the top entry carries most of a peaked position's mass, and a 3 % error on
  it would wipe out a small tail bucket (measured: rounding -logp itself to 1/16 nat clamped 2 % of the positions'
  tail buckets to 0 and cost 0.16 nats of (k+1)-outcome KL at k = 64; relative to the max, 1e-4).
  The KL it adds is what `bl2 cache compare` reports as kl_bucket against a full cache (~1e-8 for float16 heads).
- `head_order = "id"` (lossless up to the order of equal values; modes topk and hybrid): the head's slots are
  stored sorted by id, `topk_ids` as int16 differences from the previous slot (the first holds its id), and
  `topk_logp` (float16, or the uint8 steps) in the same order; the reader sorts each position back by descending
  value (equal values by ascending id). Why: a position's top-k ids are far from uniform (frequent tokens have
  small BPE ids), so sorted they differ by little: measured on trained tiny teachers at k = 64, the ids shrink
  from 78 to 20 B/token while the values, no longer sorted, grow from 69 to 82 (float16) or 27 to 53 (uint8).
- `sparse_ids_encoding = "delta"` (lossless; modes sample and hybrid): `sample_ids` / `tail_ids` are stored as
  differences along the slot axis modulo 2^16 (from the previous non-empty slot; the first holds its id; empty
  slots 0), as int16 (the same bits; a bl2 that predates the encoding then refuses the array's dtype instead of
  reading deltas as ids). Slots are sorted by count, then id, so inside a group of equal counts the ids ascend and
  the deltas are small; the order of the slots, and so every decoded array, is unchanged. Decoding needs the
  counts (empty slots read as id 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bl2.errors import require

HEAD_LOGP = ("float16", "uint8")
SPARSE_IDS = ("plain", "delta")
HEAD_ORDERS = ("value", "id")
STEPS = (1 / 4, 1 / 8, 1 / 16)  # nats; 255 steps span >= 16 nats (finer steps would clip real head entries)
DEFAULT_STEP = 1 / 16
SPARSE_ARRAYS = {"sample_ids": "sample_counts", "tail_ids": "tail_counts"}  # ids -> their counts
HEAD_MAX = "topk_logp_max"  # uint8 heads: each position's top log-prob (float16 [W, L, 1])


@dataclass(frozen=True)
class Encoding:
    """How a cache's arrays are stored (attrs head_logp_encoding, head_logp_step, head_order, sparse_ids_encoding)."""

    head_logp: str = "float16"  # float16 | uint8 (topk_logp of modes topk and hybrid)
    step: float | None = None  # uint8: the quantisation step in nats
    sparse_ids: str = "plain"  # plain | delta (sample_ids / tail_ids of modes sample and hybrid)
    head_order: str = "value"  # value | id (the head's slots as stored, modes topk and hybrid)

    def __post_init__(self):
        require(self.head_logp in HEAD_LOGP, f"--head-logp must be one of {', '.join(HEAD_LOGP)}")
        require(self.sparse_ids in SPARSE_IDS, f"--sparse-ids must be one of {', '.join(SPARSE_IDS)}")
        require(self.head_order in HEAD_ORDERS, f"--head-order must be one of {', '.join(HEAD_ORDERS)}")
        if self.head_logp == "uint8":
            require(self.step in STEPS, f"--logp-step must be one of {', '.join(f'{s:g}' for s in STEPS)}, "
                    f"got {self.step}")
        else:
            require(self.step is None, "--logp-step applies to --head-logp uint8 only")

    @classmethod
    def of(cls, attrs: dict) -> Encoding:
        """The encoding a cache's attrs describe (absent attrs: the canonical arrays)."""
        step = attrs.get("head_logp_step")
        return cls(attrs.get("head_logp_encoding") or "float16", None if step is None else float(step),
                   attrs.get("sparse_ids_encoding") or "plain", attrs.get("head_order") or "value")

    def attrs(self, mode: str) -> dict:
        """The attrs recording this encoding for a cache of `mode` (None where it does not apply)."""
        head, sparse = mode in ("topk", "hybrid"), mode in ("sample", "hybrid")
        return {"head_logp_encoding": self.head_logp if head else None,
                "head_logp_step": self.step if head and self.head_logp == "uint8" else None,
                "head_order": self.head_order if head else None,
                "sparse_ids_encoding": self.sparse_ids if sparse else None}

    @property
    def lossy(self) -> bool:
        return self.head_logp != "float16"

    def describe(self) -> str:
        parts = [f"head log-probs uint8 (step {self.step:g} nat, lossy)"] if self.head_logp == "uint8" else []
        parts += ["head stored by id, ids delta-coded (lossless)"] if self.head_order == "id" else []
        parts += ["sparse ids delta-coded (lossless)"] if self.sparse_ids == "delta" else []
        return ", ".join(parts) or "canonical (no compact encoding)"


def quantise_head(logp: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 steps below the max [..., k], the max as float16 [..., 1]) of a descending head of log-probs."""
    top = logp[..., :1].astype(np.float16)
    below = (top.astype(np.float32) - logp.astype(np.float32)) / np.float32(step)
    q = np.clip(np.rint(below), 0, 255).astype(np.uint8)
    over = np.exp(dequantise_head(q, top, step).astype(np.float64)).sum(-1) > 1.0  # the tail bucket would clamp
    q[over] = np.clip(np.ceil(below[over]), 0, 255)  # to 0 there: round those positions down
    return q, top


def dequantise_head(q: np.ndarray, top: np.ndarray, step: float) -> np.ndarray:
    """float16 max - q * step (computed in float32, rounded once to float16, like the canonical values)."""
    return (top.astype(np.float32) - q.astype(np.float32) * np.float32(step)).astype(np.float16)


def delta_ids(ids: np.ndarray, counts: np.ndarray | None = None) -> np.ndarray:
    """int16 differences along the last axis modulo 2^16, each from the previous non-empty slot; empty slots (count
    0) store 0 (writers put them last; anywhere else they still round-trip). No counts: every slot is non-empty."""
    filled = ids.astype(np.uint16)
    if counts is not None:
        last = np.maximum.accumulate(np.where(counts > 0, np.arange(ids.shape[-1]), 0), axis=-1)
        filled = np.take_along_axis(filled, last, -1)
        filled[np.cumsum(counts > 0, axis=-1) == 0] = 0  # before the first non-empty slot
    return np.diff(filled, axis=-1, prepend=np.uint16(0)).astype(np.uint16).view(np.int16)  # modulo 2^16


def undelta_ids(d: np.ndarray, counts: np.ndarray | None = None) -> np.ndarray:
    ids = np.cumsum(d.view(np.uint16), axis=-1, dtype=np.uint16)  # modulo 2^16
    if counts is not None:
        ids[counts == 0] = 0
    return ids


def _permute(order: np.ndarray, *arrays: np.ndarray) -> list[np.ndarray]:
    return [np.take_along_axis(a, order, -1) for a in arrays]


def encode(block: dict[str, np.ndarray], enc: Encoding) -> dict[str, np.ndarray]:
    """Canonical arrays -> stored arrays (the writer)."""
    out = dict(block)
    if enc.head_logp == "uint8" and "topk_logp" in out:
        out["topk_logp"], out[HEAD_MAX] = quantise_head(out["topk_logp"], enc.step)
    if enc.head_order == "id" and "topk_ids" in out:
        ids, values = _permute(np.argsort(out["topk_ids"], axis=-1, kind="stable"), out["topk_ids"], out["topk_logp"])
        out["topk_ids"], out["topk_logp"] = delta_ids(ids), values
    if enc.sparse_ids == "delta":
        for ids, counts in SPARSE_ARRAYS.items():
            if ids in out:
                out[ids] = delta_ids(out[ids], out[counts])
    return out


def needs(names: list[str], enc: Encoding) -> list[str]:
    """The stored arrays needed to decode `names` (delta-coded ids need their counts; a head stored by id needs
    its values and ids to sort back; a uint8 head its maxima)."""
    extra = [SPARSE_ARRAYS[n] for n in names if enc.sparse_ids == "delta" and n in SPARSE_ARRAYS]
    head = {"topk_ids", "topk_logp"} & set(names)
    if head and enc.head_order == "id":
        extra += ["topk_ids", "topk_logp"]
    if "topk_logp" in names + extra and enc.head_logp == "uint8":
        extra.append(HEAD_MAX)
    return list(dict.fromkeys([*names, *extra]))


def decode(block: dict[str, np.ndarray], enc: Encoding) -> dict[str, np.ndarray]:
    """Stored arrays -> canonical arrays (the reader)."""
    out = dict(block)
    if enc.head_logp == "uint8" and "topk_logp" in out:
        out["topk_logp"] = dequantise_head(out["topk_logp"], out.pop(HEAD_MAX), enc.step)
    if enc.head_order == "id" and "topk_ids" in out:
        ids, values = undelta_ids(out["topk_ids"]), out["topk_logp"]
        order = np.argsort(-values.astype(np.float32), axis=-1, kind="stable")  # by value; equal values by id
        out["topk_ids"], out["topk_logp"] = _permute(order, ids, values)
    if enc.sparse_ids == "delta":
        for ids, counts in SPARSE_ARRAYS.items():
            if ids in out:
                out[ids] = undelta_ids(out[ids], out[counts])
    return out
