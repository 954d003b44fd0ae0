"""Caches and DATA dirs on object storage, against a real S3 API: moto's server on 127.0.0.1, started by the
fixture (credentials and endpoint through the usual AWS environment variables, as a user would set them).
prepare to s3, cache-logits to s3 (killed mid-write and rerun: equal to an uninterrupted cache), distill
streaming from s3, `cache verify` on s3 catching a corrupted chunk object."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import make_debug_model, run_cli

from bl2.cache.reader import CacheReader

pytestmark = pytest.mark.slow  # a moto S3 server and subprocesses

BUCKET = "bl2-test"
TIMEOUT = 240


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A local S3 endpoint for the module; yields the bucket URL."""
    server_mod = pytest.importorskip("moto.server", reason="moto[server] is not installed")
    pytest.importorskip("s3fs", reason="s3fs is not installed")
    try:
        server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
    except Exception as e:  # pragma: no cover - only where sockets are forbidden
        pytest.skip(f"cannot start moto's S3 server on 127.0.0.1: {e}")
    host, port = server.get_host_and_port()
    env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://{host}:{port}"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    import boto3

    boto3.client("s3").create_bucket(Bucket=BUCKET)
    yield f"s3://{BUCKET}"
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    server.stop()


@pytest.fixture(scope="module")
def s3_data(s3, corpus_dirs) -> str:
    url = f"{s3}/DATA"
    r = run_cli("prepare", corpus_dirs[0], "--dev", corpus_dirs[1], "--out", url, "--vocab-size", "400")
    assert r.exit_code == 0, r.stderr
    return url


@pytest.fixture(scope="module")
def teachers(tmp_path_factory, data_dir) -> str:
    root = tmp_path_factory.mktemp("s3-teachers")
    return ",".join(str(make_debug_model(root / f"t{s}", data_dir, seed=s)) for s in (1, 2))


def cache_args(data, teachers, out, *extra):
    return ["cache-logits", "--data", data, "--teachers", teachers, "--out", out, "--seq-len", "16", "--k", "8",
            "--batch-size", "64", "--device", "cpu", *extra]


def test_prepare_to_s3_equals_local(s3_data, data_dir, corpus_dirs):
    from conftest import assert_user_error

    from bl2.data.store import TokenStore

    remote, local = TokenStore(s3_data), TokenStore(data_dir)
    assert remote.tokenizer_sha256 == local.tokenizer_sha256  # same corpus, same tokenizer
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(remote.split(split), local.split(split))
    assert (os.path.isfile(os.path.join(remote.tokenizer_dir, "tokenizer.json")))
    again = run_cli("prepare", corpus_dirs[0], "--dev", corpus_dirs[1], "--out", s3_data, "--vocab-size", "400")
    assert_user_error(again, "already exists")


