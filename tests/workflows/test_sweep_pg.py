"""bl2 sweep's storages: a real PostgreSQL server (tests/pg_server.py) shared by two worker processes with separate
study folders (two "machines"), one killed mid-trial and its trial retried by the other; `sweep status` and
`sweep confirm` from a third folder through the database alone; a missing driver, a refused connection and a
server that never answers are one line; the SQLite guard against network file systems (fake mount tables); a
copied study folder reads its own SQLite file (study.json records it relative to the folder)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import assert_user_error, run_cli, slow_bl2
from test_sweep import FIXED, LR_SPACE, base_cfg, teacher_sweep, write

from bl2.errors import UserError
from bl2.runs import metrics
from bl2.workflows.sweep import db

pytest.importorskip("optuna")

MOUNTS = """\
sysfs /sys sysfs rw,nosuid 0 0
/dev/sda1 / ext4 rw,relatime 0 0
server:/export /mnt/shared nfs4 rw,vers=4.2 0 0
/dev/sdb1 /mnt/shared/local ext4 rw 0 0
//nas/lab /mnt/lab\\040data cifs rw 0 0
10.0.0.1@o2ib:/fs /lustre lustre rw 0 0
me@host:/home /mnt/ssh fuse.sshfs rw 0 0
/dev/sdc1 /media/usb fuseblk rw 0 0
"""


@pytest.mark.parametrize("path, expected", [
    ("/mnt/shared/study/study.db", ("/mnt/shared", "nfs4")),
    ("/mnt/shared", ("/mnt/shared", "nfs4")),
    ("/mnt/shared/local/study/study.db", None),  # a local disk mounted inside the NFS tree
    ("/mnt/sharedx/study.db", None),  # a prefix of the name is not the mount point
    ("/mnt/lab data/s/study.db", ("/mnt/lab data", "cifs")),  # /proc/mounts writes the space as \040
    ("/lustre/u/s/study.db", ("/lustre", "lustre")),
    ("/mnt/ssh/s/study.db", ("/mnt/ssh", "fuse.sshfs")),
    ("/media/usb/s/study.db", None),  # fuseblk: a local block device behind FUSE
    ("/home/u/study.db", None),
])
def test_network_fs_detection(path, expected):
    assert db.network_fs(Path(path), MOUNTS) == expected


def test_storage_urls_in_study_json(tmp_path):
    """What study.json records and how it reads back: files in the study folder relative, others absolute, no
    password; printed URLs mask it."""
    study = tmp_path / "s"
    inside, outside = f"sqlite:///{study.resolve()}/study.db", f"sqlite:///{tmp_path.resolve()}/elsewhere.db"
    assert db.for_record(inside, study) == "sqlite:///study.db"
    assert db.from_record("sqlite:///study.db", study) == inside
    assert db.for_record(outside, study) == outside and db.from_record(outside, study) == outside
    assert db.for_record(f"journal:{study.resolve()}/j.log", study) == "journal:j.log"
    assert db.from_cli("sqlite:///rel.db") == f"sqlite:///{Path('rel.db').absolute()}"
    assert db.for_record("postgresql://u:pw@h:5432/db", study) == "postgresql://u@h:5432/db"
    assert db.shown("postgresql://u:pw@h:5432/db") == "postgresql://u:***@h:5432/db"


def test_sqlite_on_network_fs_is_refused(tmp_path, data_dir, monkeypatch):
    """One line naming the mount and --storage postgresql://, nothing written; PostgreSQL URLs are never refused;
    --allow-sqlite-on-network-fs passes the guard."""
    with pytest.raises(UserError, match="nfs4 at /mnt/shared.*--storage postgresql://.*--allow-sqlite-on-network-fs"):
        db.refuse_sqlite_on_network_fs("sqlite:////mnt/shared/s/study.db", MOUNTS)
    db.refuse_sqlite_on_network_fs("postgresql://u@h/db", MOUNTS)
    db.refuse_sqlite_on_network_fs("sqlite:////home/u/s/study.db", MOUNTS)

    fake = write(tmp_path / "mounts", f"/dev/sda1 / ext4 rw 0 0\nserver:/x {tmp_path} nfs rw 0 0\n")
    monkeypatch.setattr(db, "MOUNTS", fake)
    space = write(tmp_path / "space.yaml", LR_SPACE)
    study = tmp_path / "study"
    r = run_cli("sweep", "teachers", "--data", data_dir, "--space", space, "--trials", "1", "--study", study, *FIXED)
    assert_user_error(r, "network file system", "--storage postgresql://")
    assert not study.exists()
    teacher_sweep(study, space, data_dir, trials=1, allow_sqlite_on_network_fs=True)
    assert (study / "trials" / "trial-0000" / "run.json").is_file()


def test_copied_study_reads_its_own_sqlite(tmp_path, data_dir):
    """study.json records `sqlite:///study.db` (relative to the folder): a copy continues on its own database and
    leaves the original's alone; an old record with an absolute path still reads."""
    from bl2.workflows.sweep.worker import load_study

    space = write(tmp_path / "space.yaml", LR_SPACE)
    a, b = tmp_path / "a" / "study", tmp_path / "b" / "study"
    teacher_sweep(a, space, data_dir, trials=1)
    assert json.loads((a / "study.json").read_text())["storage"] == "sqlite:///study.db"
    shutil.copytree(a, b)
    teacher_sweep(b, space, data_dir, trials=2)
    assert len(load_study(a)[1].trials) == 1 and len(load_study(b)[1].trials) == 2
    meta = json.loads((b / "study.json").read_text())
    (b / "study.json").write_text(json.dumps(meta | {"storage": f"sqlite:///{(a / 'study.db').resolve()}"}))
    assert len(load_study(b)[1].trials) == 1  # the old, absolute form: the file it names


