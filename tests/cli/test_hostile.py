"""What a hostile re-test of bl2 found (issue 31): data loss, silent damage, tracebacks and leftovers. Every case
here failed before its fix. The table `CASES` holds the one-line errors (command line, message fragment, a path
that must not exist afterwards); the other tests check what a table cannot (files kept, nothing left behind)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import assert_user_error, run_cli

RUN = ("--preset", "debug", "--max-steps", "2", "--batch-size", "8", "--device", "cpu")


def copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


@pytest.fixture(scope="module")
def env(tmp_path_factory, data_dir, debug_model_dir) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hostile")
    e = {"root": root, "data": data_dir, "model": debug_model_dir, "new": root / "new"}
    r = run_cli("cache-logits", "--data", data_dir, "--teachers", debug_model_dir, "--out", root / "cache.zarr",
                "--seq-len", "16", "--k", "4", "--max-windows", "64", "--device", "cpu")
    assert r.exit_code == 0, r.stderr
    e["cache"] = root / "cache.zarr"
    for split in ("train", "val", "test"):  # a token store with one split's chunk deleted (zarr reads zeros)
        d = e[f"no_{split}"] = copy(data_dir, root / f"no_{split}")
        (d / "tokens.zarr" / split / "c" / "0").unlink()
    d = e["flipped"] = copy(data_dir, root / "flipped")
    chunk = d / "tokens.zarr" / "train" / "c" / "0"
    blob = bytearray(chunk.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    chunk.write_bytes(bytes(blob))
    d = e["truncated"] = copy(data_dir, root / "truncated")
    chunk = d / "tokens.zarr" / "train" / "c" / "0"
    chunk.write_bytes(chunk.read_bytes()[:20])
    d = e["bad_tok"] = copy(data_dir, root / "bad_tok")
    (d / "tokenizer.json").write_text("garbage")
    e["afile"] = root / "afile.json"
    e["afile"].write_text("keep me")
    e["folder"] = root / "folder"
    e["folder"].mkdir()
    e["study_json"] = root / "garbage_study"
    e["study_json"].mkdir()
    (e["study_json"] / "study.json").write_text("{garbage")
    e["space"] = root / "space.yaml"
    e["space"].write_text("lr: {log_uniform: [1.0e-4, 1.0e-2]}\n")
    one = root / "one_line"
    (one / "corpus").mkdir(parents=True)
    (one / "dev").mkdir()
    (one / "corpus" / "a.train").write_text("just one line of text here\n")
    (one / "dev" / "a.dev").write_text("and a dev line\n")
    e["one"] = one
    return e


CASES = [
    # silent before: damaged token stores were read as zeros
    ("pretrain-deleted-train-chunk", ["pretrain", "--data", "{no_train}", "--out", "{new}/a", *RUN],
     "the token store is damaged", "{new}/a"),
    ("eval-loss-deleted-test-chunk", ["eval", "loss", "{model}", "--data", "{no_test}", "--device", "cpu"],
     "the token store is damaged", None),
    ("distill-deleted-val-chunk", ["distill", "--cache", "{cache}", "--data", "{no_val}", "--out", "{new}/b", *RUN],
     "the token store is damaged", "{new}/b"),
    ("cache-logits-deleted-train-chunk", ["cache-logits", "--data", "{no_train}", "--teachers", "{model}", "--out",
                                          "{new}/c.zarr", "--device", "cpu"], "the token store is damaged",
     "{new}/c.zarr"),
    ("pretrain-garbage-tokenizer", ["pretrain", "--data", "{bad_tok}", "--out", "{new}/d", *RUN],
     "tokenizer.json is not the tokenizer the tokens were made with", "{new}/d"),
    ("prepare-one-line-corpus", ["prepare", "{one}/corpus", "--dev", "{one}/dev", "--out", "{root}/e",
                                 "--vocab-size", "300"], "the val split is empty", "{root}/e"),
    ("eval-loss-seq-len-0", ["eval", "loss", "{model}", "--data", "{data}", "--seq-len", "0"], "--seq-len must be >= 1",
     None),
    ("cache-compare-windows-0", ["cache", "compare", "{cache}", "{cache}", "--windows", "0"], "--windows must be >= 1",
     None),
    # tracebacks before
    ("pretrain-negative-seed", ["pretrain", "--data", "{data}", "--out", "{new}/f", *RUN, "--seed", "-1"],
     "seed must be >= 0", "{new}/f"),
    ("sweep-negative-sampler-seed", ["sweep", "teachers", "--data", "{data}", "--space", "{space}", "--trials", "1",
                                     "--study", "{new}/g", "--preset", "debug", "--sampler-seed", "-1"],
     "--sampler-seed must be >= 0", "{new}/g"),
    ("pretrain-flipped-train-chunk", ["pretrain", "--data", "{flipped}", "--out", "{new}/h", *RUN],
     "the token store is damaged", "{new}/h"),
    ("pretrain-truncated-train-chunk", ["pretrain", "--data", "{truncated}", "--out", "{new}/i", *RUN],
     "the token store is damaged", "{new}/i"),
    ("cache-verify-windows-0", ["cache", "verify", "{cache}", "--windows", "0"], "--windows must be >= 1", None),
    ("cache-verify-windows-negative", ["cache", "verify", "{cache}", "--windows", "-1"], "--windows must be >= 1",
     None),
    ("cache-compare-windows-negative", ["cache", "compare", "{cache}", "{cache}", "--windows", "-1"],
     "--windows must be >= 1", None),
    ("cache-compare-out-folder", ["cache", "compare", "{cache}", "{cache}", "--out", "{folder}"], "is a folder", None),
    ("sweep-study-is-a-file", ["sweep", "teachers", "--data", "{data}", "--space", "{space}", "--trials", "1",
                               "--study", "{afile}", "--preset", "debug"], "is a file", None),
    ("sweep-journal-missing-folder", ["sweep", "teachers", "--data", "{data}", "--space", "{space}", "--trials", "1",
                                      "--study", "{new}/j", "--preset", "debug", "--storage", "journal:/missing/x.log"],
     "does not exist", "{new}/j"),
    ("sweep-status-garbage-study-json", ["sweep", "status", "{study_json}"], "study.json is unreadable", None),
    # data loss before: existing output files were overwritten
    ("cache-compare-out-exists", ["cache", "compare", "{cache}", "{cache}", "--out", "{afile}"], "pass --overwrite",
     None),
    ("sweep-status-out-exists", ["sweep", "status", "{study_json}", "--out", "{afile}"], "pass --overwrite", None),
]


@pytest.mark.parametrize("args, fragment, absent", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_one_line_error(env, args, fragment, absent):
    assert_user_error(run_cli(*[a.format(**env) for a in args]), fragment)
    if absent is not None:
        assert not Path(absent.format(**env)).exists()
    assert env["afile"].read_text() == "keep me"


def test_overwrite_never_deletes_a_users_files(env, tmp_path, data_dir, corpus_dirs):
    """A folder with someone else's run.json, a bl2 run dir holding a user's file, a DATA dir with a hand-made
    token store carrying bl2's marker: --overwrite refuses all three and nothing is deleted."""
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "run.json").write_text('{"foo": 1}')
    (fake / "precious.txt").write_text("precious")
    assert_user_error(run_cli("pretrain", "--data", data_dir, "--out", fake, "--overwrite", *RUN), "not a bl2 run dir")
    real = tmp_path / "real"
    assert run_cli("pretrain", "--data", data_dir, "--out", real, *RUN).exit_code == 0
    (real / "precious.txt").write_text("precious")
    assert_user_error(run_cli("pretrain", "--data", data_dir, "--out", real, "--overwrite", *RUN), "precious.txt")
    handmade = tmp_path / "handmade"
    (handmade / "tokens.zarr").mkdir(parents=True)
    (handmade / "tokens.zarr" / "zarr.json").write_text(json.dumps({"attributes": {"bl2_token_store": 1}}))
    (handmade / "precious.txt").write_text("precious")
    assert_user_error(run_cli("prepare", corpus_dirs[0], "--dev", corpus_dirs[1], "--out", handmade, "--overwrite"),
                      "precious.txt")
    for folder in (fake, real, handmade):
        assert (folder / "precious.txt").read_text() == "precious"


