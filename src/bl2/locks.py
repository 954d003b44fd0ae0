"""One writer per output. `hold(path, what)` takes an exclusive lock on an output (a run dir, a cache, a DATA
dir) for as long as the `with` block runs; a second bl2 process on the same output gets a one-line UserError
naming the holder (pid, host, command, start time).

The lock is a sibling file `.<name>.bl2.lock` next to the output, never inside it: so it survives the
output's replacement (`--overwrite`, `prepare`'s rename of a finished temp dir), never shows up in a Hugging
Face model dir or a Zarr store, and is deleted on a clean exit. It is held with `fcntl.flock`, which the
kernel releases when the holder dies: a file left behind by a killed run is stale and simply reused (its
content only names the last holder). On a filesystem without flock the run goes on with a warning.

Remote locations (s3://, gs://, ...) are not locked: there, one writer per output is the user's rule.
Under torchrun only rank 0 takes the lock (the caller decides). A leaf: imports nothing of bl2 but errors.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from bl2.errors import UserError

SUFFIX = ".bl2.lock"
# flock errors that mean "this filesystem cannot lock", not "someone holds it"
UNSUPPORTED = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


def lock_path(path: str | Path) -> Path:
    """The lock file of an output: `.<name>.bl2.lock` in the output's (resolved) parent folder."""
    p = Path(path).resolve()
    return p.parent / f".{p.name}{SUFFIX}"


def is_remote(path: str | Path) -> bool:
    """Object-store URLs are not locked (the same rule as bl2.storage, which a leaf may not import)."""
    head, sep, _ = str(path).partition("://")
    return bool(sep) and head.lower() != "file"


def holder(path: str | Path) -> dict | None:
    """What the lock file of `path` says about its last holder (None: no file, or not written yet)."""
    try:
        return json.loads(lock_path(path).read_text())
    except (OSError, ValueError):
        return None


def describe(info: dict | None) -> str:
    if not info:
        return "another process (starting up)"
    return (f"pid {info.get('pid')} on {info.get('host')} since {info.get('started')} "
            f"(`{info.get('command')}`)")


def require_free(path: str | Path, what: str = "output") -> None:
    """One-line UserError naming the holder when another process holds the lock of output `path` (checked before
    anything else is said about the output: a run that is just starting may not have written it yet)."""
    import fcntl

    if is_remote(path):
        return
    lock = lock_path(Path(str(path)[len("file://"):] if str(path).startswith("file://") else str(path)))
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return  # no lock file: nobody holds it
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise UserError(f"{what} {path} is in use by {describe(holder(path))}: wait for it to finish or stop "
                        "it") from None
    except OSError:
        pass  # a filesystem without flock: hold() warns when it matters
    finally:
        os.close(fd)


@contextmanager
def hold(path: str | Path, what: str = "output"):
    """Hold the exclusive lock of output `path` for the block; UserError if another process holds it.
    Yields the holder record written into the lock file (None when nothing was locked: remote or
    unsupported)."""
    if is_remote(path):
        yield None
        return
    text = str(path)
    local = Path(text[len("file://"):] if text.startswith("file://") else text)
    fd, lock = _acquire(local, what)
    if fd is None:
        yield None
        return
    info = {"pid": os.getpid(), "host": socket.gethostname(), "what": what, "output": str(local.resolve()),
            "command": " ".join(sys.argv).replace("\n", " ")[:500], "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        yield info
    finally:
        _release(fd, lock)


def _acquire(path: Path, what: str) -> tuple[int | None, Path]:
    import fcntl

    lock = lock_path(path)
    blocker = next((p for p in (lock.parent, *lock.parent.parents) if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise UserError(f"cannot write {what} {path}: {blocker} is not a folder")
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create the folder of {what} {path}: {e.strerror or e}") from None
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise UserError(f"cannot write next to {what} {path} (lock file {lock}): {e.strerror or e}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UserError(f"{what} {path} is in use by {describe(holder(path))}: wait for it to finish "
                            f"or stop it (a killed holder's lock is released automatically)") from None
        except OSError as e:
            os.close(fd)
            if e.errno not in UNSUPPORTED:
                raise
            print(f"warning: cannot lock {lock} ({e.strerror}): make sure no other bl2 process writes {path}",
                  file=sys.stderr)
            return None, lock
        if _same_file(fd, lock):
            return fd, lock
        os.close(fd)  # we locked a file its holder had just unlinked on release: lock the new one


def _same_file(fd: int, lock: Path) -> bool:
    try:
        now = os.stat(lock)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (mine.st_ino, mine.st_dev) == (now.st_ino, now.st_dev)


def _release(fd: int, lock: Path) -> None:
    """Unlink while still holding the lock (a waiter then sees a stale inode and retries), then close."""
    try:
        if _same_file(fd, lock):
            lock.unlink()
    except OSError:
        pass  # a lock file left behind is harmless: the next holder reuses it
    finally:
        os.close(fd)
