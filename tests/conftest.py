"""Shared fixtures: a small corpus written by the tests, a prepared DATA dir, and a debug-preset model dir."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from pg_server import postgres_url  # noqa: F401  (the PostgreSQL server of the sweep tests)

import bl2  # noqa: F401  (first: sets OMP_WAIT_POLICY before any test module imports torch)

# The fused loss's measured chunk sizes (bl2.distill.chunks) go to a file of this session, not the user's cache;
# processes the tests start inherit it.
os.environ["BL2_TUNE_CACHE"] = os.path.join(tempfile.mkdtemp(prefix="bl2-tune-"), "loss_chunks.json")

SUBJECTS = ["the dog", "the cat", "a bird", "my mom", "the baby", "daddy", "the boys", "we", "you", "they"]
VERBS = ["sees", "likes", "wants", "eats", "finds", "has", "takes", "makes", "gets", "holds"]
OBJECTS = ["the ball", "a cookie", "the milk", "some toys", "the book", "a red cup", "the blue car", "it"]
EXTRAS = ["today", "now", "again", "in the park", "at home", "with me", "", "", ""]
SOURCES = ["childes", "bnc_spoken", "gutenberg", "simple_wiki"]


def make_lines(rng: random.Random, n: int) -> list[str]:
    lines = []
    for _ in range(n):
        s = f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(EXTRAS)}".strip()
        lines.append(s[0].upper() + s[1:] + rng.choice([".", "?", "!", " ."]))
    return lines


def write_corpus(root: Path, n_train: int = 400, n_dev: int = 100, seed: int = 0) -> tuple[Path, Path]:
    """corpus/{source}.train and dev/{source}.dev files of simple generated sentences."""
    rng = random.Random(seed)
    corpus, dev = root / "corpus", root / "dev"
    corpus.mkdir(parents=True)
    dev.mkdir(parents=True)
    for src in SOURCES:
        (corpus / f"{src}.train").write_text("\n".join(make_lines(rng, n_train)) + "\n")
        (dev / f"{src}.dev").write_text("\n".join(make_lines(rng, n_dev)) + "\n")
    return corpus, dev


@pytest.fixture(scope="session")
def corpus_dirs(tmp_path_factory) -> tuple[Path, Path]:
    return write_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory, corpus_dirs) -> Path:
    """A prepared DATA dir (vocab 400) shared by the whole session: treat it as read-only."""
    from bl2.data.prepare import PrepareConfig, prepare

    out = tmp_path_factory.mktemp("prepared") / "DATA"
    prepare(PrepareConfig(corpus_dirs[0], corpus_dirs[1], out, vocab_size=400))
    return out


@pytest.fixture(scope="session")
def debug_model_dir(tmp_path_factory, data_dir) -> Path:
    """An untrained debug-preset model dir with the DATA tokenizer (seed 0): treat it as read-only."""
    return make_debug_model(tmp_path_factory.mktemp("models") / "debug0", data_dir, seed=0)


def make_debug_model(out: Path, data_dir: Path, seed: int, vocab: int | None = None) -> Path:
    """An untrained debug-preset model dir (seq_len 128) with DATA's tokenizer files, made once per path;
    `vocab` other than DATA's makes a deliberately mismatched model."""
    from bl2.data.store import TokenStore
    from bl2.model.io import build_model, save_model_dir

    if not out.exists():
        vocab = vocab or TokenStore(data_dir).vocab_size
        save_model_dir(build_model("debug", vocab, seq_len=128, seed=seed), out, data_dir)
    return out


def run_cli(*args: str):
    """Run the bl2 CLI in-process; returns click's Result (exit_code, stdout, stderr)."""
    from typer.testing import CliRunner

    from bl2.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def assert_user_error(result, *fragments: str) -> None:
    """Exit code 2, exactly one `error:` line on stderr containing every fragment (warnings may precede it),
    no traceback."""
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and result.stderr.rstrip().endswith(lines[0]), result.stderr
    for frag in fragments:
        assert frag in lines[0], (frag, lines[0])


def run_with_crash(monkeypatch, train, crash_step: int) -> None:
    """Run `train()` but crash it right after checkpoint `crash_step` is saved (a kill between steps)."""
    from bl2.distill import checkpoint

    real = checkpoint.save

    def save_then_crash(run_dir, step, *a, **k):
        path = real(run_dir, step, *a, **k)
        if step == crash_step:
            raise RuntimeError("simulated crash")
        return path

    monkeypatch.setattr(checkpoint, "save", save_then_crash)
    try:
        with pytest.raises(RuntimeError, match="simulated crash"):
            train()
    finally:
        monkeypatch.setattr(checkpoint, "save", real)


def worker_pids(out: Path) -> dict[int, int]:
    """rank -> pid of the bl2 workers writing `out` (from /proc: their command line and RANK)."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
            env = dict(kv.split(b"=", 1) for kv in (proc / "environ").read_bytes().split(b"\0") if b"=" in kv)
        except OSError:
            continue
        is_bl2 = any(c == b"bl2" or c.endswith(b"slow_bl2.py") for c in cmd)  # `-m bl2`, or the test driver
        if str(out).encode() in cmd and is_bl2 and b"RANK" in env and b"torch.distributed.run" not in cmd:
            found[int(env[b"RANK"])] = int(proc.name)
    return found


TORCHRUN_TIMEOUT = 240  # seconds a torchrun launch of a test may take


DRIVERS = Path(__file__).parent / "drivers"


def slow_bl2(seconds: float) -> list[str]:
    """The command (after `python`) of bl2 with every training metrics row followed by a sleep (drivers/)."""
    return [str(DRIVERS / "slow_bl2.py"), str(seconds)]


def torchrun(*args: str, nproc: int = 2, extra_env: dict | None = None, wait: bool = True, launcher=None,
             slow: float | None = None):
    """`python -m torch.distributed.run ... -m bl2 ARGS` (standalone unless `launcher` gives rendezvous args);
    `slow`: seconds of sleep after every training metrics row (tests/drivers/slow_bl2.py)."""
    launch = launcher or ["--standalone"]
    entry = ["-m", "bl2"] if slow is None else slow_bl2(slow)
    cmd = [sys.executable, "-m", "torch.distributed.run", *launch, "--nproc-per-node", str(nproc), *entry,
           *map(str, args)]
    env = os.environ | {"OMP_NUM_THREADS": "1", "BL2_DIST_TIMEOUT": "60"} | (extra_env or {})
    if not wait:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=TORCHRUN_TIMEOUT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


TORCH_PROBE = """
import sys
from bl2.cli import app
try:
    app(sys.argv[1:], prog_name="bl2")
except SystemExit:
    pass
print("TORCH" if "torch" in sys.modules else "NO-TORCH")
"""


def imports_torch(*args: str) -> tuple[bool, str]:
    """Run `bl2 ARGS` in a fresh interpreter: (did it import torch?, its output)."""
    r = subprocess.run([sys.executable, "-c", TORCH_PROBE, *map(str, args)], capture_output=True, text=True,
                       timeout=120)
    lines = r.stdout.strip().splitlines()
    return bool(lines) and lines[-1] == "TORCH", r.stdout + r.stderr
