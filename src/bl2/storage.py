"""Locations. Every `--data`, `--cache` and `--out` is a string that may be a local path or an fsspec URL
(`s3://bucket/key`, `gs://...`, `file:///abs/path`); this module alone decides which is which, so no other
code wraps a location in `Path()` before asking here. Also: content hashes of local files."""

from __future__ import annotations

import hashlib
from pathlib import Path

from bl2.errors import require

HASH_BLOCK = 1 << 22


def scheme(location: str | Path) -> str:
    """'' for a plain path, else the URL scheme ('file', 's3', 'gs', ...)."""
    text = str(location)
    head, sep, _ = text.partition("://")
    return head.lower() if sep and head.replace("+", "").replace("-", "").isalnum() else ""


def is_remote(location: str | Path) -> bool:
    """True for object-store URLs (anything but a plain path or file://)."""
    return scheme(location) not in ("", "file")


def local_path(location: str | Path, what: str = "this location") -> Path:
    """The local Path of a plain path or file:// URL; a one-line user error for a remote URL where only local
    files work."""
    text = str(location)
    require(not is_remote(text), f"{what} must be a local path, got {text}")
    return Path(text[len("file://"):]) if scheme(text) == "file" else Path(text)


def display(location: str | Path) -> str:
    """How a location is recorded in run.json and cache attrs: URLs as given, local paths made absolute."""
    return str(location) if is_remote(location) else str(local_path(location).resolve())


def file_sha256(path: str | Path) -> str:
    """sha256 of a local file, read in blocks."""
    h = hashlib.sha256()
    with open(local_path(path), "rb") as f:
        while block := f.read(HASH_BLOCK):
            h.update(block)
    return h.hexdigest()
