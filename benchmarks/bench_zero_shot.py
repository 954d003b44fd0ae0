"""bl2's zero-shot suite against the official BabyLM 2025 pipeline, side by side on one model dir and one set.

    python benchmarks/bench_zero_shot.py MODEL_DIR --official /path/to/evaluation-pipeline-2025 \\
        --official-python /path/to/venv/bin/python [--data ../shared/data/babylm_eval_2025] [--repeats 1]

The official pipeline runs as its eval_zero_shot_fast.sh does (one process per task, in its own venv: e.g.
transformers 4.51.3), bl2 as `bl2 eval zero-shot --set fast --babylm-results` (one process); runs are
interleaved (official, bl2, bl2, official, ...), each timed end to end (process start to exit). Then:
the per-task averages of both `best_temperature_report.txt` (2 decimals, as reported), every per-item prediction
of both `predictions.json` (WUG probabilities and reading surprisals within 1e-4 relative), and the official
`collate_preds.py` functions run on bl2's layout (they must give bl2's per-subtask scores).

EWoK: the official code reads a folder, so the zip is unpacked into a temporary folder (deleted at the end),
never into the repository (its terms)."""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

FAST = [("blimp", "blimp_fast"), ("blimp", "supplement_fast"), ("ewok", "ewok_fast"),
        ("wug_adj", "wug_adj_nominalization"), ("wug_past", "wug_past_tense"),
        ("entity_tracking", "entity_tracking_fast")]


def fast_view(data: Path, tmp: Path, password: str) -> Path:
    """tmp/fast_eval: links to the fast set, EWoK unpacked (temporary)."""
    view = tmp / "fast_eval"
    view.mkdir()
    for entry in (data / "fast_eval").iterdir():
        if entry.name != "ewok_fast.zip":
            (view / entry.name).symlink_to(entry.resolve())
    with zipfile.ZipFile(data / "fast_eval" / "ewok_fast.zip") as z:
        (view / "ewok_fast").mkdir()
        for name in z.namelist():
            if name.endswith(".jsonl"):
                (view / "ewok_fast" / Path(name).name).write_bytes(z.read(name, pwd=password.encode()))
    return view


def run_official(args, model: Path, view: Path, out: Path) -> float:
    env = os.environ | {"PYTHONPATH": str(args.official)}
    common = ["--model_path_or_name", str(model), "--backend", "causal", "--revision_name", "main",
              "--output_dir", str(out)]
    t0 = time.perf_counter()
    for task, folder in FAST:
        if not (view / folder).exists():
            continue  # the official script would fail on it; bl2 skips it with a line
        cmd = [args.official_python, "-m", "evaluation_pipeline.sentence_zero_shot.run", "--task", task,
               "--data_path", str(view / folder), "--save_predictions", *common]
        subprocess.run(cmd, cwd=args.official, env=env, check=True, capture_output=True)
    cmd = [args.official_python, "-m", "evaluation_pipeline.reading.run", "--data_path",
           str(view / "reading" / "reading_data.csv"), *common]
    subprocess.run(cmd, cwd=args.official, env=env, check=True, capture_output=True)
    return time.perf_counter() - t0


def run_bl2(args, model: Path, out: Path) -> float:
    cmd = [sys.executable, "-m", "bl2", "eval", "zero-shot", str(model), "--data-dir", str(args.data), "--set",
           "fast", "--babylm-results", str(out), "--zip-password", args.zip_password, "--overwrite",
           "--device", "cpu", "--out", str(out / "results.json")]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t0


def average(report: Path) -> float:
    text = report.read_text()
    return float(re.search(r"### AVERAGE [^\n]*\n(-?[\d.]+|nan)", text).group(1))


def compare_predictions(a: dict, b: dict) -> tuple[int, int]:
    """(items, differing items): same choice; probabilities/surprisals within 1e-4 relative."""
    n = bad = 0
    for uid, block in a.items():
        for x, y in zip(block["predictions"], b[uid]["predictions"], strict=True):
            n += 1
            same = x["id"] == y["id"]
            for key in ("pred", "prob", "prev_pred"):
                if key in x:
                    u, v = x[key], y[key]
                    if isinstance(u, float) or isinstance(v, float):
                        same &= (math.isnan(u) and math.isnan(v)) or math.isclose(u, v, rel_tol=1e-4, abs_tol=1e-6)
                    else:
                        same &= u == v
            bad += not same
    return n, bad


def compare(off: Path, ours: Path, model: Path) -> list[dict]:
    rows = []
    base_o = off / model.stem / "main" / "zero_shot" / "causal"
    base_b = ours / model.stem / "main" / "zero_shot" / "causal"
    for task, folder in FAST:
        o, b = base_o / task / folder, base_b / task / folder
        if not o.exists():
            continue
        n, bad = compare_predictions(json.loads((o / "predictions.json").read_text()),
                                     json.loads((b / "predictions.json").read_text()))
        ao, ab = average(o / "best_temperature_report.txt"), average(b / "best_temperature_report.txt")
        rows.append({"task": f"{task}/{folder}", "official": ao, "bl2": ab, "same_2dp": f"{ao:.2f}" == f"{ab:.2f}",
                     "items": n, "differing_items": bad})
    o, b = base_o / "reading", base_b / "reading"
    n, bad = compare_predictions(json.loads((o / "predictions.json").read_text()),
                                 json.loads((b / "predictions.json").read_text()))
    scores = [re.findall(r"SCORE: (-?[\d.]+)", (p / "report.txt").read_text()) for p in (o, b)]
    rows.append({"task": "reading (eye tracking / self-paced)", "official": "/".join(scores[0]),
                 "bl2": "/".join(scores[1]), "same_2dp": scores[0] == scores[1], "items": n, "differing_items": bad})
    return rows


