"""Locations. Every `--data`, `--cache` and `--out` is a string that may be a local path or an fsspec URL
(`s3://bucket/key`, `gs://...`, `file:///abs/path`); this module alone decides which is which, so no other
code wraps a location in `Path()` before asking here. Also: content hashes of local files."""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from pathlib import Path

from bl2.errors import UserError, require

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


def require_writable_dir(path: str | Path, what: str) -> None:
    """One-line user error unless files can be created in the local folder `path`, or (when it does not exist
    yet) in its nearest existing ancestor. Checked before long work, so a read-only output fails at once."""
    import os
    import tempfile

    from bl2.errors import UserError

    folder = local_path(path, what)
    probe = next((p for p in (folder, *folder.absolute().parents) if p.exists()), None)
    require(probe is None or probe.is_dir(), f"cannot write {what} {folder}: {probe} is not a folder")
    if probe is None or not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(f"cannot write {what} {folder}: {probe} is not writable")
    try:
        with tempfile.NamedTemporaryFile(dir=probe, prefix=".bl2-write-test-"):
            pass
    except OSError as e:
        raise UserError(f"cannot write {what} {folder}: {e.strerror or e}") from None


def require_remote_writable(location: str, what: str) -> None:
    """For a URL output: write and delete one small probe object under it before any work, so a missing bucket,
    no server, refused credentials or a read-only bucket is one line now, not a traceback after an hour of
    tokenizing (listing is not enough: s3fs lists a missing bucket as empty)."""
    import uuid

    fs, path = filesystem(location)
    probe = f"{path.rstrip('/')}/.bl2-write-probe-{uuid.uuid4().hex}"
    with remote_errors(location):
        try:
            fs.pipe_file(probe, b"")
        except (PermissionError, FileNotFoundError) as e:
            raise UserError(f"cannot write {what} {location}: {cause(e)} (a missing bucket, or no write "
                            "permission)") from None
        fs.rm_file(probe)


def require_writable_file(path: str | Path, what: str) -> None:
    """One-line user error unless the local file `path` can be (re)written: not a folder, and its folder
    writable (or creatable)."""
    file = local_path(path, what)
    require(not file.is_dir(), f"{what} {file} is a folder, not a file")
    require_writable_dir(file.parent, f"the folder of {what}")



def write_text_atomic(path: str | Path, text: str) -> None:
    """Write a local file via a temp file + rename, so a crash never leaves it half-written."""
    import os

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)

# ---------------------------------------------------------------------------------------------- remote
# Options for remote filesystems (`--storage-options JSON`), process-wide; credentials and the endpoint
# otherwise come from the usual environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, ...).
_OPTIONS: dict = {}


def configure(options: dict | None) -> None:
    """Set the fsspec storage options used for every remote location of this process."""
    _OPTIONS.clear()
    _OPTIONS.update(options or {})


def storage_options(location: str | Path) -> dict | None:
    """The options zarr/fsspec need for `location` (None for local paths)."""
    return dict(_OPTIONS) if is_remote(location) else None


def join(location: str | Path, *parts: str) -> str:
    """location/part/...: a URL stays a URL."""
    return "/".join([str(location).rstrip("/"), *[p.strip("/") for p in parts if p]])


def filesystem(location: str | Path):
    """(fsspec filesystem, path within it). fsspec filesystems are not fork-safe: this is called in the process
    (or thread) that uses it, never handed to a forked worker."""
    require(_has_fsspec(), "remote locations need fsspec (and s3fs for s3://): pip install 'bl2[remote]'")
    from fsspec.core import url_to_fs

    try:
        return url_to_fs(str(location), **(storage_options(location) or {}))
    except ImportError as e:
        raise UserError(f"cannot open {location}: {e} (pip install 'bl2[remote]')") from None
    except Exception as e:  # bad --storage-options (TypeError, ValueError)
        raise UserError(f"cannot open {location} with --storage-options {_OPTIONS}: {cause(e)}") from None


def _has_fsspec() -> bool:
    import importlib.util

    return importlib.util.find_spec("fsspec") is not None


