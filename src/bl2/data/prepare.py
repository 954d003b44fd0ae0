"""`bl2 prepare`: clean, split, train the tokenizer, tokenize, and write DATA_DIR (tokenizer files + tokens.zarr)."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bl2.data.corpus import DEV_SUFFIXES, TRAIN_SUFFIXES, SourceFile, find_files, load_sources, split_lines, word_count
from bl2.data.store import STORE_NAME
from bl2.errors import UserError, require

STORE_MARKER = "tokens.zarr/zarr.json"  # the token store's group metadata: its attrs mark a bl2 DATA dir
MIN_VOCAB, MAX_VOCAB = 260, 65536  # 256 bytes + 3 specials + 1 merge; tokens are stored as uint16


@dataclass
class PrepareConfig:
    """Options of `bl2 prepare`."""

    corpus_dir: Path  # folder of *.train (or *.txt) files
    dev_dir: Path  # folder of *.dev (or *.txt) files: the test split
    out_dir: Path  # DATA_DIR to create
    vocab_size: int = 16000  # BPE vocabulary size, specials included
    val_fraction: float = 0.05  # last fraction of the lines of every train file -> val
    overwrite: bool = False  # replace an existing DATA_DIR
    max_words: int | None = None  # keep a random subset of the train split with at least this many words
    subset_seed: int = 0  # the subset's random line order (one seed: smaller subsets lie inside larger ones)

    def __post_init__(self):
        require(MIN_VOCAB <= self.vocab_size <= MAX_VOCAB, f"--vocab-size must be in [{MIN_VOCAB}, {MAX_VOCAB}] "
                f"(tokens are stored as uint16), got {self.vocab_size}")
        require(0.0 < self.val_fraction < 1.0, f"--val-fraction must be in (0, 1), got {self.val_fraction}")
        require(self.subset_seed >= 0, f"--subset-seed must be >= 0, got {self.subset_seed}")


def is_data_dir(path: Path) -> bool:
    """True for a DATA_DIR that `bl2 prepare` made (its token store carries the `bl2_token_store` attr)."""
    import json

    try:
        meta = json.loads((Path(path) / STORE_NAME / "zarr.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and "bl2_token_store" in (meta.get("attributes") or {})


def foreign_entries(path: Path) -> list[str]:
    """What a DATA dir holds that `bl2 prepare` did not write there (a user's file --overwrite must not delete):
    anything but the tokenizer files and tokens.zarr, and anything in tokens.zarr but its metadata and splits."""
    from bl2.data.store import SPLITS
    from bl2.data.tokenizer import TOKENIZER_FILES

    path = Path(path)
    out = [p.name for p in path.iterdir() if p.name not in (*TOKENIZER_FILES, STORE_NAME)]
    store = path / STORE_NAME
    if store.is_dir():
        out += [f"{STORE_NAME}/{p.name}" for p in store.iterdir() if p.name not in ("zarr.json", *SPLITS)]
    return sorted(out)


def check_remote_output(out: str, overwrite: bool) -> None:
    """A URL --out: refuse an existing DATA dir without --overwrite, and objects that are not a DATA dir. A prefix
    holding only what bl2 prepare uploads but not its marker (uploaded last) is a killed upload of bl2's: it is
    replaced with --overwrite."""
    from bl2 import storage
    from bl2.data.tokenizer import TOKENIZER_FILES

    if storage.exists(storage.join(out, STORE_MARKER)):
        require(overwrite, f"{out} already exists; pass --overwrite to replace it")
        return
    fs, path = storage.filesystem(out)
    with storage.remote_errors(out):
        names = [f[len(path.rstrip("/")) + 1:] for f in fs.find(path)] if fs.exists(path) else []
    if not names:
        storage.require_remote_writable(out, "the DATA dir --out")  # nothing there yet: can we write at all?
        return
    ours = all(n in TOKENIZER_FILES or n.startswith(f"{STORE_NAME}/") for n in names)
    require(ours, f"{out} holds objects that are not a bl2 DATA dir ({names[0]}, ...); refusing")
    require(overwrite, f"{out} holds an unfinished upload of bl2 prepare (no {STORE_MARKER}: the upload was "
            "interrupted); pass --overwrite to replace it")


def check_output(out_dir: str | Path, overwrite: bool) -> None:
    """Refuse an existing output without --overwrite, anything but a DATA_DIR bl2 made (or an empty folder)
    with it, and an unwritable parent; nothing is touched here."""
    from bl2 import storage

    if storage.is_remote(out_dir):
        return check_remote_output(str(out_dir), overwrite)
    out_dir = storage.local_path(out_dir)
    if out_dir.exists() or out_dir.is_symlink():
        require(overwrite, f"{out_dir} already exists; pass --overwrite to replace it")
        require(out_dir.is_dir() and not out_dir.is_symlink(),
                f"--out {out_dir} is not a folder: --overwrite only replaces a DATA_DIR made by bl2 prepare")
        require(is_data_dir(out_dir) or not any(out_dir.iterdir()),
                f"--out {out_dir} is not a DATA_DIR made by bl2 prepare (no {STORE_NAME} with the bl2_token_store "
                "attribute): refusing to replace it")
        foreign = foreign_entries(out_dir)
        require(not foreign, f"--out {out_dir} holds files bl2 prepare did not write ({', '.join(foreign[:3])}"
                + (", ..." if len(foreign) > 3 else "") + "): refusing to replace it; move them away first")
    parent = out_dir.resolve().parent
    require(parent.is_dir(), f"output parent directory does not exist: {parent}")
    require(os.access(parent, os.W_OK), f"output directory is not writable: {parent}")


def _split_texts(sources: list[SourceFile], val_fraction: float, devs: list[SourceFile]):
    """{split: [(file name, lines)]}, files in sorted name order."""
    texts = {"train": [], "val": [], "test": []}
    for src in sources:
        train, val = split_lines(src.lines, val_fraction)
        texts["train"].append((src.path.name, train))
        texts["val"].append((src.path.name, val))
    for src in devs:
        texts["test"].append((src.path.name, src.lines))
    return texts


def _encode_split(encoder, files, progress, task) -> tuple[np.ndarray, list[dict]]:
    """Each file's lines joined by newlines, a newline between files; every file is encoded on its own
    (as the reference does), so per-file counts add up to the split's."""
    parts, rows = [], []
    for i, (name, lines) in enumerate(files):
        text = "\n".join(lines) + ("\n" if i < len(files) - 1 else "")
        ids = encoder.encode(text) if text else []
        parts.append(np.asarray(ids, dtype=np.uint16))
        rows.append({"file": name, "lines": len(lines), "words": word_count(lines), "tokens": len(ids)})
        progress.advance(task, len(text))
    return (np.concatenate(parts) if parts else np.zeros(0, np.uint16)), rows


def prepare(cfg: PrepareConfig) -> dict:
    """Run the whole preparation; returns the store's attrs. Writes into a temporary folder and renames at
    the end, so a failure or Ctrl-C never leaves a half-written or half-replaced DATA_DIR."""
    from bl2 import storage
    from bl2.data.tokenizer import train_tokenizer
    from bl2.locks import hold
    from bl2.progress import console

    check_output(cfg.out_dir, cfg.overwrite)
    sources = load_sources(find_files(cfg.corpus_dir, TRAIN_SUFFIXES, "corpus"))
    require(bool(sources), f"every training file in {cfg.corpus_dir} is empty")
    devs = load_sources(find_files(cfg.dev_dir, DEV_SUFFIXES, "dev"))
    require(bool(devs), f"every dev file in {cfg.dev_dir} is empty")
    texts = _split_texts(sources, cfg.val_fraction, devs)
    subset = None
    if cfg.max_words is not None:  # the tokenizer below still learns from the whole corpus (data/subset.py)
        from bl2.data.subset import nested_subset

        texts["train"], subset = nested_subset(texts["train"], cfg.max_words, cfg.subset_seed)
    for split in ("train", "val"):
        lines = sum(len([x for x in lines if x.strip()]) for _, lines in texts[split])
        require(lines > 0, f"the {split} split is empty: the {sum(len(s.lines) for s in sources)} lines of "
                f"{cfg.corpus_dir} leave no text for it at --val-fraction {cfg.val_fraction}; give more text or "
                "another --val-fraction")
    if storage.is_remote(cfg.out_dir):  # object stores have no locks (README): built locally, then uploaded
        tok = train_tokenizer((line for src in sources for line in src.lines), cfg.vocab_size)
        tmp = Path(tempfile.mkdtemp(prefix=".bl2-data."))
        try:
            attrs, splits = _write_data(cfg, tok, texts, tmp, subset)
            _upload(tmp, str(cfg.out_dir))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # our own temp folder
        print_table(attrs | {"splits": {n: {"n_tokens": int(len(a))} for n, a in splits.items()}})
        return attrs
    out_dir = storage.local_path(cfg.out_dir)
    with hold(out_dir, "DATA dir"):  # the lock names the final path: the data is written elsewhere first
        check_output(out_dir, cfg.overwrite)  # again, now that no other bl2 process can change it
        console.print(f"training BPE tokenizer (vocab {cfg.vocab_size}) on {len(sources)} files ...")
        tok = train_tokenizer((line for src in sources for line in src.lines), cfg.vocab_size)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.resolve().parent))
        try:
            attrs, splits = _write_data(cfg, tok, texts, tmp, subset)
            _replace(tmp, out_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)  # our own temp folder, never anything else
            raise
    print_table(attrs | {"splits": {n: {"n_tokens": int(len(a))} for n, a in splits.items()}})
    return attrs


