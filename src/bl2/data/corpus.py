"""Finding, reading and splitting corpus files.

Every train file is split by lines (95/5); dev files are the test split.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from bl2.data.clean import clean_text
from bl2.errors import UserError, require

TRAIN_SUFFIXES = (".train", ".txt")
DEV_SUFFIXES = (".dev", ".txt")


@dataclass
class SourceFile:
    """One cleaned corpus file, cut into its lines."""

    path: Path
    source: str  # the stem that picks the cleaning rule
    lines: list[str]


def find_files(folder: Path, suffixes: tuple[str, ...], what: str) -> list[Path]:
    """Files of `folder` ending in one of `suffixes`, sorted by name; a clear error if there are none."""
    require(folder.exists(), f"{what} directory not found: {folder}")
    require(folder.is_dir(), f"{what} path is not a directory: {folder}")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in suffixes)
    require(bool(files), f"no {'/'.join('*' + s for s in suffixes)} files in {what} directory {folder}")
    return files


def read_utf8(path: Path) -> str:
    """The file's text; a UserError naming the file and line when it is not valid UTF-8."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        bad = f"byte 0x{raw[e.start]:02x} at offset {e.start}"
        raise UserError(f"{path}: line {line} is not valid UTF-8 ({bad})") from None


def load_sources(files: list[Path]) -> list[SourceFile]:
    """Read and clean each file. Empty files (no text after cleaning) are skipped with a warning."""
    out = []
    for path in files:
        text = clean_text(path.stem, read_utf8(path))
        lines = text.splitlines()
        if not any(line.strip() for line in lines):
            print(f"warning: skipping empty file {path}", file=sys.stderr)
            continue
        out.append(SourceFile(path=path, source=path.stem, lines=lines))
    return out


def split_lines(lines: list[str], val_fraction: float) -> tuple[list[str], list[str]]:
    """First round((1 - f) * n) lines -> train, the rest -> val (the reference's split_file)."""
    n_train = round((1.0 - val_fraction) * len(lines))
    return lines[:n_train], lines[n_train:]


def word_count(lines: list[str]) -> int:
    return sum(len(line.split()) for line in lines)
