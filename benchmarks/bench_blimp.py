"""Side by side: `bl2 eval blimp` vs lm-evaluation-harness (`--model hf`) on the same model dir, the same
pairs and the same CPU. Prints pairs/s of both (end to end and scoring phase only), their ratio, the suite
accuracies of both, and every pair whose verdict differs. Exits non-zero when it cannot produce the result.

lm-eval lives in its own venv (never bl2's), e.g.
    python3 -m venv /tmp/lmeval-venv && /tmp/lmeval-venv/bin/pip install torch==2.13.0 \\
        && /tmp/lmeval-venv/bin/pip install "lm-eval>=0.4.5"
Its BLiMP tasks are generated here as local-json task YAMLs (`--include_path`), so nothing comes from a hub.

    .venv/bin/python benchmarks/bench_blimp.py --model /tmp/bench-tiny --lm-eval-python /tmp/lmeval-venv/bin/python \\
        --data-dir /work/shared/data --limit 100
`--init-tiny DATA_DIR` first builds an untrained tiny-preset model at --model (seed 0) from DATA's tokenizer.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TASK_PREFIX = "bl2bench"


def fail(msg: str) -> None:
    print(f"bench_blimp: {msg}", file=sys.stderr)
    sys.exit(1)


def suite_files(data_dir: Path, suite: str) -> dict[str, list[Path]]:
    """The subtask files of each suite, found by `bl2 eval blimp`'s own layout rule."""
    from bl2.errors import UserError
    from bl2.eval.blimp_data import suite_folders

    try:
        out = {name: sorted(folder.glob("*.jsonl")) for name, folder in suite_folders(data_dir, suite)}
    except UserError as e:
        fail(str(e))
    for name, files in out.items():
        if not files:
            fail(f"no *.jsonl files in suite {name} of {data_dir}")
    return out


def task_name(suite: str, stem: str) -> str:
    return f"{TASK_PREFIX}__{suite}__{stem}"


def write_task_yamls(files: dict[str, list[Path]], include_dir: Path) -> dict[str, tuple[str, str]]:
    """One lm-eval task per subtask file, reading the local jsonl (the BabyLM pipeline's template:
    empty context, choices [good, bad], target 0, acc). JSON is valid YAML, so json.dumps writes them."""
    include_dir.mkdir(parents=True, exist_ok=True)
    tasks = {}
    for suite, paths in files.items():
        for path in paths:
            name = task_name(suite, path.stem)
            spec = {
                "task": name,
                "dataset_path": "json",
                "dataset_kwargs": {"data_files": {"train": str(path.resolve())}},
                "test_split": "train",
                "output_type": "multiple_choice",
                "doc_to_text": "",
                "doc_to_target": 0,
                "doc_to_choice": "{{[sentence_good, sentence_bad]}}",
                "num_fewshot": 0,
                "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
                "metadata": {"version": 1.0},
            }
            (include_dir / f"{name}.yaml").write_text(json.dumps(spec, indent=1) + "\n")
            tasks[name] = (suite, path.stem)
    return tasks


def init_tiny(model_dir: Path, data_dir: Path) -> None:
    from bl2.data.store import TokenStore
    from bl2.model.io import build_model, save_model_dir

    model = build_model("tiny", TokenStore(data_dir).vocab_size, seq_len=128, seed=0)
    save_model_dir(model, model_dir, data_dir)
    print(f"built an untrained tiny-preset model (seed 0) at {model_dir}")