def _write_data(cfg: PrepareConfig, tok, texts: dict, tmp: Path, subset: dict | None = None) -> tuple[dict, dict]:
    """Tokenizer files and tokens.zarr into the temp folder; returns (store attrs, token arrays)."""
    from bl2 import __version__
    from bl2.data.store import write_store
    from bl2.data.tokenizer import FastEncoder, save_hf_tokenizer, tokenizer_sha256
    from bl2.progress import make_progress

    if tok.get_vocab_size() < cfg.vocab_size:
        from bl2.progress import console

        console.print(f"[yellow]warning:[/] the corpus supports a vocabulary of {tok.get_vocab_size()} tokens only "
                      f"(--vocab-size {cfg.vocab_size} asked for more: too little text for more merges)")
    save_hf_tokenizer(tok, tmp)
    encoder = FastEncoder(tok)
    total_chars = sum(len(line) + 1 for files in texts.values() for _, lines in files for line in lines)
    splits, table = {}, {}
    with make_progress() as progress:
        task = progress.add_task("tokenizing", total=total_chars)
        for name, files in texts.items():
            splits[name], table[name] = _encode_split(encoder, files, progress, task)
    attrs = {
        "bl2_token_store": 1,
        "vocab_size": tok.get_vocab_size(),
        "tokenizer_sha256": tokenizer_sha256(tmp),
        "val_fraction": cfg.val_fraction,
        "files": table,
        # words seen in training = tokens consumed x this ratio of the split (BabyLM counts words)
        "words_per_token": {name: words_per_token(rows, len(splits[name])) for name, rows in table.items()},
        "corpus_dir": str(Path(cfg.corpus_dir).resolve()),
        "dev_dir": str(Path(cfg.dev_dir).resolve()),
        "bl2_version": __version__,
    }
    if subset is not None:
        attrs["subset"] = subset
    write_store(tmp / STORE_NAME, splits, attrs)
    return attrs, splits