def test_budget_counts_unrecorded_teachers_as_unknown(env, tmp_path):
    """A distilled run without a budget record (an older bl2) still has teachers: they are unknown, the total is
    a lower bound, and the ledger says so (before: dropped without a word)."""
    out = tmp_path / "student"
    assert run_cli("distill", "--cache", env["cache"], "--out", out, *RUN).exit_code == 0
    doc = json.loads((out / "run.json").read_text())
    doc.pop("budget")
    doc["summary"].pop("teacher_words", None)
    (out / "run.json").write_text(json.dumps(doc))
    r = run_cli("budget", out)
    assert r.exit_code == 0 and "unknown" in r.stdout and "lower bound" in r.stdout, r.stdout
    doc["summary"]["words_seen"] = "many"
    (out / "run.json").write_text(json.dumps(doc))
    assert_user_error(run_cli("budget", out), "is not a word count")


def test_report_skips_and_names_a_binary_metrics_file(env, tmp_path, data_dir):
    good, bad = tmp_path / "good", tmp_path / "bad"
    for run in (good, bad):
        assert run_cli("pretrain", "--data", data_dir, "--out", run, *RUN).exit_code == 0
    (bad / "metrics.jsonl").write_bytes(bytes(range(256)) * 4)
    r = run_cli("report", good, bad, "--out", tmp_path / "report")
    assert r.exit_code == 0 and "skipped" in r.stdout and "not a metrics file" in r.stdout, r.stdout + r.stderr


