"""Teacher-side checks for `cache-logits` and `cache verify`: the teacher dirs exist, agree with each other and
with the DATA dir's tokenizer, fit the uint16 id format, and are identified by the sha256 of their weights."""

from __future__ import annotations

import hashlib
from pathlib import Path

from bl2.cache.schema import MAX_VOCAB
from bl2.errors import require
from bl2.storage import file_sha256

WEIGHT_GLOBS = ("*.safetensors", "pytorch_model*.bin")


def weights_sha256(model_dir: Path) -> str:
    """sha256 of the weights file; with several files (sharded checkpoints) of their names and hashes."""
    files = sorted({f for pattern in WEIGHT_GLOBS for f in Path(model_dir).glob(pattern)})
    require(bool(files), f"{model_dir} has no weights file (*.safetensors or pytorch_model*.bin)")
    hashes = [(path.name, file_sha256(path)) for path in files]
    if len(hashes) == 1:
        return hashes[0][1]
    return hashlib.sha256("".join(f"{n}:{s}\n" for n, s in hashes).encode()).hexdigest()


def teacher_records(dirs: list[Path]) -> list[dict]:
    """[{path, sha256}] for the cache attrs (absolute paths for humans; identity is the hash)."""
    return [{"path": str(Path(d).resolve()), "sha256": weights_sha256(d)} for d in dirs]


def check_teachers(dirs: list[Path], vocab_size: int, tokenizer_sha256: str) -> None:
    """The teacher dirs exist, agree with each other and with the DATA dir, and fit uint16 ids."""
    from bl2.model.ensemble import check_compatible

    require(len(dirs) >= 1, "no teachers given: pass --teachers T1[,T2,..]")
    require(len({str(Path(d).resolve()) for d in dirs}) == len(dirs), "a teacher dir is listed twice")
    vocab, tok_sha = check_compatible(dirs)  # UserError on missing dirs, different vocab or tokenizer
    require(tok_sha is not None, f"teacher {dirs[0]} has no tokenizer.json")
    require(tok_sha == tokenizer_sha256,
            f"the teachers' tokenizer ({tok_sha[:12]}) differs from the DATA dir's ({tokenizer_sha256[:12]})")
    require(vocab <= MAX_VOCAB, f"vocab size {vocab} exceeds {MAX_VOCAB}: token ids are stored as uint16")
    require(vocab == vocab_size, f"teacher vocab size {vocab} differs from the DATA dir's {vocab_size}")


def resolve_seq_len(dirs: list[Path], requested: int | None) -> int:
    """--seq-len if given (up to the teachers' position limit, max_position_embeddings), else the seq_len the
    teachers were built for (max_position_embeddings // 2, the bl2 convention), which must agree."""
    from bl2.model.io import model_seq_limit

    limits = {str(d): model_seq_limit(d) for d in dirs}
    if requested is None:
        require(len(set(limits.values())) == 1,
                f"the teachers have different max_position_embeddings {limits}: pass --seq-len")
        return min(limits.values()) // 2
    limit = min(limits.values())
    require(1 <= requested <= limit, f"--seq-len {requested} is outside 1..{limit} (the teachers' position limit)")
    return requested
