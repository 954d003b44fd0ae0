"""`bl2 cache-logits` through the CLI: bad input ends with exit 2 and one line (nothing destroyed), resume after
SIGKILL gives arrays identical to an uninterrupted run's, complete caches are left alone, --overwrite replaces."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import conftest
import numpy as np
import pytest
from conftest import make_debug_model
from conftest import run_cli as run

from bl2.cache.reader import CacheReader

SEQ = 16


def make_teacher(root: Path, data_dir: Path, seed: int, vocab: int | None = None) -> Path:
    return make_debug_model(root / f"debug-{seed}-{vocab or 'data'}", data_dir, seed, vocab)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def teachers(root, data_dir) -> str:
    return ",".join(str(make_teacher(root, data_dir, s)) for s in (1, 2))


def base_args(data_dir, teachers, out, *extra):
    return ["cache-logits", "--data", data_dir, "--teachers", teachers, "--out", out, "--seq-len", SEQ, *extra]


def assert_user_error(result, match: str) -> None:
    """conftest's check, and nothing else on stderr (not even a warning)."""
    conftest.assert_user_error(result, match)
    assert isinstance(result.exception, SystemExit) and len(result.stderr.strip().splitlines()) == 1, result.stderr


def snapshot(path: Path) -> dict:
    return {str(f): f.read_bytes() for f in sorted(path.rglob("*")) if f.is_file()}


@pytest.fixture(scope="module")
def odd_teachers(root, data_dir) -> dict[str, Path]:
    """Teachers that must be refused: other vocab, other tokenizer, vocab > 65536."""
    other_vocab = make_teacher(root, data_dir, 3, vocab=500)
    other_tok = root / "other-tok"
    shutil.copytree(make_teacher(root, data_dir, 4), other_tok)
    tok = json.loads((other_tok / "tokenizer.json").read_text())
    (other_tok / "tokenizer.json").write_text(json.dumps(tok, indent=1))  # same tokenizer, other bytes
    other_tok2 = root / "other-tok2"
    shutil.copytree(other_tok, other_tok2)
    huge = [make_teacher(root, data_dir, s, vocab=70000) for s in (5, 6)]
    return {"vocab": other_vocab, "tok": other_tok, "tok2": other_tok2, "huge0": huge[0], "huge1": huge[1]}


@pytest.fixture(scope="module")
def tiny_data(root, data_dir) -> Path:
    """A DATA dir with the fixture tokenizer, a 10-token train split and an empty val split."""
    from bl2.data.store import STORE_NAME, TokenStore, write_store
    from bl2.model.io import copy_tokenizer

    store = TokenStore(data_dir)
    out = root / "TINYDATA"
    copy_tokenizer(data_dir, out)
    splits = {"train": np.arange(3, 13, dtype=np.uint16), "val": np.zeros(0, np.uint16), "test": np.ones(50, np.uint16)}
    write_store(out / STORE_NAME, splits, {"vocab_size": store.vocab_size, "tokenizer_sha256": store.tokenizer_sha256})
    return out


def test_bad_inputs_exit_2(data_dir, teachers, odd_teachers, tiny_data, root):
    out = root / "never.zarr"
    t1 = teachers.split(",")[0]
    cases = [
        (base_args(data_dir, f"{t1},{odd_teachers['vocab']}", out), "different vocab sizes"),
        (base_args(data_dir, f"{t1},{odd_teachers['tok']}", out), "different tokenizers"),
        (base_args(data_dir, f"{odd_teachers['tok']},{odd_teachers['tok2']}", out), "differs from the DATA dir"),
        (base_args(data_dir, f"{odd_teachers['huge0']},{odd_teachers['huge1']}", out), "exceeds 65536"),
        (base_args(data_dir, f"{t1},{root / 'missing'}", out), "model dir not found"),
        (base_args(tiny_data, teachers, out, "--split", "val"), "too few for one window"),
        (base_args(tiny_data, teachers, out), "too few for one window"),
        (base_args(data_dir, teachers, out, "--k", "100000"), "exceeds the vocabulary size"),
        (base_args(data_dir, teachers, out, "--k", "0"), "--k must be >= 1"),
        (base_args(data_dir, teachers, out, "--temperatures", "1,0"), "temperatures must be > 0"),
        (base_args(data_dir, teachers, out, "--temperatures", "-2"), "temperatures must be > 0"),
        (base_args(data_dir, teachers, out, "--temperatures", "1,x"), "comma-separated numbers"),
        (base_args(data_dir, teachers, out, "--mode", "sample", "--sample-temperature", "0"), "must be > 0"),
        (base_args(data_dir, teachers, out, "--mode", "sample", "--n-draws", "0"), "1..255"),
        (base_args(data_dir, teachers, out, "--mode", "sample", "--n-draws", "256"), "1..255"),
        (base_args(data_dir, teachers, out, "--mode", "nope"), "'--mode': 'nope' is not one of"),
        (base_args(data_dir, teachers, out, "--ensemble", "median"), "'--ensemble': 'median' is not one of"),
        (base_args(data_dir, teachers, out, "--seq-len", "10000"), "outside 1..256"),
        (base_args(data_dir, teachers, out, "--offsets", "17"), "exceeds seq_len"),
        (base_args(root / "nodata", teachers, out), "data directory not found"),
        (base_args(data_dir, teachers, root / "afile" / "c.zarr"), "is not a folder"),
    ]
    (root / "afile").write_text("a file, not a folder")
    for args, match in cases:
        result = run(*args)
        print(result.stderr.strip())
        assert_user_error(result, match)
    assert not out.exists()


