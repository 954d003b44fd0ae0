"""`bl2 finetune` against the official BabyLM 2025 fine-tuning (`finetune/run.py`), side by side on RTE.

    python benchmarks/bench_finetune.py MODEL_DIR --official /path/to/evaluation-pipeline-2025 \\
        --official-python /path/to/venv/bin/python [--glue DIR] [--epochs 1] [--repeats 2] [--out X.json]

Both run on the same model dir, train and valid files, learning rate, batch size, epochs, sequence length (512)
and seed, each as its own process: the official `evaluation_pipeline.finetune.run` as `eval_finetuning.sh`
runs RTE (its own venv; without --save: writing the fine-tuned weights is not fine-tuning), and
`bl2 finetune --head babylm2025 --select best` (the official head, first-token pooling, and the official model
selection: the best epoch on the valid file). Runs are interleaved (official, bl2, bl2, official, ...) so both
see the same background load.

Measured per run:
- wall: process start to exit;
- train s/epoch: the training steps of each epoch, as each tool reports them in-process (official: the elapsed
  time of its tqdm training bar, 1 s resolution; bl2: `seconds` of the train rows of metrics.jsonl); validation
  is not in it;
- start-up: the wall time of the same command on a 1-example train file (process start, imports, model and
  tokenizer load, every validation and prediction pass: 3 for the official, which validates each epoch, then
  the best model again, then predicts the same file; 2 for bl2); wall - start-up is then the training alone,
  a cross-check of the in-process number that needs no parsing;
- peak RSS: the child's own ru_maxrss from os.wait4 (per process, not the RUSAGE_CHILDREN maximum);
- validation accuracy / F1 / MCC of the selected model (not expected to be equal: different RNG streams for
  the head init, dropout and batch order; the official drops the last partial batch, bl2 keeps it).

The official trainer imports wandb at its top (used only with --wandb); if its venv lacks wandb, a stub module on
its PYTHONPATH stands in. The official child gets the environment this script started with, before anything
imports bl2 (whose import sets OMP_WAIT_POLICY=PASSIVE); --official-passive-omp gives it that setting too."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BASE_ENV = dict(os.environ)  # before anything imports bl2 (which sets OMP_WAIT_POLICY for its own process)
REPO = Path(__file__).resolve().parents[1]
WHO = ("official", "bl2")


def task_dir(glue: Path, folder: Path, n: int | None) -> Path:
    """folder/{rte.train.jsonl (the first n rows of the train file), rte.valid.jsonl}: one copy for both tools."""
    folder.mkdir(parents=True)
    lines = (glue / "rte.train.jsonl").read_text().splitlines(keepends=True)
    (folder / "rte.train.jsonl").write_text("".join(lines[:n] if n else lines))
    shutil.copyfile(glue / "rte.valid.jsonl", folder / "rte.valid.jsonl")
    return folder


def official_cmd(args, data: Path, out: Path) -> list[str]:
    return [args.official_python, "-m", "evaluation_pipeline.finetune.run", "--model_name_or_path", str(args.model),
            "--train_data", str(data / "rte.train.jsonl"), "--valid_data", str(data / "rte.valid.jsonl"),
            "--predict_data", str(data / "rte.valid.jsonl"), "--task", "rte", "--num_labels", "2",
            "--batch_size", str(args.batch_size), "--learning_rate", str(args.lr), "--num_epochs", str(args.epochs),
            "--sequence_length", str(args.max_length), "--results_dir", str(out), "--metrics", "accuracy", "f1",
            "mcc", "--metric_for_valid", "accuracy", "--seed", str(args.seed)]


def bl2_cmd(args, data: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "bl2", "finetune", str(args.model), "--task", "rte", "--data-dir", str(data),
            "--out", str(out), "--head", "babylm2025", "--select", "best", "--epochs", str(args.epochs),
            "--batch-size", str(args.batch_size), "--lr", str(args.lr), "--max-length", str(args.max_length),
            "--seed", str(args.seed), "--device", "cpu"]


def envs(args, stub: Path | None) -> dict[str, dict]:
    paths = [str(args.official)] + ([str(stub)] if stub else [])
    official = BASE_ENV | {"PYTHONPATH": os.pathsep.join(paths)}
    if args.official_passive_omp:
        official["OMP_WAIT_POLICY"] = "PASSIVE"
    ours = BASE_ENV | {"PYTHONPATH": os.pathsep.join([str(REPO / "src")] + [p for p in [BASE_ENV.get("PYTHONPATH")]
                                                                            if p])}
    return {"official": official, "bl2": ours}


def wandb_stub(args, tmp: Path) -> Path | None:
    """A folder with an empty wandb module, if the official venv has no wandb (its trainer imports it)."""
    probe = subprocess.run([args.official_python, "-c", "import wandb"], capture_output=True)
    if probe.returncode == 0:
        return None
    (tmp / "stub").mkdir()
    (tmp / "stub" / "wandb.py").write_text('"""Stub: imported by the official trainer, used only with --wandb."""\n')
    return tmp / "stub"


def timed(cmd: list[str], env: dict, cwd: Path, log: Path) -> tuple[float, float]:
    """(wall s, peak RSS MiB) of one child; its stdout and stderr go to log."""
    with log.open("wb") as f:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=f, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        sys.exit(f"{cmd[2]} failed (exit {proc.returncode}); the last lines of {log}:\n"
                 + "\n".join(log.read_text(errors="replace").replace("\r", "\n").splitlines()[-15:]))
    return wall, usage.ru_maxrss / 1024  # Linux: KiB


def tqdm_seconds(stamp: str) -> int:
    parts = [int(x) for x in stamp.split(":")]
    return sum(v * 60**i for i, v in enumerate(reversed(parts)))


def official_epochs(log: Path, steps: int, epochs: int) -> list[float]:
    """Elapsed seconds of each training bar in the official log. A bar is a run of tqdm updates with one total
    and non-decreasing steps and elapsed time; the official run draws, in order, (training bar, validation bar) per
    epoch, then one validation bar of the best model and one prediction bar: the training bars are bars 0, 2,
    ... (checked: their total is the run's step count)."""
    bars: list[list[int]] = []  # [total, done, elapsed] of each bar's latest update
    for m in re.finditer(r"(\d+)/(\d+) \[(\d+(?::\d+)+)<", log.read_text(errors="replace")):
        now = [int(m.group(2)), int(m.group(1)), tqdm_seconds(m.group(3))]
        if bars and bars[-1][0] == now[0] and now[1] >= bars[-1][1] and now[2] >= bars[-1][2]:
            bars[-1] = now
        else:
            bars.append(now)
    train = bars[0 : 2 * epochs : 2]
    if steps == 0 or len(bars) != 2 * epochs + 2 or any(t != steps * epochs for t, _, _ in train):
        return []  # not the layout above (a 1-example start-up run has no training bar to time)
    return [float(e) for _, _, e in train]


def official_result(out: Path, model: Path, log: Path, steps: int, epochs: int) -> dict:
    text = (out / model.stem / "main" / "finetune" / "rte" / "results.txt").read_text()
    scores = {k: float(v) for k, v in re.findall(r"(\w+): (\S+)", text)}
    return scores | {"epoch_train_s": official_epochs(log, steps, epochs), "steps_per_epoch": steps}


def bl2_result(out: Path) -> dict:
    res = json.loads((out / "rte" / "results.json").read_text())
    rows = [json.loads(line) for line in (out / "rte" / "metrics.jsonl").read_text().splitlines()]
    return res["metrics"] | {"epoch_train_s": [r.get("seconds") for r in rows if r["kind"] == "train"],
                             "steps_per_epoch": rows[0]["step"]}  # rows[0]: epoch 1's train row


def run_one(args, who: str, data: Path, out: Path, env: dict) -> dict:
    cmd = official_cmd(args, data, out) if who == "official" else bl2_cmd(args, data, out)
    wall, rss = timed(cmd, env, args.official if who == "official" else REPO, out.parent / f"{out.name}.log")
    if who == "official":  # its DataLoader drops the last partial batch
        steps = len((data / "rte.train.jsonl").read_text().splitlines()) // args.batch_size
        res = official_result(out, args.model, out.parent / f"{out.name}.log", steps, args.epochs)
    else:
        res = bl2_result(out)
    return {"wall_s": round(wall, 2), "peak_rss_mib": round(rss), **res}


def summarise(runs: dict, startup: dict, epochs: int) -> dict:
    out = {}
    for who in WHO:
        per_epoch = [statistics.mean(r["epoch_train_s"]) for r in runs[who] if r["epoch_train_s"]]
        walls = [r["wall_s"] for r in runs[who]]
        s = {"wall_s": min(walls), "train_s_per_epoch": min(per_epoch) if per_epoch else None,
             "peak_rss_mib": max(r["peak_rss_mib"] for r in runs[who]),
             "accuracy": [r["accuracy"] for r in runs[who]], "f1": [r["f1"] for r in runs[who]],
             "mcc": [r["mcc"] for r in runs[who]]}
        if startup[who]:
            s["startup_s"] = min(r["wall_s"] for r in startup[who])
            s["wall_minus_startup_per_epoch_s"] = (s["wall_s"] - s["startup_s"]) / epochs
        out[who] = s
    return out


def table(summary: dict) -> None:
    rows = [("wall, best (s)", "wall_s"), ("train s/epoch, in-process (best)", "train_s_per_epoch"),
            ("start-up + evals, 1-example run (s)", "startup_s"),
            ("(wall - start-up) / epochs (s)", "wall_minus_startup_per_epoch_s"), ("peak RSS (MiB)", "peak_rss_mib")]
    o, b = summary["official"], summary["bl2"]
    print(f"\n{'':38} {'official':>10} {'bl2':>10} {'bl2/official':>13}")
    for name, key in rows:
        if o.get(key) is not None and b.get(key) is not None:
            print(f"{name:38} {o[key]:>10.1f} {b[key]:>10.1f} {b[key] / o[key]:>12.2f}x")
    for key in ("accuracy", "f1", "mcc"):  # per repeat, in run order
        print(f"{'valid ' + key + ' (each repeat)':38} {'/'.join(f'{v:.3f}' for v in o[key]):>16} "
              f"{'/'.join(f'{v:.3f}' for v in b[key]):>16}")
    print("goal: bl2 <= 1.0x the official train time per epoch")


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", type=Path, help="a Hugging Face causal-LM dir with its tokenizer")
    p.add_argument("--official", type=Path, required=True, help="checkout of babylm/evaluation-pipeline-2025")
    p.add_argument("--official-python", required=True, help="python of a venv with its requirements")
    p.add_argument("--glue", type=Path, default=REPO.parent / "shared/data/babylm_eval_2025/full_eval/glue_filtered",
                   help="folder of rte.train.jsonl and rte.valid.jsonl")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-5)
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--train-examples", type=int, default=None, help="only the first N train rows (both tools)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--no-startup", action="store_true", help="skip the 1-example start-up runs")
    p.add_argument("--official-passive-omp", action="store_true",
                   help="give the official child OMP_WAIT_POLICY=PASSIVE too (bl2 sets it on import)")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    p.add_argument("--out", type=Path, help="write the numbers as JSON")
    args = p.parse_args(argv)
    for name, path in (("model", args.model), ("--official", args.official),
                       ("--glue", args.glue / "rte.train.jsonl"), ("--glue", args.glue / "rte.valid.jsonl")):
        if not path.exists():
            p.error(f"{name}: {path} not found")
    if args.epochs < 1 or args.repeats < 1 or (args.train_examples is not None and args.train_examples < 1):
        p.error("--epochs, --repeats and --train-examples must be >= 1")
    return args


