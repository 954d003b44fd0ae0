"""DATA_DIR/tokens.zarr: the token store. 1-D uint16 arrays `train`, `val`, `test` plus provenance attrs."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from bl2.errors import UserError, require

SPLITS = ("train", "val", "test")
STORE_NAME = "tokens.zarr"
CHUNK_TOKENS = 1 << 20


def compressors():
    """Blosc zstd with byte shuffle, then a crc32c checksum so a flipped bit is an error, not silent corruption."""
    from zarr.codecs import BloscCodec, Crc32cCodec

    return [BloscCodec(cname="zstd", clevel=5, shuffle="shuffle"), Crc32cCodec()]


def token_sha256(tokens: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(tokens, dtype="<u2").tobytes()).hexdigest()


def write_store(path: Path, splits: dict[str, np.ndarray], attrs: dict) -> None:
    import zarr

    group = zarr.open_group(str(path), mode="w")
    split_attrs = {}
    for name in SPLITS:
        tokens = splits[name].astype(np.uint16, copy=False)
        chunk = max(1, min(CHUNK_TOKENS, len(tokens)))
        arr = group.create_array(name, shape=tokens.shape, chunks=(chunk,), dtype="uint16", compressors=compressors())
        if len(tokens):
            arr[:] = tokens
        split_attrs[name] = {"n_tokens": int(len(tokens)), "sha256": token_sha256(tokens)}
    group.attrs.update({**attrs, "splits": split_attrs})


def check_tokenizer(folder: str | Path, sha256: str, where: str | None = None) -> None:
    """One-line UserError unless folder/tokenizer.json is the tokenizer with this sha256 (the one the tokens were
    made with): a garbled or replaced tokenizer must never be copied into run dirs."""
    from bl2.storage import file_sha256

    path = Path(folder) / "tokenizer.json"
    require(path.is_file(), f"{where or folder} has no tokenizer.json")
    require(file_sha256(path) == sha256, f"{where or folder}: tokenizer.json is not the tokenizer the tokens were "
            f"made with (its sha256 differs from the one `bl2 prepare` recorded); rerun `bl2 prepare`")


class TokenStore:
    """Read access to a prepared DATA_DIR (a local folder or a URL): tokens per split, attrs, and the tokenizer
    files next to it (`tokenizer_dir`: a local folder; a remote DATA dir's tokenizer files are fetched once)."""

    def __init__(self, data_dir: str | Path):
        from bl2 import storage

        self.data_dir = str(data_dir)
        path = storage.join(self.data_dir, STORE_NAME)
        require(storage.is_dir(self.data_dir), f"data directory not found: {self.data_dir}")
        require(storage.exists(storage.join(path, "zarr.json")),
                f"{self.data_dir} has no {STORE_NAME}: run `bl2 prepare` first")
        try:
            self.group = storage.open_zarr_group(path, mode="r")
            self.attrs = dict(self.group.attrs)
        except Exception as e:  # a garbled store is a user-level problem
            raise UserError(f"cannot read token store {path}: {e}") from None
        require("vocab_size" in self.attrs, f"{path} is not a bl2 token store (no vocab_size attribute)")
        self.vocab_size = int(self.attrs["vocab_size"])
        self.tokenizer_sha256 = self.attrs["tokenizer_sha256"]
        self._tokenizer_dir: str | None = None
        self._splits: dict[str, np.ndarray] = {}

    @property
    def tokenizer_dir(self) -> str:
        """A local folder holding the DATA dir's tokenizer files, checked to be the tokenizer the tokens were made
        with (the sha256 the store records): the DATA dir itself when it is local; for a remote DATA dir, a copy
        fetched once into bl2's cache folder (~/.cache/bl2/tokenizers/SHA, reused by every later run)."""
        from bl2 import storage

        if self._tokenizer_dir is None:
            folder = self.data_dir if not storage.is_remote(self.data_dir) else self._fetched_tokenizer()
            check_tokenizer(folder, self.tokenizer_sha256)
            self._tokenizer_dir = folder
        return self._tokenizer_dir

    def _fetched_tokenizer(self) -> str:
        import os
        import shutil
        import tempfile

        from bl2 import storage
        from bl2.data.tokenizer import TOKENIZER_FILES

        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "bl2" / "tokenizers"
        final = root / self.tokenizer_sha256
        if not (final / "tokenizer.json").is_file():
            root.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".fetch-", dir=root))
            try:
                storage.fetch_files(self.data_dir, TOKENIZER_FILES, tmp)
                check_tokenizer(tmp, self.tokenizer_sha256, where=self.data_dir)
                tmp.rename(final)
            except OSError:  # another process fetched it first: use theirs
                pass
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        return str(final)

    def split(self, name: str) -> np.ndarray:
        """All tokens of a split as a uint16 numpy array, checked against the sha256 and length `bl2 prepare`
        recorded: a missing chunk (zarr would read zeros), a truncated or bit-flipped one is a one-line error,
        never silently different tokens. Read once per store."""
        require(name in SPLITS, f"unknown split {name!r}; choose one of {', '.join(SPLITS)}")
        if name not in self._splits:
            where = f"{self.data_dir}/{STORE_NAME}/{name}"
            try:
                tokens = self.group[name][:]
            except Exception as e:  # a checksum mismatch, a truncated chunk: zarr's and numcodecs' errors
                from bl2 import storage

                storage.settle_zarr_io()
                cause = str(e).splitlines()[0] if str(e) else type(e).__name__
                raise UserError(f"the token store is damaged: {where} cannot be read ({cause}); rerun "
                                "`bl2 prepare`") from None
            require(len(tokens) == self.n_tokens(name) and token_sha256(tokens) == self.split_sha256(name),
                    f"the token store is damaged: {where} does not match the sha256 `bl2 prepare` recorded (a chunk "
                    "is missing or was changed); rerun `bl2 prepare`")
            self._splits[name] = tokens
        return self._splits[name]

    def split_sha256(self, name: str) -> str:
        return self.attrs["splits"][name]["sha256"]

    def n_tokens(self, name: str) -> int:
        return int(self.attrs["splits"][name]["n_tokens"])

    def n_words(self, name: str) -> int:
        """Whitespace-separated words of a split's text (the per-file counts `bl2 prepare` records)."""
        return sum(int(row["words"]) for row in self.attrs.get("files", {}).get(name, []))

    def words_per_token(self, name: str = "train") -> float | None:
        """Words per token of a split: recorded by `bl2 prepare` (attrs `words_per_token`); older DATA dirs
        derive it from the per-file counts. None when the split has no tokens or no counts."""
        recorded = self.attrs.get("words_per_token", {}).get(name)
        if recorded is not None:
            return float(recorded)
        tokens, words = self.n_tokens(name), self.n_words(name)
        return words / tokens if tokens and words else None