def test_existing_store_refused_and_untouched(data_dir, teachers, root):
    out = root / "existing.zarr"
    assert run(*base_args(data_dir, teachers, out, "--k", "4", "--max-windows", "20")).exit_code == 0
    before = snapshot(out)
    assert_user_error(run(*base_args(data_dir, teachers, out, "--k", "5", "--max-windows", "20")), "k differ")
    assert_user_error(run(*base_args(data_dir, teachers, out, "--k", "4", "--temperatures", "1,2",
                                     "--max-windows", "20")), "temperatures")
    assert snapshot(out) == before
    again = run(*base_args(data_dir, teachers, out, "--k", "4", "--max-windows", "20"))
    assert again.exit_code == 0 and "already complete" in again.stdout and snapshot(out) == before
    replaced = run(*base_args(data_dir, teachers, out, "--k", "5", "--max-windows", "20", "--overwrite"))
    assert replaced.exit_code == 0 and CacheReader(str(out)).k == 5
    stranger = root / "stranger"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    assert_user_error(run(*base_args(data_dir, teachers, stranger, "--overwrite")), "not a bl2 cache")
    assert (stranger / "notes.txt").read_text() == "mine"


def windows_done(out: Path) -> int:
    """Rows committed so far: the sum of the `committed` record's rows column (cache format v2)."""
    import zarr

    try:
        return int(zarr.open_array(str(out / "committed"), mode="r")[:, 0].sum())
    except Exception:  # not created yet
        return 0


@pytest.mark.slow
def test_sigkill_then_resume_is_identical(data_dir, teachers, root):
    """Kill a run after its first committed shard, rerun: same arrays as an uninterrupted run (4 shards)."""
    args = base_args(data_dir, teachers, "", "--k", "8", "--temperatures", "1,2", "--batch-size", "5")
    ref, out = root / "ref.zarr", root / "killed.zarr"
    args_for = lambda p: [str(a) if a != "" else str(p) for a in args]  # noqa: E731
    env = {**os.environ, "BL2_CACHE_TEST_SHARD_SLEEP": "3", "TRANSFORMERS_VERBOSITY": "error"}
    proc = subprocess.Popen([sys.executable, "-m", "bl2", *args_for(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while windows_done(out) == 0 and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    attrs = json.loads((out / "zarr.json").read_text())["attributes"]
    done = windows_done(out)
    assert 0 < done < attrs["n_windows"] and not attrs["complete"]
    orphan = out / "topk_ids" / "c" / "1" / "0" / "0.deadbeef.partial"
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"torn")
    resumed = run(*args_for(out))
    assert resumed.exit_code == 0 and f"resuming: {done // 256} of 4 shards already written" in resumed.stdout
    assert not list(out.rglob("*.partial"))
    assert run(*args_for(ref)).exit_code == 0
    a, b = CacheReader(str(out)), CacheReader(str(ref))
    a.require_complete()
    for name, value in b.read_all().items():
        np.testing.assert_array_equal(a.read_all()[name], value, err_msg=name)


def test_tools_cli(data_dir, teachers, root):
    topk, full = root / "tools-topk.zarr", root / "tools-full.zarr"
    assert run(*base_args(data_dir, teachers, topk, "--k", "4", "--max-windows", "8")).exit_code == 0
    assert run(*base_args(data_dir, teachers, full, "--mode", "full", "--max-windows", "8")).exit_code == 0
    info = run("cache", "info", topk)
    assert info.exit_code == 0 and "topk_logp" in info.stdout and "B/token" in info.stdout
    verified = run("cache", "verify", topk, "--data", data_dir, "--teachers", teachers, "--windows", "2")
    assert verified.exit_code == 0 and "PASS  recompute" in verified.stdout and "FAIL" not in verified.stdout
    out = root / "cmp.json"
    compared = run("cache", "compare", topk, full, "--out", out)
    assert compared.exit_code == 0 and json.loads(out.read_text())["rows"][0]["T"] == 1.0
    assert_user_error(run("cache", "verify", root / "nothing.zarr"), "cache not found")
    assert_user_error(run("cache", "compare", topk, topk), "must be mode full")
    assert_user_error(run("cache", "info", data_dir / "tokens.zarr"), "not a bl2 logit cache")


def test_storage_options_help_is_the_fsspec_one():
    """Every command with --storage-options documents the fsspec JSON (not another command's option of a similar
    name: a module-level option type once shadowed it) and reads BL2_STORAGE_OPTIONS."""
    from typer.testing import CliRunner

    from bl2.cli import app

    for cmd in (["prepare"], ["pretrain"], ["distill"], ["cache-logits"], ["cache", "info"], ["cache", "verify"],
                ["cache", "compare"], ["eval", "loss"]):
        out = CliRunner().invoke(app, [*cmd, "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"}).output
        assert "fsspec" in out and "BL2_STORAGE_OPTIONS" in out and "Optuna" not in out, cmd
