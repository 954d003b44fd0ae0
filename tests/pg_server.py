"""A throwaway PostgreSQL server for the tests: `initdb` and `pg_ctl` from the machine's PostgreSQL binaries
(Debian's /usr/lib/postgresql/N/bin, or the PATH), a data folder in a fresh temporary folder, 127.0.0.1 on a free
port, the Unix socket in the same folder, trust authentication, fsync off. PostgreSQL refuses to run as root,
and CI runs as root: then the server runs as the `postgres` user (runuser), which owns the folder.

`postgres_url` (a fixture for the whole test run, registered by conftest.py) starts one server, creates the
database `bl2test` and yields its URL; the server is stopped at the end. Without binaries the tests that use it
skip and say why."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

DB = "bl2test"
USER = "bl2"


def pg_bin() -> Path | None:
    """The folder holding initdb and pg_ctl (the newest Debian one first), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    which = shutil.which("pg_ctl")
    return Path(which).parent if which and shutil.which("initdb") else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One PostgreSQL server in `root` (a temporary folder this object removes on stop)."""

    def __init__(self, binaries: Path):
        self.bin = binaries
        self.as_user: list[str] = []
        # not under pytest's tmp dirs: those are 0700 and root's, so the postgres user could not enter them
        self.root = Path(tempfile.mkdtemp(prefix="bl2-pg-"))
        self.data, self.sock, self.log = self.root / "data", self.root / "sock", self.root / "server.log"
        self.sock.mkdir()
        self.port = free_port()
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam("postgres")
            except KeyError:
                shutil.rmtree(self.root)
                pytest.skip("PostgreSQL refuses to run as root and there is no `postgres` user to run it as")
            for path in (self.root, self.sock):
                os.chown(path, user.pw_uid, user.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]

    def _run(self, *cmd: str, timeout: float = 120) -> None:
        r = subprocess.run([*self.as_user, *cmd], capture_output=True, text=True, timeout=timeout)
        log = self.log.read_text()[-2000:] if self.log.is_file() else ""
        assert r.returncode == 0, f"{cmd[0]} failed: {r.stdout[-2000:]}{r.stderr[-2000:]}{log}"

    def start(self) -> str:
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", USER, "--auth=trust", "--no-sync",
                  "-E", "UTF8", "--locale=C")
        opts = f"-p {self.port} -k {self.sock} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50"
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
                  "-o", opts, "start")
        self._run(str(self.bin / "createdb"), "-h", str(self.sock), "-p", str(self.port), "-U", USER, DB)
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{DB}"

    def stop(self) -> None:
        if (self.data / "postmaster.pid").is_file():
            subprocess.run([*self.as_user, str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                            "-w", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url():
    """URL of a PostgreSQL server started for this test run (skips where no PostgreSQL binaries exist)."""
    binaries = pg_bin()
    if binaries is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl): apt-get install postgresql to run these tests")
    server = Server(binaries)
    try:
        yield server.start()
    finally:
        server.stop()