def test_cache_on_s3_killed_then_rerun(s3, s3_data, teachers, tmp_path):
    url = f"{s3}/killed.zarr"
    cmd = [sys.executable, "-m", "bl2", *cache_args(s3_data, teachers, url)]
    env = os.environ | {"BL2_CACHE_TEST_SHARD_SLEEP": "2"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + TIMEOUT
        while _committed(url) == 0:
            assert proc.poll() is None and time.time() < deadline, "the run ended before a shard was committed"
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert not CacheReader(url).complete
    r = run_cli(*cache_args(s3_data, teachers, url))
    assert r.exit_code == 0 and "shards already written" in r.stdout, r.stdout + r.stderr
    local = tmp_path / "ref.zarr"
    assert run_cli(*cache_args(s3_data, teachers, str(local))).exit_code == 0
    a, b = CacheReader(url), CacheReader(str(local))
    a.require_complete()
    ref = b.read_all()
    for name, value in a.read_all().items():
        np.testing.assert_array_equal(value, ref[name], err_msg=name)


def _committed(url: str) -> int:
    from bl2 import storage

    try:
        return int(storage.open_zarr_group(url, mode="r")["committed"][:, 0].sum())
    except Exception:
        return 0


def test_distill_streams_from_s3_and_verify_catches_corruption(s3, s3_data, teachers, tmp_path):
    from bl2 import storage

    url = f"{s3}/topk.zarr"
    assert run_cli(*cache_args(s3_data, teachers, url)).exit_code == 0
    args = ["distill", "--cache", url, "--preset", "debug", "--max-steps", "3", "--batch-size", "8", "--device", "cpu",
            "--cache-in-memory", "no", "--log-every-steps", "1"]
    r = run_cli(*args, "--out", tmp_path / "student")
    assert r.exit_code == 0, r.stderr
    assert (tmp_path / "student" / "model.safetensors").is_file()
    assert run_cli("cache", "verify", url).exit_code == 0
    info = run_cli("cache", "info", url)
    assert info.exit_code == 0 and "status: complete" in info.stdout, info.stdout
    loss = run_cli("eval", "loss", tmp_path / "student", "--data", s3_data, "--device", "cpu")
    assert loss.exit_code == 0 and "CE" in loss.stdout, loss.stderr
    fs, path = storage.filesystem(url)
    key = f"{path}/topk_logp/c/1/0/0"
    blob = bytearray(fs.cat_file(key))
    blob[100] ^= 0xFF  # one flipped byte inside a compressed chunk
    fs.pipe_file(key, bytes(blob))
    r = run_cli("cache", "verify", url)
    assert r.exit_code == 1 and "FAIL" in r.stdout, r.stdout


@pytest.fixture
def fresh_s3fs():
    """s3fs caches its filesystems by options: tests that change the environment (endpoint, credentials) get a
    new one."""
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    yield
    s3fs.S3FileSystem.clear_instance_cache()


def s3_commands(url: str, model, out) -> dict[str, list]:
    """Every kind of command that reads or writes object storage, pointed at `url`."""
    return {"cache info": ["cache", "info", f"{url}/c.zarr"],
            "cache verify": ["cache", "verify", f"{url}/c.zarr"],
            "eval loss": ["eval", "loss", model, "--data", f"{url}/DATA", "--device", "cpu"],
            "distill": ["distill", "--cache", f"{url}/c.zarr", "--out", out / "s", "--preset", "debug"],
            "pretrain": ["pretrain", "--data", f"{url}/DATA", "--out", out / "p", "--preset", "debug"],
            "cache-logits": ["cache-logits", "--data", f"{url}/DATA", "--teachers", model, "--out", out / "c.zarr"]}


@pytest.mark.parametrize("case", ["no server", "no credentials", "bad storage options", "missing bucket"])
def test_unreachable_storage_is_one_line(s3, s3_data, debug_model_dir, tmp_path, monkeypatch, fresh_s3fs, case,
                                        corpus_dirs, data_dir):
    """No server at the endpoint, no credentials, --storage-options fsspec refuses, or a bucket that does not
    exist: one line naming the location and the cause, exit 2, before any work (nothing written locally)."""
    from conftest import assert_user_error

    extra, url = [], s3
    if case == "no server":
        monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # the discard port: nothing listens
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    elif case == "no credentials":
        for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            monkeypatch.delenv(var, raising=False)
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
        monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    elif case == "bad storage options":
        extra = ["--storage-options", '{"no_such_option": 1}']
    else:
        url = "s3://bl2-no-such-bucket"
    fragment = {"bad storage options": "--storage-options", "missing bucket": "bl2-no-such-bucket"}.get(case,
                                                                                                     "cannot reach")
    outputs = {  # remote outputs (#32.7): checked by writing a probe object before any tokenizing or teacher pass
        "prepare --out": ["prepare", corpus_dirs[0], "--dev", corpus_dirs[1], "--out", f"{url}/NEW", "--vocab-size",
                          "400"],
        "cache-logits --out": ["cache-logits", "--data", data_dir, "--teachers", debug_model_dir, "--out",
                               f"{url}/new.zarr", "--device", "cpu"]}
    for name, args in (s3_commands(url, debug_model_dir, tmp_path / "out") | outputs).items():
        r = run_cli(*args, *extra)
        assert_user_error(r, fragment)
        assert not (tmp_path / "out").exists(), name
        if name in outputs:
            assert "tokenizing" not in r.stdout + r.stderr and "cache-logits:" not in r.stdout, (name, r.stdout)


def test_unfinished_prepare_upload_is_recognised(s3, corpus_dirs):
    """A prepare killed after uploading the tokenizer (before the store's marker, uploaded last): the rerun
    names it an unfinished upload, and --overwrite replaces it; a stranger's object is never replaced."""
    from conftest import assert_user_error

    from bl2 import storage
    from bl2.data.store import TokenStore

    url = f"{s3}/partial"
    fs, path = storage.filesystem(url)
    fs.pipe_file(f"{path}/tokenizer.json", b"{}")
    args = ["prepare", corpus_dirs[0], "--dev", corpus_dirs[1], "--out", url, "--vocab-size", "400"]
    assert_user_error(run_cli(*args), "unfinished upload")
    r = run_cli(*args, "--overwrite")
    assert r.exit_code == 0, r.stderr
    assert TokenStore(url).n_tokens("train") > 0
    fs.pipe_file(f"{path}-mixed/notes.txt", b"mine")
    assert_user_error(run_cli(*args[:4], "--out", f"{url}-mixed", "--overwrite"), "not a bl2 DATA dir")
    assert fs.cat_file(f"{path}-mixed/notes.txt") == b"mine"


def test_remote_tokenizer_is_fetched_once_into_the_cache_folder(s3_data, tmp_path, monkeypatch):
    """A remote DATA dir's tokenizer goes to ~/.cache/bl2/tokenizers/SHA once, checked against its sha256; no
    temporary folder is left per run."""
    import tempfile
    from pathlib import Path

    from bl2.data.store import TokenStore

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    before = set(Path(tempfile.gettempdir()).glob("bl2-tokenizer-*"))
    stores = [TokenStore(s3_data) for _ in range(2)]
    dirs = {s.tokenizer_dir for s in stores}
    assert dirs == {str(tmp_path / "cache" / "bl2" / "tokenizers" / stores[0].tokenizer_sha256)}
    assert set(Path(tempfile.gettempdir()).glob("bl2-tokenizer-*")) == before
    assert [p.name for p in (tmp_path / "cache" / "bl2" / "tokenizers").iterdir()] == [stores[0].tokenizer_sha256]