def run(cmd: list[str], env: dict | None = None, log: Path | None = None) -> tuple[float, str]:
    """Run a command, return (wall seconds, stderr+stdout); a failure ends the benchmark."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    text = proc.stdout + proc.stderr
    if log is not None:
        log.write_text(text)
    if proc.returncode != 0:
        fail(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{text[-3000:]}")
    return wall, text


def bl2_cmd(args, work: Path, limit: int, tag: str) -> list[str]:
    return [sys.executable, "-m", "bl2", "eval", "blimp", str(args.model), "--data-dir", str(args.data_dir),
            "--suite", args.suite, "--limit", str(limit), "--batch-size", str(args.batch_size), "--device", "cpu",
            "--out", str(work / f"bl2-{tag}.json"), "--log-samples", str(work / f"bl2-{tag}.jsonl"), "--overwrite"]


def lmeval_cmd(args, work: Path, tasks: list[str], limit: int, tag: str) -> list[str]:
    return [args.lm_eval_python, "-m", "lm_eval", "--model", "hf",
            "--model_args", f"pretrained={args.model},dtype=float32", "--tasks", ",".join(tasks),
            "--include_path", str(work / "tasks"), "--batch_size", str(args.batch_size), "--device", "cpu",
            "--limit", str(limit), "--log_samples", "--output_path", str(work / f"lmeval-{tag}")]


def lmeval_env(work: Path) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               HF_DATASETS_CACHE=str(work / "hf_datasets"))
    env.pop("PYTHONPATH", None)
    return env


def lmeval_scoring_seconds(log: str) -> float | None:
    """Elapsed time of lm-eval's 'Running loglikelihood requests' tqdm bar at 100%."""
    hits = re.findall(r"Running loglikelihood requests: 100%[^\[]*\[(?:(\d+):)?(\d+):(\d+)<", log)
    if not hits:
        return None
    h, m, s = hits[-1]
    return int(h or 0) * 3600 + int(m) * 60 + int(s)


def read_lmeval_samples(out_dir: Path, tasks: dict[str, tuple[str, str]]) -> dict[tuple, tuple[float, float]]:
    """(suite, subtask, doc_id) -> (loglik good, loglik bad) from lm-eval's per-sample logs."""
    found = {}
    for path in out_dir.rglob(f"samples_{TASK_PREFIX}__*.jsonl"):
        name = path.name[len("samples_") :].rsplit("_", 1)[0]
        suite, stem = tasks[name]
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            good, bad = (float(r[0]) for r in rec["filtered_resps"])
            found[(suite, stem, int(rec["doc_id"]))] = (good, bad)
    return found


def read_bl2_samples(path: Path) -> dict[tuple, tuple[float, float, str, str]]:
    out = {}
    for line in path.read_text().splitlines():
        r = json.loads(line)
        out[(r["suite"], r["subtask"], r["index"])] = (r["logp_good"], r["logp_bad"], r["sentence_good"],
                                                          r["sentence_bad"])
    return out


def macro(verdicts: dict[tuple, bool]) -> dict[str, float]:
    """Suite score = unweighted mean of subtask accuracies (the BabyLM 2024 rule)."""
    by_sub: dict[tuple, list[bool]] = {}
    for (suite, sub, _), ok in verdicts.items():
        by_sub.setdefault((suite, sub), []).append(ok)
    suites: dict[str, list[float]] = {}
    for (suite, _), oks in by_sub.items():
        suites.setdefault(suite, []).append(sum(oks) / len(oks))
    return {s: 100 * sum(a) / len(a) for s, a in suites.items()}