def main(argv=None) -> None:
    args = parse(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench_finetune_"))
    try:
        data = task_dir(args.glue, tmp / "data", args.train_examples)
        one = task_dir(args.glue, tmp / "data1", 1)
        if args.dry_run:
            for who, cmd in (("official", official_cmd(args, data, tmp / "official")),
                             ("bl2", bl2_cmd(args, data, tmp / "bl2"))):
                print(f"{who}: {' '.join(cmd)}")
            return
        env = envs(args, wandb_stub(args, tmp))
        runs: dict[str, list] = {w: [] for w in WHO}
        startup: dict[str, list] = {w: [] for w in WHO}
        for r in range(args.repeats):
            for who in WHO if r % 2 == 0 else WHO[::-1]:
                runs[who].append(run_one(args, who, data, tmp / f"{who}_{r}", env[who]))
                x = runs[who][-1]
                print(f"repeat {r}: {who:8} wall {x['wall_s']:.1f} s, train s/epoch {x['epoch_train_s']}, "
                      f"peak RSS {x['peak_rss_mib']} MiB, accuracy {x['accuracy']:.3f}", flush=True)
                if not args.no_startup:
                    startup[who].append(run_one(args, who, one, tmp / f"{who}_{r}_startup", env[who]))
                    print(f"repeat {r}: {who:8} start-up run {startup[who][-1]['wall_s']:.1f} s", flush=True)
        n_train = len((data / "rte.train.jsonl").read_text().splitlines())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    summary = summarise(runs, startup, args.epochs)
    table(summary)
    print(f"train rows {n_train}, batch {args.batch_size}: official {n_train // args.batch_size} steps/epoch "
          f"(drops the last partial batch), bl2 {runs['bl2'][0]['steps_per_epoch']}")
    sys.path.insert(0, str(REPO / "src"))
    from bl2.runtime import machine_info

    machine = machine_info()  # its env is this process's, where importing bl2 set OMP_WAIT_POLICY
    machine["official_child_omp_wait_policy"] = envs(args, None)["official"].get("OMP_WAIT_POLICY")
    print("machine: " + ", ".join(f"{k} {v}" for k, v in machine.items()))
    if args.out:
        args.out.write_text(json.dumps({"summary": summary, "runs": runs, "startup_runs": startup,
                                        "n_train": n_train, "machine": machine,
                                        "args": {k: str(v) for k, v in vars(args).items()}}, indent=2))


if __name__ == "__main__":
    main()