def test_unreachable_server_is_one_line(tmp_path, data_dir, monkeypatch):
    """A refused connection (nothing on the port) and a server that accepts but never answers (the connect timeout,
    shortened here) are each one line and exit 2, before any study folder is made."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]  # nothing listens once the socket is closed
    url = f"postgresql://bl2:secret@127.0.0.1:{closed}/nodb"
    space = write(tmp_path / "space.yaml", LR_SPACE)
    study = tmp_path / "study"
    r = run_cli("sweep", "teachers", "--data", data_dir, "--space", space, "--trials", "1", "--study", study,
                "--storage", url, *FIXED)
    assert_user_error(r, "cannot open Optuna storage", str(closed))
    assert "secret" not in r.stderr and not study.exists()
    assert_user_error(run_cli("sweep", "status", study, "--storage", url), "cannot open Optuna storage")

    monkeypatch.setattr(db, "CONNECT_TIMEOUT_S", 2)
    with socket.socket() as mute:  # the kernel completes the handshake; nobody ever reads or answers
        mute.bind(("127.0.0.1", 0))
        mute.listen(8)
        t0 = time.time()
        r = run_cli("sweep", "status", study, "--storage", f"postgresql://bl2@127.0.0.1:{mute.getsockname()[1]}/x")
        took = time.time() - t0
    assert_user_error(r, "cannot open Optuna storage")
    assert took < 30, took


def test_missing_driver_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # find_spec then says: not installed
    monkeypatch.setitem(sys.modules, "psycopg2", None)
    r = run_cli("sweep", "status", tmp_path / "s", "--storage", "postgresql://u@127.0.0.1:1/db")
    assert_user_error(r, "PostgreSQL", "bl2[sweep-pg]")


def start_machine(host: str, folder: Path, url: str, data_dir: Path, space: Path, trials: int, sleep: float,
                  heartbeat: float) -> subprocess.Popen:
    """A `bl2 sweep teachers` worker as machine `host`: its own working folder and --study, the shared database."""
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, slow_bl2(sleep)[0], "--as-host", host, str(sleep), "sweep", "teachers",
           "--data", str(data_dir), "--space", str(space), "--trials", str(trials), "--study", "study",
           "--study-name", "shared", "--storage", url, "--heartbeat-s", str(heartbeat), *FIXED]
    return subprocess.Popen(cmd, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=os.environ | {"OMP_NUM_THREADS": "1"}, start_new_session=True)


def training_trial(folder: Path) -> int | None:
    """The trial that machine `folder` is training now (train rows, no `done` event yet), or None."""
    for run in sorted((folder / "study" / "trials").glob("trial-*"), reverse=True):
        rows = run / metrics.FILENAME
        if metrics.read(rows, "train") and not metrics.events(rows, "done"):
            return int(run.name.split("-")[1])
    return None


def wait_until(what, procs, timeout: float = 180):
    deadline = time.time() + timeout
    while (found := what()) is None:
        for p in procs:
            assert p.poll() is None, p.stderr.read()[-3000:]
        assert time.time() < deadline, "the workers never got there"
        time.sleep(0.1)
    return found


@pytest.mark.slow
def test_two_machines_share_a_postgres_study(tmp_path, data_dir, postgres_url):
    """Machines A and B share only the database. A is killed (SIGKILL) mid-trial; B finishes the study: A's trial is
    failed by its missing heartbeat and its configuration retried on B; exactly --trials finished trials. A third
    folder lists every trial with its host and state, and confirms the best trial from the database alone."""
    trials = 4
    space = write(tmp_path / "space.yaml", LR_SPACE)
    a_dir, b_dir, third = tmp_path / "machine-a", tmp_path / "machine-b", tmp_path / "laptop"
    procs = [start_machine("machine-a", a_dir, postgres_url, data_dir, space, trials, sleep=0.5, heartbeat=1),
             start_machine("machine-b", b_dir, postgres_url, data_dir, space, trials, sleep=0.05, heartbeat=2)]
    try:
        wait_until(lambda: training_trial(b_dir), procs)  # both machines work on the study
        lost = wait_until(lambda: training_trial(a_dir), procs)  # A is mid-trial
        os.killpg(procs[0].pid, signal.SIGKILL)
        killed_at = time.time()
        procs[0].wait(timeout=30)
        assert procs[1].wait(timeout=300) == 0, procs[1].stderr.read()[-3000:]
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)

    third.mkdir()
    out = third / "status.json"
    r = subprocess.run([sys.executable, "-m", "bl2", "sweep", "status", "shared", "--storage", postgres_url,
                        "--out", str(out)], cwd=third, capture_output=True, text=True, timeout=120,
                       env=os.environ | {"COLUMNS": "200"})
    assert r.returncode == 0, r.stderr
    assert "machine-a" in r.stdout and "machine-b" in r.stdout, r.stdout
    status = json.loads(out.read_text())
    rows = {t["trial"]: t for t in status["trials"]}
    print("\n" + r.stdout)
    assert rows[lost]["host"] == "machine-a" and rows[lost]["state"] == "failed", rows[lost]
    assert rows[lost]["note"] == "worker lost"
    assert rows[lost]["run_dir"] == str((a_dir / "study" / "trials" / f"trial-{lost:04d}").resolve())
    retry = [t for t in rows.values() if t["note"].startswith(f"retry of {lost}")]
    assert len(retry) == 1 and retry[0]["params"] == rows[lost]["params"] and retry[0]["host"] == "machine-b"
    assert status["counts"]["complete"] + status["counts"]["pruned"] == trials and status["counts"]["running"] == 0
    assert all(t["state"] in ("complete", "pruned") for n, t in rows.items() if n != lost)
    assert {t["host"] for t in rows.values()} == {"machine-a", "machine-b"} and len(rows) == trials + 1

    from bl2.workflows.sweep.worker import load_study

    study = load_study(third / "shared", postgres_url)[1]  # no study folder here: the database alone
    retried = study.trials[retry[0]["trial"]]
    print(f"failover: trial {lost} killed; its retry (trial {retried.number}) started "
          f"{retried.datetime_start.timestamp() - killed_at:.1f} s after the kill")

    # confirm where no trial dir is reachable: the database holds the best trial's config
    shutil.move(b_dir, tmp_path / "gone")
    r = subprocess.run([sys.executable, "-m", "bl2", "sweep", "confirm", "shared", "--storage", postgres_url,
                        "--seeds", "1", "--device", "cpu"], cwd=third, capture_output=True, text=True, timeout=300,
                       env=os.environ | {"OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    confirmed = json.loads((third / "shared" / "confirm.json").read_text())
    assert confirmed["trial"] == status["best"]["trial"] and len(confirmed["seeds"]) == 1

    # a worker with other settings on the same database study is refused, whatever its folder
    other = write(tmp_path / "other.yaml", "lr: {log_uniform: [1e-4, 1.0e-2]}\n")
    with pytest.raises(UserError, match="other settings"):
        teacher_sweep(tmp_path / "machine-c" / "study", other, data_dir, trials=trials, storage=postgres_url,
                      study_name="shared")


def test_postgres_study_in_process(tmp_path, data_dir, postgres_url):
    """One worker on PostgreSQL: study.json keeps the URL (no password), the trials record host, run dir and
    config, and status and the study folder agree."""
    from bl2.workflows.sweep.results import sweep_status

    space = write(tmp_path / "space.yaml", LR_SPACE)
    study = tmp_path / "study"
    teacher_sweep(study, space, data_dir, trials=2, storage=postgres_url, study_name="in-process")
    meta = json.loads((study / "study.json").read_text())
    assert meta["storage"] == postgres_url and meta["study_name"] == "in-process"
    result = sweep_status(study)  # the URL from study.json
    assert [t["host"] for t in result["trials"]] == [db.sweep_host()] * 2
    from bl2.workflows.sweep.worker import load_study

    trial = load_study(study)[1].trials[0]
    assert trial.user_attrs["config"]["lr"] == trial.params["lr"]
    assert trial.user_attrs["config"]["max_steps"] == base_cfg().max_steps