def cause(e: BaseException) -> str:
    """An exception as one short line (its type where the message alone says little)."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


@contextmanager
def remote_errors(location: str | Path):
    """Any failure of a remote operation (no server, wrong or no credentials, a missing bucket, bad storage
    options) becomes one line naming the location and the cause: for a user these are settings to fix, and the
    exceptions of botocore, s3fs and aiohttp are not a bl2 bug. Local paths are not touched."""
    if not is_remote(location):
        yield
        return
    try:
        yield
    except Exception as e:
        if not _reaching_failure(e):
            raise
        raise UserError(f"cannot reach {location}: {cause(e)} (check the endpoint, the credentials and the bucket: "
                        "AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, --storage-options)") from None


def _reaching_failure(e: Exception) -> bool:
    """An error of reaching remote storage: the OS's (connection, permission, no such bucket), one of the client
    libraries' (botocore's NoCredentialsError, EndpointConnectionError, ClientError; aiohttp's), or a TypeError
    from an option the filesystem does not take (fsspec connects lazily, so --storage-options fail at first use)."""
    if isinstance(e, UserError):
        return False
    module = type(e).__module__.split(".")[0]
    return isinstance(e, OSError | TypeError) or module in ("botocore", "aiobotocore", "aiohttp", "s3fs", "fsspec",
                                                             "gcsfs")


def exists(location: str | Path) -> bool:
    if not is_remote(location):
        return local_path(location).exists()
    fs, path = filesystem(location)
    with remote_errors(location):
        return fs.exists(path)


def is_dir(location: str | Path) -> bool:
    if not is_remote(location):
        return local_path(location).is_dir()
    fs, path = filesystem(location)
    with remote_errors(location):
        return fs.isdir(path)


def read_bytes(location: str | Path) -> bytes:
    if not is_remote(location):
        return local_path(location).read_bytes()
    fs, path = filesystem(location)
    with remote_errors(location):
        return fs.cat_file(path)


def size(location: str | Path) -> int | None:
    """Bytes of a file / object; None when it does not exist."""
    if not is_remote(location):
        p = local_path(location)
        return p.stat().st_size if p.is_file() else None
    fs, path = filesystem(location)
    try:
        with remote_errors(location):
            return int(fs.size(path))
    except UserError:
        if not fs.exists(path):
            return None
        raise


def tree_nbytes(location: str | Path) -> int:
    """Total bytes of the files under a folder / prefix."""
    if not is_remote(location):
        root = local_path(location)
        return sum(f.stat().st_size for f in root.rglob("*") if f.is_file()) if root.is_dir() else 0
    fs, path = filesystem(location)
    with remote_errors(location):
        return int(fs.du(path)) if fs.exists(path) else 0


def remove_tree(location: str | Path) -> None:
    """Delete a folder / every object under a prefix (callers check first that bl2 made it)."""
    if not is_remote(location):
        import shutil

        shutil.rmtree(local_path(location))
        return
    fs, path = filesystem(location)
    with remote_errors(location):
        fs.rm(path, recursive=True)


def upload_tree(local_dir: str | Path, location: str | Path, last: str | None = None) -> None:
    """Copy a local folder to a remote prefix, file by file (each object written whole); `last` (a relative
    path) is uploaded after everything else, so a reader that finds it finds the rest."""
    fs, path = filesystem(location)
    root = Path(local_dir)
    files = sorted(f for f in root.rglob("*") if f.is_file())
    files.sort(key=lambda f: str(f.relative_to(root)) == last)
    with remote_errors(location):
        for f in files:
            fs.put_file(str(f), f"{path.rstrip('/')}/{f.relative_to(root).as_posix()}")


def fetch_files(location: str | Path, names: tuple[str, ...], dest: str | Path) -> Path:
    """Local copies of the named files of a folder (remote or local) in `dest`; missing ones are skipped."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for name in names:
        src = join(location, name)
        if exists(src):
            (dest / name).write_bytes(read_bytes(src))
    return dest


def settle_zarr_io(timeout: float = 10.0) -> None:
    """After a zarr read failed (a corrupt or truncated chunk), wait for the sibling tasks that read was running
    on zarr's I/O event loop: left pending, asyncio reports each at interpreter exit ("Task was destroyed but it
    is pending!", "Event loop is closed"), pages of noise after the one line that says what is wrong."""
    import asyncio

    from zarr.core.sync import sync

    async def drain():
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        if others:
            await asyncio.wait(others, timeout=timeout)

    try:
        sync(drain())
    except Exception:  # best effort: the error being reported matters, not this
        pass


def open_zarr_group(location: str | Path, mode: str = "r", **kw):
    """zarr.open_group for a local path or a URL (fsspec store with this process's storage options)."""
    import zarr

    if is_remote(location):
        filesystem(location)  # bad --storage-options: one line here rather than deep inside zarr
        with remote_errors(location):
            return zarr.open_group(str(location), mode=mode, storage_options=storage_options(location), **kw)
    return zarr.open_group(str(local_path(location)), mode=mode, **kw)
