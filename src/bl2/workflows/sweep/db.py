"""Where a sweep study lives: its Optuna storage and its study.json.

Storages: SQLite in the study folder by default (`STUDY/study.db`: workers on one machine), PostgreSQL
(`postgresql://USER[:PASS]@HOST:PORT/DB`: workers on many machines, each with its own study folder), or an Optuna
journal file (`journal:PATH`). study.json records the storage so that `sweep status STUDY` needs no --storage:
a SQLite or journal file inside the study folder is recorded relative to it (a copied study folder reads its own
copy, not the original's database); a PostgreSQL URL is recorded without its password (libpq reads PGPASSWORD or
~/.pgpass, or pass --storage again).

Counting a study's trials and asking for a new one is one step for all workers: a lock file in the study folder
(workers on one machine) and, on PostgreSQL, an advisory lock on the study's name (workers on many machines).

SQLite's locking does not work on network file systems (Optuna's FAQ): a SQLite file on NFS, CIFS/SMB, Lustre,
FUSE and the like is refused unless the user says otherwise; the mount table decides.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from pathlib import Path

from bl2.errors import UserError, require

STUDY_JSON = "study.json"
LOCK = ".sweep.lock"
SQLITE_FILE = "study.db"
CONNECT_TIMEOUT_S = 10  # a PostgreSQL server that does not answer is an error after this, never a hang
PG_EXTRA = "pip install 'bl2[sweep-pg]' (psycopg>=3.1,<4)"
MOUNTS = Path("/proc/mounts")  # the mount table (a test points it at a fake one)
# file systems whose byte-range locks SQLite cannot trust (fuseblk is a local disk behind FUSE: not one of them)
NETWORK_FS = ("nfs", "nfs4", "cifs", "smb", "smb2", "smb3", "smbfs", "lustre", "fuse", "glusterfs", "ceph",
              "afs", "gpfs", "beegfs", "9p", "pvfs2", "orangefs", "panfs", "davfs")


def require_optuna():
    try:
        import optuna
    except ImportError:
        raise UserError("bl2 sweep needs Optuna: pip install 'bl2[sweep]' (optuna>=4,<5)") from None
    import warnings

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # bl2 prints one line per trial itself
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # constant_liar
    return optuna


# ---------------------------------------------------------------------------------------------- storage URLs
def default_storage(study: Path) -> str:
    return f"sqlite:///{(Path(study) / SQLITE_FILE).resolve()}"


def _file_of(url: str) -> tuple[str, str] | None:
    """(prefix, path) of a SQLite or journal URL; None for other URLs and in-memory SQLite."""
    for prefix in ("sqlite:///", "journal:"):
        if url.startswith(prefix) and url[len(prefix):] not in ("", ":memory:"):
            return prefix, url[len(prefix):]
    return None


def is_postgres(url: str) -> bool:
    return url.split(":", 1)[0].split("+", 1)[0] in ("postgresql", "postgres")


def from_cli(url: str) -> str:
    """A --storage URL as given: a relative SQLite or journal path is relative to the current folder."""
    f = _file_of(url)
    return url if f is None else f[0] + str(Path(f[1]).absolute())


def for_record(url: str, study: Path) -> str:
    """The URL study.json records: a file inside the study folder relative to it; no password."""
    f = _file_of(url)
    if f is not None:
        path, root = Path(f[1]), Path(study).resolve()
        with contextlib.suppress(ValueError):
            return f[0] + str(path.resolve().relative_to(root))
        return url
    return without_password(url)


def from_record(url: str, study: Path) -> str:
    """A URL read from study.json: relative files are relative to the study folder (absolute ones, as study.json
    stored them before, stay as they are)."""
    f = _file_of(url)
    return url if f is None or Path(f[1]).is_absolute() else f[0] + str((Path(study) / f[1]).resolve())


def without_password(url: str) -> str:
    return re.sub(r"^([^:/]+://[^:/@]+):[^/]*@", r"\1@", url)  # scheme://user:password@host -> scheme://user@host


def shown(url: str) -> str:
    """A URL fit to print: its password masked."""
    return re.sub(r"^([^:/]+://[^:/@]+):[^/]*@", r"\1:***@", url)


def _pg_driver_url(url: str) -> str:
    """postgresql:// with the installed driver made explicit (psycopg 3, else psycopg2); one line if none is."""
    import importlib.util

    scheme, rest = url.split(":", 1)
    driver = scheme.split("+", 1)[1] if "+" in scheme else None
    wanted = [driver] if driver else ["psycopg", "psycopg2"]
    for name in wanted:
        if importlib.util.find_spec(name) is not None:
            return f"postgresql+{name}:{rest}"
    raise UserError(f"a PostgreSQL study needs the {' or '.join(wanted)} driver: {PG_EXTRA}")


def make_storage(url: str):
    """An Optuna storage for `url` (already resolved: from_cli or from_record). A bad URL, a missing driver or a
    server that cannot be reached within CONNECT_TIMEOUT_S is one line."""
    optuna = require_optuna()
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        folder = Path(url[len("journal:"):]).absolute().parent
        require(folder.is_dir(), f"cannot open Optuna storage {url!r}: the folder {folder} does not exist")
        return optuna.storages.JournalStorage(JournalFileBackend(url[len("journal:"):]))
    kwargs, given = {}, url
    if url.startswith("sqlite"):
        kwargs = {"connect_args": {"timeout": 60}}  # waits up to a minute for a busy file
    elif is_postgres(url):
        url = _pg_driver_url(url)
        # pre-ping: a worker runs for days; a server restart between two trials costs a reconnect, not the worker
        kwargs = {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}, "pool_pre_ping": True}
    try:
        if not is_postgres(url):
            return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
        with _schema_lock(url, kwargs):
            return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    except Exception as e:  # a bad URL, a missing driver, an unreachable server, a refused password
        cause = getattr(e, "orig", None) or e  # SQLAlchemy's wrapper names the class; the driver's says why
        line = next((s.strip() for s in str(cause).splitlines() if s.strip()), type(cause).__name__)
        raise UserError(f"cannot open Optuna storage {shown(given)!r}: {line}") from None