COLLATE = """
import json, sys, pathlib
from evaluation_pipeline import collate_preds as c
base, data = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
load = lambda p: json.loads((base / p / "predictions.json").read_text())
target, et, wug = c._calculate_target_results, c._calculate_target_et_results, c._calculate_wugs_results
wa = "wug_adj_nominalization"
print(json.dumps({
  "blimp": target(load("blimp/blimp_fast"), "blimp", data / "blimp_fast"),
  "supplement": target(load("blimp/supplement_fast"), "blimp_supplement", data / "supplement_fast"),
  "ewok": target(load("ewok/ewok_fast"), "ewok", data / "ewok_fast"),
  "entity_tracking": et(load("entity_tracking/entity_tracking_fast"), data / "entity_tracking_fast"),
  "wug_adj": wug(load("wug_adj/" + wa), wa, data / wa),
  "reading": c._calculate_reading_results(load("reading"), data / "reading" / "reading_data.csv"),
}))
"""


def collate_check(args, ours: Path, model: Path, view: Path) -> dict:
    """The official collate functions on bl2's layout: their per-subtask numbers (fractions)."""
    base = ours / model.stem / "main" / "zero_shot" / "causal"
    env = os.environ | {"PYTHONPATH": str(args.official)}
    res = subprocess.run([args.official_python, "-c", COLLATE, str(base), str(view)], cwd=args.official, env=env,
                         check=True, capture_output=True, text=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def collate_agrees(collate: dict, results: Path) -> dict[str, bool]:
    """Per task: do the official collate numbers (fractions) equal bl2's own per-subtask scores?"""
    tasks = json.loads(results.read_text())["systems"][0]["tasks"]
    out = {}
    for task, numbers in collate.items():
        if task == "reading":
            ours = tasks["reading"]["subtasks"]
            out[task] = (math.isclose(100 * numbers["rt"], ours["eye_tracking"], rel_tol=1e-6)
                         and math.isclose(100 * numbers["spr"], ours["self_paced_reading"], rel_tol=1e-6))
        elif task.startswith("wug"):
            out[task] = math.isclose(next(iter(numbers.values())), tasks[task]["score"], rel_tol=1e-6)
        else:
            subs = tasks[task]["subtasks"]
            out[task] = all(math.isclose(100 * v, subs[k], rel_tol=1e-9) for k, v in numbers.items())
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", type=Path)
    p.add_argument("--official", type=Path, required=True, help="checkout of babylm/evaluation-pipeline-2025")
    p.add_argument("--official-python", required=True, help="python of a venv with its requirements")
    p.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/babylm_eval_2025")
    p.add_argument("--zip-password", default=os.environ.get("BL2_EVAL_ZIP_PASSWORD", "BabyLM2025"))
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--out", type=Path, help="write the numbers as JSON")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_zero_shot_"))
    try:
        view = fast_view(args.data, tmp, args.zip_password)
        times = {"official": [], "bl2": []}
        for r in range(args.repeats):
            order = ["official", "bl2"] if r % 2 == 0 else ["bl2", "official"]
            for who in order:
                out = tmp / f"{who}_{r}"
                t = run_official(args, args.model, view, out) if who == "official" else run_bl2(args, args.model, out)
                times[who].append(round(t, 1))
                print(f"repeat {r}: {who} {t:.1f} s", flush=True)
        rows = compare(tmp / "official_0", tmp / "bl2_0", args.model)
        collate = collate_check(args, tmp / "bl2_0", args.model, view)
        agrees = collate_agrees(collate, tmp / "bl2_0" / "results.json")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # the unpacked EWoK goes with it
    print(f"\n{'task':42} {'official':>12} {'bl2':>12} {'same':>5} {'items':>6} {'diff':>5}")
    for row in rows:
        print(f"{row['task']:42} {row['official']!s:>12} {row['bl2']!s:>12} {row['same_2dp']!s:>5} "
              f"{row['items']:>6} {row['differing_items']:>5}")
    best_o, best_b = min(times["official"]), min(times["bl2"])
    print(f"\nend to end (best of {args.repeats}): official {best_o:.1f} s, bl2 {best_b:.1f} s: "
          f"{best_o / best_b:.2f}x faster")
    print("official collate_preds on bl2's layout equals bl2's per-subtask scores:", agrees)
    if args.out:
        args.out.write_text(json.dumps({"times_s": times, "speedup": best_o / best_b, "tasks": rows,
                                        "collate_on_bl2_layout": collate,
                                        "collate_equals_bl2": agrees}, indent=2))


if __name__ == "__main__":
    main()