def test_quickstart_checks_its_inputs_before_running(tmp_path, corpus_dirs):
    out = tmp_path / "qs"
    r = run_cli("quickstart", "--out", out, "--corpus", corpus_dirs[0], "--dev", corpus_dirs[1], "--blimp-dir",
                tmp_path / "nowhere")
    assert_user_error(r, "BLiMP data dir not found")
    assert not out.exists()


def test_resume_while_another_process_holds_the_run_names_it(tmp_path, data_dir):
    from bl2 import locks

    out = tmp_path / "held"
    with locks.hold(out, "run dir"):
        r = run_cli("pretrain", "--data", data_dir, "--out", out, "--resume", *RUN)
    assert_user_error(r, "is in use by pid")


@pytest.mark.slow
def test_a_corrupt_cache_chunk_is_one_line_every_time(tmp_path, data_dir, debug_model_dir):
    """A flipped byte in a cache shard read by the in-RAM decode: one line, no asyncio noise at exit (zarr's
    pending reads were reported as "Task was destroyed but it is pending!" in some runs before)."""
    cache = tmp_path / "c.zarr"
    assert run_cli("cache-logits", "--data", data_dir, "--teachers", debug_model_dir, "--out", cache, "--seq-len", "16",
                   "--k", "4", "--device", "cpu").exit_code == 0
    for name in ("topk_logp", "topk_ids"):
        for shard in sorted((cache / name / "c").iterdir())[1:]:
            chunk = shard / "0" / "0"
            blob = bytearray(chunk.read_bytes())
            blob[len(blob) // 3] ^= 0xFF
            chunk.write_bytes(bytes(blob))
    for i in range(4):
        r = subprocess.run([sys.executable, "-m", "bl2", "distill", "--cache", str(cache), "--out",
                            str(tmp_path / f"s{i}"), *RUN, "--max-steps", "100", "--cache-in-memory", "yes"],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and "is corrupt" in r.stderr, r.stderr[-3000:]


