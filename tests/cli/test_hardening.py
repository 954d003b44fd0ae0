"""Hardening (issue 20): --overwrite deletes only what bl2 made, a missing or truncated shard is an error (never
zeros), checkpoints never run code, one writer per output (locks), bad inputs end as one line + exit 2, and
--resume refuses nothing-to-resume but survives moved inputs.

`test_bad_input` is the table: one row per case (command line, exit code, message fragment, and a path that
must not exist afterwards)."""

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
import torch
from conftest import assert_user_error, run_cli

from bl2 import locks
from bl2.distill import checkpoint

SEQ = "16"  # cache windows: short, so the fixture cache costs a fraction of a second
RUN = ("--preset", "debug", "--max-steps", "2", "--batch-size", "8", "--ckpt-every-steps", "1", "--device", "cpu")
DISTILL = ("--preset", "debug", "--max-steps", "2", "--batch-size", "4", "--device", "cpu")
TIMEOUT = 120  # seconds any spawned process may live
CACHE_WINDOWS = 300  # two shards: a full one (zarr reads a whole missing or empty shard as zeros) and a partial one


def copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


@pytest.fixture(scope="module")
def env(tmp_path_factory, data_dir, debug_model_dir, corpus_dirs) -> dict[str, Path]:
    """Good artefacts (a finished run, a complete cache) and broken copies of them, made once."""
    root = tmp_path_factory.mktemp("hardening")
    e = {"root": root, "data": data_dir, "model": debug_model_dir, "corpus": corpus_dirs[0], "dev": corpus_dirs[1]}
    r = run_cli("pretrain", "--data", data_dir, "--out", root / "run", *RUN)
    assert r.exit_code == 0, r.stderr
    r = run_cli("cache-logits", "--data", data_dir, "--teachers", debug_model_dir, "--out", root / "cache.zarr",
                "--seq-len", SEQ, "--k", "4", "--max-windows", str(CACHE_WINDOWS), "--device", "cpu")
    assert r.exit_code == 0, r.stderr
    e["run"], e["cache"] = root / "run", root / "cache.zarr"
    # model dirs: random weights, truncated weights, garbled config.json, a config with a non-integer vocab
    weights = (debug_model_dir / "model.safetensors").read_bytes()
    for name, edit in {
        "rand_st": lambda d: (d / "model.safetensors").write_bytes(os.urandom(4096)),
        "trunc_st": lambda d: (d / "model.safetensors").write_bytes(weights[: len(weights) // 2]),
        "bad_cfg": lambda d: (d / "config.json").write_text("{not json"),
        "cfg_vocab": lambda d: (d / "config.json").write_text(
            json.dumps(json.loads((d / "config.json").read_text()) | {"vocab_size": "x"})),
    }.items():
        edit(copy(debug_model_dir, root / name))
        e[name] = root / name
    e["garbled_cache"] = copy(e["cache"], root / "garbled.zarr")
    (e["garbled_cache"] / "topk_logp" / "zarr.json").write_text('{"zarr_format": 3, "node_type": ')
    # run dirs for --resume: truncated model.pt, no state.json, garbled run.json, run.json without identity
    last = checkpoint.latest(e["run"]).name
    for name, edit in {
        "run_trunc": lambda d: (d / "checkpoints" / last / "model.pt").write_bytes(b"PK\x03\x04trunc"),
        "run_nostate": lambda d: (d / "checkpoints" / last / "state.json").unlink(),
        "run_badjson": lambda d: (d / "run.json").write_text("{"),
        "run_noident": lambda d: (d / "run.json").write_text("[]"),
    }.items():
        edit(copy(e["run"], root / name))
        e[name] = root / name
    for name, text in {"y_ebs": "eval_batch_size: 0\n", "y_betas": "betas: [2, 3]\n", "y_steps": "max_steps: 2.5\n",
                       "y_bool": "compile: 'yes'\n", "y_lr": "lr: fast\n"}.items():
        (root / f"{name}.yaml").write_text(text)
        e[name] = root / f"{name}.yaml"
    e["stranger"] = root / "stranger"
    e["stranger"].mkdir()
    (e["stranger"] / "thesis.txt").write_text("years of work")
    e["afile"] = root / "afile.txt"
    e["afile"].write_text("a file")
    blimp = root / "blimp" / "blimp_filtered"
    blimp.mkdir(parents=True)
    pair = {"sentence_good": "The dog sees.", "sentence_bad": "The dog see."}
    (blimp / "agreement.jsonl").write_text(json.dumps(pair) + "\n")
    e["blimp"] = blimp.parent
    e["new"] = root / "new"  # nothing may appear under here
    return e


CASES = [
    # 1. --overwrite replaces only what bl2 made
    ("prepare-overwrite-stranger", ["prepare", "{corpus}", "--dev", "{dev}", "--out", "{stranger}", "--overwrite"], 2,
     "not a DATA_DIR made by bl2 prepare", None),
    ("prepare-overwrite-file", ["prepare", "{corpus}", "--dev", "{dev}", "--out", "{afile}", "--overwrite"], 2,
     "is not a folder", None),
    ("pretrain-overwrite-model-dir", ["pretrain", "--data", "{data}", "--out", "{trunc_st}", "--overwrite", *RUN], 2,
     "not a bl2 run dir", None),
    ("pretrain-overwrite-stranger", ["pretrain", "--data", "{data}", "--out", "{stranger}", "--overwrite", *RUN], 2,
     "not a bl2 run dir", None),
    ("quickstart-overwrite-stranger", ["quickstart", "--out", "{stranger}", "--overwrite"], 2,
     "not a quickstart folder", None),
    # 5. broken model dirs
    ("cache-logits-random-weights", ["cache-logits", "--data", "{data}", "--teachers", "{rand_st}", "--out",
                                     "{new}/c1.zarr", "--seq-len", SEQ, "--device", "cpu"], 2, "cannot load model",
     "{new}/c1.zarr"),
    ("cache-logits-bad-config", ["cache-logits", "--data", "{data}", "--teachers", "{bad_cfg}", "--out",
                                 "{new}/c2.zarr"], 2, "not valid JSON", "{new}/c2.zarr"),
    ("eval-loss-truncated-weights", ["eval", "loss", "{trunc_st}", "--data", "{data}", "--device", "cpu"], 2,
     "cannot load model", None),
    ("eval-loss-bad-config", ["eval", "loss", "{bad_cfg}", "--data", "{data}"], 2, "not valid JSON", None),
    ("eval-loss-config-types", ["eval", "loss", "{cfg_vocab}", "--data", "{data}"], 2,
     "vocab_size must be an integer", None),
    ("eval-blimp-bad-config", ["eval", "blimp", "{bad_cfg}", "--data-dir", "{blimp}"], 2, "not valid JSON", None),
    ("eval-blimp-random-weights", ["eval", "blimp", "{rand_st}", "--data-dir", "{blimp}", "--suite", "filtered",
                                   "--device", "cpu"], 2,
     "cannot load model", None),
    ("distill-online-random-weights", ["distill", "--teachers", "{rand_st}", "--data", "{data}", "--out", "{new}/o1",
                                       *DISTILL], 2, "cannot load model", "{new}/o1"),
    ("distill-online-bad-config", ["distill", "--teachers", "{bad_cfg}", "--data", "{data}", "--out", "{new}/o2",
                                   *DISTILL], 2, "not valid JSON", "{new}/o2"),
    # 5. a garbled array zarr.json in a cache
    ("cache-info-garbled-array", ["cache", "info", "{garbled_cache}"], 2, "array topk_logp cannot be opened", None),
    ("cache-verify-garbled-array", ["cache", "verify", "{garbled_cache}"], 2, "array topk_logp cannot be opened", None),
    ("distill-garbled-array", ["distill", "--cache", "{garbled_cache}", "--out", "{new}/g1", *DISTILL], 2,
     "array topk_logp cannot be opened", "{new}/g1"),
    # 5. YAML values of the wrong type or range
    ("yaml-eval-batch-size-0", ["pretrain", "--data", "{data}", "--out", "{new}/y1", "--config", "{y_ebs}", *RUN], 2,
     "eval_batch_size must be >= 1", "{new}/y1"),
    ("yaml-betas", ["pretrain", "--data", "{data}", "--out", "{new}/y2", "--config", "{y_betas}", *RUN], 2,
     "betas must each be in [0, 1)", "{new}/y2"),
    ("yaml-max-steps-float", ["pretrain", "--data", "{data}", "--preset", "debug", "--out", "{new}/y3", "--config",
                              "{y_steps}"], 2, "max_steps must be an integer, got 2.5", "{new}/y3"),
    ("yaml-bool-string", ["pretrain", "--data", "{data}", "--out", "{new}/y4", "--config", "{y_bool}", *RUN], 2,
     "compile must be true or false", "{new}/y4"),
    ("yaml-lr-word", ["pretrain", "--data", "{data}", "--out", "{new}/y5", "--config", "{y_lr}", *RUN], 2,
     "lr must be a number", "{new}/y5"),
    # 5. --resume of damaged run dirs
    ("resume-truncated-model-pt", ["pretrain", "--data", "{data}", "--out", "{run_trunc}", "--resume", *RUN], 2,
     "model.pt", None),
    ("resume-missing-state", ["pretrain", "--data", "{data}", "--out", "{run_nostate}", "--resume", *RUN], 2,
     "state.json is missing", None),
    ("resume-garbled-run-json", ["pretrain", "--data", "{data}", "--out", "{run_badjson}", "--resume", *RUN], 2,
     "run.json is unreadable", None),
    ("resume-run-json-without-identity", ["pretrain", "--data", "{data}", "--out", "{run_noident}", "--resume", *RUN],
     2, "was not written by bl2", None),
    # 6. lenient no more
    ("resume-nothing", ["pretrain", "--data", "{data}", "--out", "{new}/typo", "--resume", *RUN], 2,
     "nothing to resume at", "{new}/typo"),
    ("batch-larger-than-data", ["pretrain", "--data", "{data}", "--out", "{new}/big", *RUN, "--batch-size", "100000"],
     2, "fewer than one batch of 100000", "{new}/big"),
    ("distill-batch-larger-than-cache", ["distill", "--cache", "{cache}", "--out", "{new}/big2", *DISTILL,
                                         "--batch-size", "512"], 2, "fewer than one batch of 512", "{new}/big2"),
    ("pretrain-out-is-file", ["pretrain", "--data", "{data}", "--out", "{afile}", *RUN], 2, "is a file", None),
    ("eval-loss-out-exists", ["eval", "loss", "{model}", "--data", "{data}", "--out", "{afile}"], 2,
     "pass --overwrite", None),
    ("eval-loss-out-is-folder", ["eval", "loss", "{model}", "--data", "{data}", "--out", "{stranger}", "--overwrite"],
     2, "is a folder", None),
]


@pytest.mark.parametrize("args, code, fragment, absent", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input(env, args, code, fragment, absent):
    result = run_cli(*[a.format(**env) for a in args])
    assert result.exit_code == code, (result.exit_code, result.stdout[-2000:], result.stderr)
    if code == 2:
        assert_user_error(result, fragment)
    if absent:
        assert not Path(absent.format(**env)).exists()
    assert (env["stranger"] / "thesis.txt").read_text() == "years of work"
    assert not list(env["root"].glob(f".*{locks.SUFFIX}")) and not list(env["new"].glob(f".*{locks.SUFFIX}"))


def test_read_only_outputs_fail_before_the_work(env, monkeypatch):
    """pretrain, distill and both evals check that --out is writable before loading or scoring anything (root
    ignores permissions, so the check's view is simulated, as in test_prepare)."""
    ro = env["root"] / "readonly"
    ro.mkdir()
    ro.chmod(0o500)
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(ro) else real(p, mode))
    try:
        for args in (["pretrain", "--data", env["data"], "--out", ro / "r", *RUN],
                     ["distill", "--cache", env["cache"], "--out", ro / "s", *DISTILL],
                     ["eval", "loss", env["model"], "--data", env["data"], "--out", ro / "l.json"],
                     ["eval", "blimp", env["model"], "--data-dir", env["blimp"], "--out", ro / "b.json"]):
            assert_user_error(run_cli(*args), "not writable")
    finally:
        ro.chmod(0o700)
    assert not any(ro.iterdir())


# ------------------------------------------------------------------------------------------------ 1. overwrite
def test_prepare_overwrite_replaces_a_data_dir_and_leaves_nothing_behind(tmp_path, corpus_dirs):
    from bl2.data.prepare import is_data_dir

    out = tmp_path / "D"
    args = ["prepare", corpus_dirs[0], "--dev", corpus_dirs[1], "--out", out, "--vocab-size", "300"]
    assert run_cli(*args).exit_code == 0
    first = (out / "tokenizer.json").read_bytes()
    r = run_cli(*args[:-1], "280", "--overwrite")
    assert r.exit_code == 0, r.stderr
    assert is_data_dir(out) and (out / "tokenizer.json").read_bytes() != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["D"]  # no temp dir, no aside copy, no lock file


# ------------------------------------------------------------------------------------------------ 2. shards
def damaged_cache(env, name: str, array: str, damage) -> Path:
    path = copy(env["cache"], env["root"] / name)
    shard = path / array / "c" / "0" / "0"
    shard = shard / "0" if shard.is_dir() else shard
    damage(shard)
    return path


def test_missing_shard_is_an_error_for_distill_verify_and_reader(env):
    from bl2.cache.reader import CacheReader
    from bl2.cache.shards import ShardError, check_committed_shards

    path = damaged_cache(env, "noshard.zarr", "topk_logp", lambda f: f.unlink())
    out = env["root"] / "student-noshard"
    result = run_cli("distill", "--cache", path, "--out", out, *DISTILL)
    assert_user_error(result, "array topk_logp rows 0:256", "missing")
    assert len(result.stderr.strip().splitlines()) == 1 and not out.exists()
    verified = run_cli("cache", "verify", path)
    assert verified.exit_code == 1 and "FAIL  shards: cache" in verified.stdout and "topk_logp" in verified.stdout
    assert "FAILED" in verified.stdout
    reader = CacheReader(str(path))
    for call in (lambda: check_committed_shards(reader), reader.read_all, lambda: reader.read(0, 5, ["topk_logp"])):
        with pytest.raises(ShardError, match="topk_logp"):
            call()
    assert reader.read(0, 5, ["input_ids"])["input_ids"].any()  # the other arrays still read
    ids = damaged_cache(env, "noids.zarr", "input_ids", lambda f: f.unlink())
    with pytest.raises(ShardError, match="array input_ids rows 0:256"):
        check_committed_shards(CacheReader(str(ids)))


@pytest.mark.parametrize("keep", [0, 10, "half"])
def test_empty_or_truncated_shard_is_an_error(env, keep):
    """Empty and shorter-than-index files are caught by the shard check; a file cut in half fails the index
    checksum when read. Either way a UserError, never zeros."""
    from bl2.cache.reader import CacheReader
    from bl2.errors import UserError

    def cut(f: Path):
        data = f.read_bytes()
        f.write_bytes(data[: len(data) // 2 if keep == "half" else keep])

    path = damaged_cache(env, f"cut{keep}.zarr", "topk_ids", cut)
    with pytest.raises(UserError, match="topk_ids"):
        CacheReader(str(path)).read_all()
    verified = run_cli("cache", "verify", path)
    assert verified.exit_code == 1 and "topk_ids" in verified.stdout


def test_shard_record_sizes_are_compared(env):
    """The optional finished-shard record ({array: {shard index: bytes}}) must match the files."""
    from bl2.cache.reader import CacheReader
    from bl2.cache.shards import ShardError, check_committed_shards, shard_keys

    healthy = run_cli("cache", "verify", env["cache"])
    assert healthy.exit_code == 0 and "PASS  shards" in healthy.stdout, healthy.stdout
    reader = CacheReader(str(env["cache"]))
    record = {name: {i: (env["cache"] / key).stat().st_size for i, key in shard_keys(arr, 0, reader.n_windows)}
              for name, arr in reader.zarr_arrays.items()}
    assert shard_keys(reader.zarr_arrays["topk_logp"], 250, 260) == [(0, "topk_logp/c/0/0/0"), (1, "topk_logp/c/1/0/0")]
    check_committed_shards(reader, record)
    record["topk_ids"][0] += 1
    with pytest.raises(ShardError, match="array topk_ids rows 0:256.*the record says"):
        check_committed_shards(reader, record)
    del record["topk_ids"][0]
    with pytest.raises(ShardError, match="no size recorded"):
        check_committed_shards(reader, record)


# ------------------------------------------------------------------------------------------------ 3. pickles
class Payload:
    """Unpickling this runs a shell command that creates a file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_malicious_checkpoint_is_refused_and_never_runs(env):
    run = copy(env["run"], env["root"] / "run-evil")
    marker = env["root"] / "pwned"
    rng = checkpoint.latest(run) / "rng.pt"
    torch.save({"torch": Payload(marker)}, rng)
    torch.load(rng, weights_only=False)  # the payload is real: an unsafe load runs it
    assert marker.exists()
    marker.unlink()
    result = run_cli("pretrain", "--data", env["data"], "--out", run, "--resume", *RUN)
    assert_user_error(result, "refusing to load", "rng.pt")
    assert not marker.exists()


def test_rng_state_round_trips_through_weights_only(tmp_path):
    import random

    import numpy as np

    torch.save(checkpoint.rng_state(), tmp_path / "rng.pt")
    expected = (torch.rand(3), np.random.rand(3), random.random())
    checkpoint.set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], again[0]) and np.array_equal(expected[1], again[1]) and expected[2] == again[2]


# ------------------------------------------------------------------------------------------------ 4. locks
HOLDER = ("import sys, time\nfrom bl2.locks import hold\nwith hold(sys.argv[1], sys.argv[2]):\n"
          "    print('held', flush=True)\n    time.sleep(float(sys.argv[3]))\n")


def start_holder(path: Path, what: str, seconds: float = TIMEOUT) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path), what, str(seconds)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=TIMEOUT)


def test_second_writer_is_refused_with_the_holder_named(env, tmp_path):
    """Another process holds each output: pretrain, distill, prepare and cache-logits are refused (holder's pid
    named) and touch nothing; after the holder is killed, its stale lock file does not block a new run."""
    outs = {"run dir": tmp_path / "run", "DATA dir": tmp_path / "D", "cache": tmp_path / "c.zarr"}
    commands = {
        "run dir": ["pretrain", "--data", env["data"], "--out", outs["run dir"], *RUN],
        "DATA dir": ["prepare", env["corpus"], "--dev", env["dev"], "--out", outs["DATA dir"], "--vocab-size", "300"],
        "cache": ["cache-logits", "--data", env["data"], "--teachers", env["model"], "--out", outs["cache"],
                  "--seq-len", SEQ, "--k", "4", "--max-windows", "20", "--device", "cpu"],
    }
    holders = {what: start_holder(out, what) for what, out in outs.items()}
    try:
        for what, args in commands.items():
            assert_user_error(run_cli(*args), f"{what} {outs[what]} is in use by pid {holders[what].pid}")
            assert not outs[what].exists()
        assert_user_error(run_cli("distill", "--cache", env["cache"], "--out", outs["run dir"], *DISTILL),
                          f"is in use by pid {holders['run dir'].pid}")
    finally:
        for proc in holders.values():
            stop(proc)
    stale = locks.lock_path(outs["run dir"])
    assert json.loads(stale.read_text())["pid"] == holders["run dir"].pid  # left by the killed holder
    r = run_cli(*commands["run dir"])
    assert r.exit_code == 0, r.stderr
    assert not stale.exists() and not list(outs["run dir"].glob("*lock*"))  # removed on a clean exit, never inside


@pytest.mark.slow
def test_two_cache_writers(env, tmp_path):
    """Two real `bl2 cache-logits` processes on one new --out: the second is refused, naming the first."""
    out = tmp_path / "c.zarr"
    args = ["cache-logits", "--data", env["data"], "--teachers", env["model"], "--out", out, "--seq-len", SEQ,
            "--k", "4", "--max-windows", "20", "--device", "cpu"]
    proc = subprocess.Popen([sys.executable, "-m", "bl2", *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "BL2_CACHE_TEST_SHARD_SLEEP": "60"})
    try:
        deadline = time.time() + TIMEOUT
        while (locks.holder(out) or {}).get("pid") != proc.pid and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert locks.holder(out)["what"] == "cache"
        other = copy(env["model"], tmp_path / "other-teacher")
        second = run_cli(*[other if a == env["model"] else a for a in args])
        assert_user_error(second, f"cache {out} is in use by pid {proc.pid}")
    finally:
        stop(proc)


def test_lock_is_a_sibling_and_reentry_is_refused(tmp_path):
    out = tmp_path / "x" / "out"
    with locks.hold(out, "run dir") as info:
        assert locks.lock_path(out) == tmp_path / "x" / f".out{locks.SUFFIX}" and info["pid"] == os.getpid()
        with pytest.raises(locks.UserError, match="in use by pid"):
            with locks.hold(tmp_path / "x" / "." / "out", "run dir"):
                pass
    assert not locks.lock_path(out).exists()
    with locks.hold("s3://bucket/cache.zarr", "cache") as info:
        assert info is None  # remote stores: not locked (the README's rule)


# ------------------------------------------------------------------------------------------------ 6. moved inputs
def test_resume_after_moving_the_cache_and_the_data(env, tmp_path):
    """Run identities hold content hashes, not paths: a run continues after its cache or DATA dir moved."""
    cache = copy(env["cache"], tmp_path / "c1.zarr")
    data = copy(env["data"], tmp_path / "D1")
    student, teacher = tmp_path / "student", tmp_path / "teacher"
    assert run_cli("distill", "--cache", cache, "--data", data, "--out", student, *DISTILL).exit_code == 0
    assert run_cli("pretrain", "--data", data, "--out", teacher, *RUN).exit_code == 0
    run_json = json.loads((student / "run.json").read_text())
    assert run_json["paths"]["cache"] == str(cache.resolve()) and "path" not in run_json["identity"]["cache"]
    moved_cache, moved_data = cache.rename(tmp_path / "c2.zarr"), data.rename(tmp_path / "D2")
    r = run_cli("distill", "--cache", moved_cache, "--data", moved_data, "--out", student, "--resume", *DISTILL)
    assert r.exit_code == 0, r.stderr
    r = run_cli("pretrain", "--data", moved_data, "--out", teacher, "--resume", *RUN)
    assert r.exit_code == 0, r.stderr
    other = run_cli("pretrain", "--data", moved_data, "--out", teacher, "--resume", *RUN, "--seed", "1")
    assert_user_error(other, "different configuration", "seed")


def test_config_accepts_numbers_yaml_reads_as_strings():
    from bl2.distill.config import TrainConfig

    cfg = TrainConfig(preset="debug", lr="3e-4", weight_decay=0, betas=[0.9, 0.95])
    assert cfg.lr == 3e-4 and isinstance(cfg.weight_decay, float) and cfg.betas == (0.9, 0.95)