def compare(bl2: dict, lme: dict) -> tuple[list[str], float]:
    """Lines describing pairs whose verdict differs, and the largest |logp difference|."""
    if set(bl2) != set(lme):
        fail(f"the two runs scored different pairs: {len(set(bl2) ^ set(lme))} keys differ")
    diffs, max_abs = [], 0.0
    for key, (g, b, sg, sb) in sorted(bl2.items()):
        lg, lb = lme[key]
        max_abs = max(max_abs, abs(g - lg), abs(b - lb))
        if (g >= b) != (lg >= lb):
            diffs.append(f"{key}: bl2 {g:.6f} vs {b:.6f}, lm-eval {lg:.6f} vs {lb:.6f} | {sg!r} / {sb!r}")
    return diffs, max_abs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, required=True, help="HF causal-LM dir (tokenizer with a BOS token)")
    ap.add_argument("--lm-eval-python", required=True, help="python of a venv with lm-eval installed")
    ap.add_argument("--data-dir", type=Path, default=Path(os.environ.get("BL2_EVAL_DATA", "/work/shared/data")))
    ap.add_argument("--suite", default="all", choices=["filtered", "supplement", "all"])
    ap.add_argument("--limit", type=int, default=100, help="first N pairs of each subtask")
    ap.add_argument("--batch-size", type=int, default=64, help="same for both tools")
    ap.add_argument("--init-tiny", type=Path, help="DATA dir: build an untrained tiny model at --model first")
    ap.add_argument("--threads", type=int, help="OMP/MKL threads for both tools (default: torch's choice)")
    ap.add_argument("--workdir", type=Path, help="keep logs and outputs here (default: a temp dir)")
    args = ap.parse_args()

    if args.init_tiny and not args.model.exists():
        init_tiny(args.model, args.init_tiny)
    if not (args.model / "config.json").is_file():
        fail(f"not a model dir: {args.model}")
    if not Path(args.lm_eval_python).is_file():
        fail(f"no python at {args.lm_eval_python} (install lm-eval into its own venv, see the docstring)")
    if args.threads:  # inherited by both subprocesses
        os.environ.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-blimp-"))
    work.mkdir(parents=True, exist_ok=True)
    tasks = write_task_yamls(suite_files(args.data_dir, args.suite), work / "tasks")
    env = lmeval_env(work)

    # untimed warm-up of both (imports, page cache, lm-eval's arrow conversion of the jsonl files)
    run(lmeval_cmd(args, work, list(tasks), 1, "warmup"), env)
    run(bl2_cmd(args, work, 1, "warmup"))
    load0 = os.getloadavg()[0]
    lme_wall, lme_log = run(lmeval_cmd(args, work, list(tasks), args.limit, "run"), env, work / "lmeval.log")
    bl2_wall, _ = run(bl2_cmd(args, work, args.limit, "run"), log=work / "bl2.log")

    bl2 = read_bl2_samples(work / "bl2-run.jsonl")
    lme = read_lmeval_samples(work / "lmeval-run", tasks)
    diffs, max_abs = compare(bl2, lme)
    n = len(bl2)
    bl2_score_s = json.loads((work / "bl2-run.json").read_text())["timing"]["score_s"]
    lme_score_s = lmeval_scoring_seconds(lme_log)
    acc_bl2 = macro({k: g >= b for k, (g, b, _, _) in bl2.items()})
    acc_lme = macro({k: g >= b for k, (g, b) in lme.items()})

    print(f"model {args.model} | {n} pairs ({len(tasks)} subtasks, --limit {args.limit}) | batch {args.batch_size}"
          f" | {os.cpu_count()} CPUs, threads {args.threads or 'default'} | load avg before {load0:.2f},"
          f" after {os.getloadavg()[0]:.2f}")
    print(f"{'':30}{'bl2':>12}{'lm-eval':>12}{'ratio':>8}")
    print(f"{'end-to-end wall (s)':30}{bl2_wall:12.1f}{lme_wall:12.1f}")
    print(f"{'end-to-end pairs/s':30}{n / bl2_wall:12.1f}{n / lme_wall:12.1f}{lme_wall / bl2_wall:8.2f}x")
    if lme_score_s:
        print(f"{'scoring-phase pairs/s':30}{n / bl2_score_s:12.1f}{n / lme_score_s:12.1f}"
              f"{lme_score_s / bl2_score_s:8.2f}x  (lm-eval: its tqdm bar, whole seconds)")
    for suite in acc_bl2:
        print(f"{suite + ' acc (%)':30}{acc_bl2[suite]:12.2f}{acc_lme[suite]:12.2f}")
    if len(acc_bl2) > 1:
        print(f"{'average (%)':30}{sum(acc_bl2.values()) / len(acc_bl2):12.2f}"
              f"{sum(acc_lme.values()) / len(acc_lme):12.2f}")
    print(f"max |logp difference| over all sentences: {max_abs:.2e}")
    print(f"pairs with a different verdict: {len(diffs)}" + "".join(f"\n  {d}" for d in diffs))
    print(f"logs and outputs: {work}")


if __name__ == "__main__":
    main()
