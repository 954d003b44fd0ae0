"""The bytes-vs-quality curve of the logit cache (issue #18): at equal steps on the same windows, the test CE of
students distilled from full, topk, sample and hybrid caches (and each compact encoding), against the cache's
bytes per token. Every step is one `bl2` command, run under the shared CPU lock by itself (so other jobs' exclusive
benchmarks get in between) and skipped when its output exists, so the script resumes where it stopped.

    python benchmarks/bench_cache_curve.py [--out DIR] [--stage all|teachers|caches|students|report] [--only A,B]

Protocol (cheaper than EXPERIMENTS.md §1, same ordering; see BENCHMARKS.md): the §1 corpus (first 12 % of every
file's lines, vocab 16000), 2 `tiny` teachers (seeds 0, 1) for TEACHER_EPOCHS epochs, one cache per setting over
the first SUBSET windows of the train split, students (`tiny`, seed 10, alpha 0.5, T 1, `--kl-reduction sequence`)
for STUDENT_EPOCHS epochs over those windows, test CE by `bl2 eval loss --split test`. The report writes
curve.json, curve.md (the table) and curve.png (log-x plot with the frontier) into --out.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

LOCK = "/tmp/bl2-cpu.lock"
FRACTION = 0.12  # of the train files' lines (as §1)
DEV_FRACTION = 0.04  # of the dev files' lines: the test split (a third of §1's, so each test eval is cheap)
VOCAB = 16000
TEACHER_EPOCHS = 2  # the tiny preset's default (§1: 8)
SUBSET = 512  # windows the students train on (§1: 1024)
STUDENT_EPOCHS = 6  # 96 steps of 32 windows (§1: 8 epochs, 256 steps)
STUDENT_WARMUP = 16
STUDENT_SEED = 10
COMPARE_WINDOWS = 128  # `bl2 cache compare` on the first 128 windows (16,384 positions), as BENCHMARKS.md
U8 = ["--head-logp", "uint8"]  # lossy: steps of 1/16 nat below each position's top log-prob
COMPACT = [*U8, "--head-order", "id"]  # + the head stored by id (lossless)
HEADS = {f"topk{k}": ["--mode", "topk", "--k", str(k)] for k in (8, 16, 32, 64, 128)} | {
    f"hybrid{k}_{s}": ["--mode", "hybrid", "--k", str(k), "--n-draws", str(s)]
    for k, s in ((8, 8), (8, 24), (16, 16), (32, 16))}
SAMPLES = {f"sample{s}": ["--mode", "sample", "--n-draws", str(s)] for s in (8, 16, 32, 64)}

# name -> cache-logits options: every cache is made and compared with the full one (bytes/token, target metrics).
SETTINGS: dict[str, list[str]] = {
    "full": ["--mode", "full"], **HEADS, **SAMPLES,
    # compact encodings: uint8 heads alone, then everything (uint8 + head by id + delta-coded draws)
    **{f"{n}_u8": [*HEADS[n], *U8] for n in ("topk64", "topk16", "hybrid8_24", "hybrid16_16")},
    **{f"{n}_c": [*o, *COMPACT] + (["--sparse-ids", "delta"] if "hybrid" in n else []) for n, o in HEADS.items()},
    **{f"{n}_d": [*o, "--sparse-ids", "delta"] for n, o in SAMPLES.items()},
}
# Students are trained on these. The lossless encodings (head by id, delta-coded ids) read back the same targets
# (up to the order of equal head values), so a compact cache's student is that of its uint8 head; the pair
# hybrid8_24_u8 / hybrid8_24_c checks it. The other compact caches without a student here take the student of
# their uint8-equivalent setting in the report only when one exists.
STUDENTS = [*(["full"] + list(HEADS) + list(SAMPLES)), "hybrid8_24_u8",
            *(f"{n}_c" for n in ("hybrid8_24", "hybrid16_16", "hybrid8_8", "topk16", "topk64"))]


def log(msg: str) -> None:
    print(f"=== {time.strftime('%H:%M:%S')}  {msg}", flush=True)


def locked(cmd: list[str], timeout: float = 3 * 3600) -> None:
    """One command under the shared CPU lock (taken for this command only)."""
    log(" ".join(cmd))
    t0 = time.time()
    subprocess.run(["flock", "-s", LOCK, *cmd], check=True, timeout=timeout)
    log(f"done in {time.time() - t0:.0f} s")


def done_run(path: Path) -> bool:
    m = path / "metrics.jsonl"
    return (path / "model.safetensors").exists() and m.exists() and '"event": "done"' in m.read_text()


def bl2() -> str:
    return str(Path(sys.executable).with_name("bl2"))


def make_corpus(shared: Path, out: Path) -> None:
    """The §1 subset: the first FRACTION of the lines of every train file (DEV_FRACTION of every dev file)."""
    for src, dst, suffix, frac in [("babylm_10M", "corpus", ".train", FRACTION),
                                   ("babylm_dev", "dev", ".dev", DEV_FRACTION)]:
        (out / dst).mkdir(parents=True, exist_ok=True)
        for f in sorted((shared / src).glob("*" + suffix)):
            lines = f.read_text(encoding="utf-8").splitlines(keepends=True)
            (out / dst / f.name).write_text("".join(lines[: math.ceil(frac * len(lines))]), encoding="utf-8")


def teachers(out: Path, shared: Path) -> list[Path]:
    data = out / "data"
    if not data.exists():
        make_corpus(shared, out)
        locked([bl2(), "prepare", str(out / "corpus"), "--dev", str(out / "dev"), "--out", str(data),
                "--vocab-size", str(VOCAB)])
    dirs = []
    for seed in (0, 1):
        t = out / "runs" / f"teacher{seed}"
        if not done_run(t):
            locked([bl2(), "pretrain", "--data", str(data), "--out", str(t), "--seed", str(seed), "--preset", "tiny",
                    "--epochs", str(TEACHER_EPOCHS), "--batch-size", "32", "--device", "cpu", "--log-every-steps", "50",
                    *(["--resume"] if t.exists() else [])])
        dirs.append(t)
    return dirs


def cache_path(out: Path, name: str) -> Path:
    return out / "caches" / f"{name}.zarr"


def caches(out: Path, names: list[str]) -> None:
    t = ",".join(str(p) for p in teachers(out, Path()))
    for name in names:
        path = cache_path(out, name)
        attrs = path / "zarr.json"
        if not (attrs.exists() and json.loads(attrs.read_text()).get("attributes", {}).get("complete")):
            locked([bl2(), "cache-logits", "--data", str(out / "data"), "--teachers", t, "--out", str(path),
                    "--device", "cpu", "--max-windows", str(SUBSET), *SETTINGS[name]])
        record_size(out, name, path)
        cmp = out / "compare" / f"{name}.json"
        if name != "full" and not cmp.exists():
            cmp.parent.mkdir(exist_ok=True)
            locked([bl2(), "cache", "compare", str(path), str(cache_path(out, "full")), "--out", str(cmp),
                    "--windows", str(COMPARE_WINDOWS)])


def record_size(out: Path, name: str, path: Path) -> None:
    """Bytes per token on disk of each cache, kept in sizes.json (the full cache is deleted after the compares)."""
    from bl2.cache.reader import CacheReader

    f = out / "sizes.json"
    sizes = json.loads(f.read_text()) if f.exists() else {}
    if name not in sizes:
        r = CacheReader(str(path))
        sizes[name] = r.nbytes_stored() / (r.n_windows * r.seq_len)
        f.write_text(json.dumps(sizes, indent=1) + "\n")


def students(out: Path, names: list[str], seed: int = STUDENT_SEED) -> None:
    for name in names:
        run = out / "runs" / (f"student_{name}" + (f"_s{seed}" if seed != STUDENT_SEED else ""))
        if not done_run(run):
            locked([bl2(), "distill", "--cache", str(cache_path(out, name)), "--data", str(out / "data"),
                    "--out", str(run), "--seed", str(seed), "--preset", "tiny", "--epochs", str(STUDENT_EPOCHS),
                    "--warmup-steps", str(STUDENT_WARMUP),
                    "--batch-size", "32", "--device", "cpu", "--log-every-steps", "50", "--alpha", "0.5",
                    "--temperature", "1", *(["--resume"] if run.exists() else [])])
        ev = out / "eval" / f"loss_{run.name}.json"
        if not ev.exists():
            ev.parent.mkdir(exist_ok=True)
            locked([bl2(), "eval", "loss", str(run), "--data", str(out / "data"), "--split", "test", "--device", "cpu",
                    "--out", str(ev)])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("experiments/out/cache_curve"))
    ap.add_argument("--shared", type=Path, default=Path("../shared/data"))
    ap.add_argument("--stage", default="all", choices=["all", "teachers", "caches", "students", "report"])
    ap.add_argument("--only", default=None, help="comma-separated setting names (default: all)")
    ap.add_argument("--seed", type=int, default=STUDENT_SEED, help="student seed (seed-spread runs)")
    ap.add_argument("--drop-full", action="store_true", help="delete the full cache after the compares")
    args = ap.parse_args(argv)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    names = args.only.split(",") if args.only else None
    if args.stage in ("all", "teachers"):
        teachers(out, args.shared.resolve())
    if args.stage in ("all", "caches"):
        caches(out, ["full"] + [n for n in names or SETTINGS if n != "full"])
    if args.stage in ("all", "students"):
        students(out, names or STUDENTS, args.seed)
    if args.drop_full and cache_path(out, "full").exists():
        shutil.rmtree(cache_path(out, "full"))
    if args.stage in ("all", "report"):
        from curve_report import report  # benchmarks/curve_report.py

        report(out, SETTINGS)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
