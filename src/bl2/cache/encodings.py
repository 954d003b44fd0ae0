"""Compact encodings of cache arrays (docs/cache-format.md, "v2 additions"): what is stored differs from the
canonical arrays of DESIGN §5, the group attrs say so, and `CacheReader.read` always returns the canonical
arrays. Never applied silently: a cache without these attrs holds the canonical arrays.

- `head_logp_encoding = "uint8"` (lossy; modes topk and hybrid): `topk_logp` is stored as uint8
  q = min(255, round(-logp / step)) with `head_logp_step` = step, a power of two 2^-2 .. 2^-6 nats, and read back
  as -q * step, which float16 holds exactly (q * step has at most 8 significant bits). Error bound: for every head
  entry with logp >= -255 * step, |decoded - stored fp16| <= step / 2 (the fp16 value itself is within 2^-11
  relative of the fp32 ensemble's); entries further down read as -255 * step (at step 1/16: p < 1.2e-7 is
  read as 1.2e-7). The head stays sorted (rounding is monotone). The KL it adds is what `bl2 cache compare`
  reports as kl_bucket against a full cache (0 up to fp16 rounding for float16 heads).
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
STEPS = tuple(2.0**-j for j in range(2, 7))  # 1/4 .. 1/64 nats
DEFAULT_STEP = 1 / 16
SPARSE_ARRAYS = {"sample_ids": "sample_counts", "tail_ids": "tail_counts"}  # ids -> their counts


@dataclass(frozen=True)
class Encoding:
    """How a cache's arrays are stored (the attrs head_logp_encoding, head_logp_step, sparse_ids_encoding)."""

    head_logp: str = "float16"  # float16 | uint8 (topk_logp of modes topk and hybrid)
    step: float | None = None  # uint8: the quantisation step in nats
    sparse_ids: str = "plain"  # plain | delta (sample_ids / tail_ids of modes sample and hybrid)

    def __post_init__(self):
        require(self.head_logp in HEAD_LOGP, f"--head-logp must be one of {', '.join(HEAD_LOGP)}")
        require(self.sparse_ids in SPARSE_IDS, f"--sparse-ids must be one of {', '.join(SPARSE_IDS)}")
        if self.head_logp == "uint8":
            require(self.step in STEPS, f"--logp-step must be one of {', '.join(f'{s:g}' for s in STEPS)} "
                    f"(a power of two, so float16 holds every decoded value exactly), got {self.step}")
        else:
            require(self.step is None, "--logp-step applies to --head-logp uint8 only")

    @classmethod
    def of(cls, attrs: dict) -> Encoding:
        """The encoding a cache's attrs describe (absent attrs: the canonical arrays)."""
        step = attrs.get("head_logp_step")
        return cls(attrs.get("head_logp_encoding") or "float16", None if step is None else float(step),
                   attrs.get("sparse_ids_encoding") or "plain")

    def attrs(self, mode: str) -> dict:
        """The attrs recording this encoding for a cache of `mode` (None where it does not apply)."""
        head, sparse = mode in ("topk", "hybrid"), mode in ("sample", "hybrid")
        return {"head_logp_encoding": self.head_logp if head else None,
                "head_logp_step": self.step if head and self.head_logp == "uint8" else None,
                "sparse_ids_encoding": self.sparse_ids if sparse else None}

    @property
    def lossy(self) -> bool:
        return self.head_logp != "float16"

    def describe(self) -> str:
        parts = [f"head log-probs uint8 (step {self.step:g} nat, lossy)"] if self.head_logp == "uint8" else []
        parts += ["sparse ids delta-coded (lossless)"] if self.sparse_ids == "delta" else []
        return ", ".join(parts) or "canonical (no compact encoding)"


def quantise_logp(logp: np.ndarray, step: float) -> np.ndarray:
    """uint8 q = min(255, round(-logp / step)) (logp <= 0; tiny positive fp16 noise rounds to 0)."""
    q = np.rint(-logp.astype(np.float32) / np.float32(step))
    return np.clip(q, 0, 255).astype(np.uint8)


def dequantise_logp(q: np.ndarray, step: float) -> np.ndarray:
    """float16 -q * step (exact: q * step has at most 8 significant bits)."""
    return (q.astype(np.float32) * np.float32(-step)).astype(np.float16)


def delta_ids(ids: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Differences along the last axis modulo 2^16, each from the previous non-empty slot; empty slots (count 0)
    store 0 (writers put them last; anywhere else they still round-trip)."""
    filled = np.where(counts > 0, np.arange(ids.shape[-1]), 0)
    filled = np.take_along_axis(ids.astype(np.uint16), np.maximum.accumulate(filled, axis=-1), -1)
    filled[np.cumsum(counts > 0, axis=-1) == 0] = 0  # before the first non-empty slot
    return np.diff(filled, axis=-1, prepend=np.uint16(0)).astype(np.uint16).view(np.int16)  # modulo 2^16


def undelta_ids(d: np.ndarray, counts: np.ndarray) -> np.ndarray:
    ids = np.cumsum(d.view(np.uint16), axis=-1, dtype=np.uint16)  # modulo 2^16
    ids[counts == 0] = 0
    return ids


def encode(block: dict[str, np.ndarray], enc: Encoding) -> dict[str, np.ndarray]:
    """Canonical arrays -> stored arrays (the writer)."""
    out = dict(block)
    if enc.head_logp == "uint8" and "topk_logp" in out:
        out["topk_logp"] = quantise_logp(out["topk_logp"], enc.step)
    if enc.sparse_ids == "delta":
        for ids, counts in SPARSE_ARRAYS.items():
            if ids in out:
                out[ids] = delta_ids(out[ids], out[counts])
    return out


def needs(names: list[str], enc: Encoding) -> list[str]:
    """The stored arrays needed to decode `names` (delta-coded ids need their counts)."""
    extra = [SPARSE_ARRAYS[n] for n in names if enc.sparse_ids == "delta" and n in SPARSE_ARRAYS]
    return list(dict.fromkeys([*names, *extra]))


def decode(block: dict[str, np.ndarray], enc: Encoding) -> dict[str, np.ndarray]:
    """Stored arrays -> canonical arrays (the reader)."""
    out = dict(block)
    if enc.head_logp == "uint8" and "topk_logp" in out:
        out["topk_logp"] = dequantise_logp(out["topk_logp"], enc.step)
    if enc.sparse_ids == "delta":
        for ids, counts in SPARSE_ARRAYS.items():
            if ids in out:
                out[ids] = undelta_ids(out[ids], out[counts])
    return out
