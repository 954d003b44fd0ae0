"""A damaged cache (#32.6): `cache verify` says "skipped" (never "pass") for the checks of values it could not
read, and rerunning the `cache-logits` command checks the finished-shard record against the files present and
writes what is missing or damaged again (arrays equal to the undamaged cache's)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from conftest import make_debug_model, run_cli

from bl2.cache.reader import CacheReader


def args(data_dir: Path, teachers: str, out: Path) -> list:
    return ["cache-logits", "--data", data_dir, "--teachers", teachers, "--out", out, "--seq-len", 16, "--k", 4,
            "--device", "cpu"]


def shard_file(cache: Path, array: str, index: int) -> Path:
    f = cache / array / "c" / str(index) / "0"
    return f / "0" if f.is_dir() else f


def test_damaged_cache_verify_skips_and_rerun_repairs(tmp_path, data_dir):
    teachers = ",".join(str(make_debug_model(tmp_path / f"t{s}", data_dir, s)) for s in (1, 2))
    out = tmp_path / "cache.zarr"
    assert run_cli(*args(data_dir, teachers, out)).exit_code == 0
    good = CacheReader(str(out)).read_all()
    assert len(CacheReader(str(out)).committed) >= 2  # one damaged shard, others intact
    shard_file(out, "topk_logp", 0).unlink()
    shard_file(out, "input_ids", 1).write_bytes(b"\0" * 3)  # truncated below its index

    verified = run_cli("cache", "verify", out)
    lines = verified.stdout.splitlines()
    assert verified.exit_code == 1 and any(line.startswith("FAIL  shards:") for line in lines), verified.stdout
    for name in ("checksums", "topk values", "topk ids", "input_ids"):
        assert not any(line.startswith(f"PASS  {name}") for line in lines), verified.stdout
    assert any(line.startswith("SKIP  checksums:") and "unread" in line for line in lines), verified.stdout
    assert any(line.startswith("SKIP  topk values:") for line in lines), verified.stdout
    assert any(line.startswith("PASS  attrs") for line in lines)  # checks of the whole cache still pass

    again = run_cli(*args(data_dir, teachers, out))
    assert again.exit_code == 0, again.stderr
    assert "2 finished shards are missing or damaged, writing them again" in again.stdout, again.stdout
    assert "nothing to do" not in again.stdout
    repaired = CacheReader(str(out))
    assert repaired.complete
    for name, value in repaired.read_all().items():
        np.testing.assert_array_equal(value, good[name], err_msg=name)
    ok = run_cli("cache", "verify", out)
    assert ok.exit_code == 0 and "SKIP  checksums" not in ok.stdout, ok.stdout
    assert "cache verify: " in ok.stderr and "rows (100%)" in ok.stderr  # progress off a terminal (#32.1)
    third = run_cli(*args(data_dir, teachers, out))  # intact now: a rerun has nothing to do
    assert third.exit_code == 0 and "already complete" in third.stdout


def test_repair_uncommits_only_damaged_shards(tmp_path, data_dir):
    """An intact cache is left alone; a damaged shard is un-committed and the cache marked incomplete."""
    from bl2.cache.store import repair_committed

    teachers = ",".join(str(make_debug_model(tmp_path / f"t{s}", data_dir, s)) for s in (1, 2))
    out = tmp_path / "cache.zarr"
    assert run_cli(*args(data_dir, teachers, out)).exit_code == 0
    assert repair_committed(str(out)) == []  # intact: nothing changes
    copy = tmp_path / "copy.zarr"
    shutil.copytree(out, copy)
    shard_file(copy, "topk_ids", 0).unlink()
    assert len(repair_committed(str(copy))) == 1
    assert not CacheReader(str(copy)).complete and 0 not in CacheReader(str(copy)).committed