# ---------------------------------------------------------------------------------------------- the study lock
def _advisory_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"bl2-sweep:{name}".encode()).digest()[:8], "big", signed=True)


@contextlib.contextmanager
def _schema_lock(url: str, kwargs: dict):
    """Held while Optuna creates or checks its tables: workers started at once on a fresh database (a SLURM array)
    would otherwise race to create them ("duplicate key ... pg_type_typname_nsp_index")."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url, **kwargs)
    try:
        with engine.connect() as conn:
            key = {"k": _advisory_key("optuna schema")}
            conn.execute(text("SELECT pg_advisory_lock(:k)"), key)
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), key)
    finally:
        engine.dispose()


@contextlib.contextmanager
def study_lock(study: Path, storage=None, name: str | None = None):
    """Exclusive lock on the study: the folder's lock file, and on PostgreSQL an advisory lock on `name` held by
    one connection (workers on other machines have other folders: the database is what they share)."""
    import fcntl

    with contextlib.ExitStack() as stack:
        f = stack.enter_context(open(Path(study) / LOCK, "a"))
        fcntl.flock(f, fcntl.LOCK_EX)
        stack.callback(fcntl.flock, f, fcntl.LOCK_UN)
        engine = getattr(storage, "engine", None)
        if engine is not None and engine.dialect.name == "postgresql" and name is not None:
            from sqlalchemy import text

            conn = stack.enter_context(engine.connect())
            key = {"k": _advisory_key(name)}
            conn.execute(text("SELECT pg_advisory_lock(:k)"), key)
            stack.callback(conn.execute, text("SELECT pg_advisory_unlock(:k)"), key)
        yield


# ---------------------------------------------------------------------------------------------- network file systems
def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)  # /proc/mounts writes ' ' as \040


def mount_of(path: Path, mounts: str) -> tuple[str, str] | None:
    """(mount point, file system type) that holds `path`, from a mount table in /proc/mounts' format."""
    target = str(Path(path).absolute())
    best = None
    for line in mounts.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        point, fstype = _unescape(parts[1]), parts[2]
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= len(best[0])):  # the deepest; the later of stacked mounts
            best = (point, fstype)
    return best


def network_fs(path: Path, mounts: str | None = None) -> tuple[str, str] | None:
    """(mount point, type) when `path` lies on a network file system, else None (also when no table is readable).
    `mounts`: the table's text (default: MOUNTS)."""
    if mounts is None:
        try:
            mounts = MOUNTS.read_text()
        except OSError:
            return None
    path = Path(path)
    with contextlib.suppress(OSError):
        path = path.resolve()  # a symlink into an NFS folder is on NFS
    found = mount_of(path, mounts)
    if found is None:
        return None
    fstype = found[1].lower()
    return found if fstype.split(".", 1)[0] in NETWORK_FS else None


def refuse_sqlite_on_network_fs(url: str, mounts: str | None = None) -> None:
    f = _file_of(url)
    if f is None or f[0] != "sqlite:///":
        return
    found = network_fs(Path(f[1]), mounts)
    require(found is None, f"the study's SQLite file {f[1]} is on a network file system ({found and found[1]} at "
            f"{found and found[0]}), where SQLite's locks do not hold: use --storage postgresql://USER@HOST/DB "
            "(see the README's 'Sweeps on many machines'), or pass --allow-sqlite-on-network-fs")


# ---------------------------------------------------------------------------------------------- study.json
def read_meta(study: Path) -> dict:
    path = Path(study) / STUDY_JSON
    require(path.is_file(), f"{study} is not a bl2 sweep study (no {STUDY_JSON})")
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise UserError(f"{path} is unreadable ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    require(isinstance(meta, dict) and all(k in meta for k in ("study_name", "storage", "settings")),
            f"{path} is not a bl2 study record (no study_name, storage and settings)")
    return meta


META_ATTR = "bl2"  # the study's user attr holding study.json's content (less the storage): read from anywhere


def load_study(study: Path, storage: str | None = None, sampler=None, pruner=None, study_name: str | None = None):
    """(study.json, the Optuna study) of a study folder, or, where the folder is not on this machine, of the
    study `study_name` (default: the folder's name) in `storage`."""
    optuna = require_optuna()
    study = Path(study)
    local = (study / STUDY_JSON).is_file() or storage is None
    meta = read_meta(study) if local else None
    url = from_cli(storage) if storage else from_record(meta["storage"], study)
    name = meta["study_name"] if meta else (study_name or study.absolute().name)
    try:
        loaded = optuna.load_study(study_name=name, storage=make_storage(url), sampler=sampler, pruner=pruner)
    except KeyError:
        raise UserError(f"study {name!r} is not in storage {shown(url)}") from None
    if meta is None:
        meta = loaded.user_attrs.get(META_ATTR)
        require(isinstance(meta, dict) and "settings" in meta,
                f"study {name!r} in {shown(url)} was not made by bl2 sweep (no {META_ATTR!r} record)")
        meta = meta | {"study_name": name, "storage": without_password(url)}
    return meta, loaded


def sweep_host() -> str:
    """This machine's name, as trials record it."""
    import socket

    return socket.gethostname() or os.uname().nodename