def _replace(tmp: Path, out_dir: Path) -> None:
    """Move the finished temp folder to out_dir. An old DATA_DIR (only reached with --overwrite, checked to be
    bl2's) is first renamed aside and deleted only once the new one is in place, so no crash loses both."""
    old = None
    if out_dir.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old.", dir=out_dir.resolve().parent))
        out_dir.rename(old / "data")
    try:
        tmp.rename(out_dir)
    except BaseException:
        if old is not None:
            (old / "data").rename(out_dir)
        raise
    if old is not None:
        shutil.rmtree(old)


def _upload(local: Path, out: str) -> None:
    """Replace the objects at `out` with the local DATA dir; the store's group metadata (which carries the
    bl2 marker attrs) goes last, so a reader never finds a half-uploaded DATA dir that looks complete."""
    from bl2 import storage

    if storage.exists(out):  # only reached with --overwrite: a DATA dir, or bl2's own unfinished upload
        storage.remove_tree(out)
    storage.upload_tree(local, out, last=STORE_MARKER)


def words_per_token(rows: list[dict], n_tokens: int) -> float | None:
    words = sum(r["words"] for r in rows)
    return words / n_tokens if n_tokens and words else None


def print_table(attrs: dict) -> None:
    """Per-file and per-split lines/words/tokens, as stored in the token store's attrs."""
    from rich.table import Table

    from bl2.progress import console

    table = Table(title=f"token store (vocab {attrs['vocab_size']})")
    for col in ("split", "file", "lines", "words", "tokens"):
        table.add_column(col, justify="right" if col in ("lines", "words", "tokens") else "left")
    for split, rows in attrs["files"].items():
        for r in rows:
            table.add_row(split, r["file"], f"{r['lines']:,}", f"{r['words']:,}", f"{r['tokens']:,}")
        lines, words = sum(r["lines"] for r in rows), sum(r["words"] for r in rows)
        n_tokens = attrs["splits"][split]["n_tokens"]
        table.add_row(f"[bold]{split}", "[bold]all", f"{lines:,}", f"{words:,}", f"[bold]{n_tokens:,}",
                      end_section=True)
    console.print(table)


__all__ = ["PrepareConfig", "prepare", "print_table", "UserError"]
