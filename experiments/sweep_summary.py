"""The markdown tables of experiments/sweep_tiny.sh (EXPERIMENTS.md, section "Sweep").

    python experiments/sweep_summary.py experiments/out/sweep_tiny
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from bl2.runs import metrics


def done(run_dir: Path) -> dict | None:
    events = metrics.events(run_dir / metrics.FILENAME, "done")
    return events[-1] if events else None


def test_ce(out: Path, name: str, key: str | None = None) -> float | None:
    path = out / "eval" / f"loss_{name}.json"
    if not path.is_file():
        return None
    results = json.loads(path.read_text())["results"]
    return results[key]["ce"] if key else next(iter(results.values()))["ce"]


def mean_sd(xs: list[float]) -> str:
    xs = [x for x in xs if x is not None]
    if not xs:
        return "–"
    return f"{statistics.fmean(xs):.4f} ± {statistics.stdev(xs):.4f}" if len(xs) > 1 else f"{xs[0]:.4f}"


def fmt(x) -> str:
    return "–" if x is None else f"{x:.4f}" if isinstance(x, float) else str(x)


def short(params: dict) -> str:
    return ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in params.items())


def sweep_section(out: Path) -> list[str]:
    status = json.loads((out / "eval" / "status.json").read_text())
    trials, n = status["trials"], status["counts"]
    steps = {r["trial"]: (r["step"] or 0) for r in trials}
    full = max(steps.values())
    train_s = sum((done(Path(r["run_dir"])) or {}).get("train_s", 0) for r in trials if r["run_dir"])
    lines = [f"{n['finished']} finished trials: {n['complete']} complete, {n['pruned']} pruned by Hyperband, "
             f"{n['failed']} failed; {sum(steps.values())} optimizer steps in all = "
             f"{sum(steps.values()) / full:.1f} full runs of {full} steps; {train_s / 60:.1f} min of training.", "",
             "| trial | state | val CE | steps | parameters |", "|---|---|---|---|---|"]
    ranked = sorted((r for r in trials if r["value"] is not None), key=lambda r: (r["state"] != "complete", r["value"]))
    for r in ranked[:6]:
        lines.append(f"| {r['trial']} | {r['state']} | {r['value']:.4f} | {r['step']} | {short(r['params'])} |")
    lines.append(f"| ... | | | | ({len(ranked) - 6} more) |" if len(ranked) > 6 else "")
    return lines


def main() -> None:
    out = Path(sys.argv[1])
    confirm = json.loads((out / "sweep" / "confirm.json").read_text())
    best = confirm["trial"]
    print("### The sweep\n")
    print("\n".join(sweep_section(out)))
    rows = [("quickstart's teacher config (lr 3e-3, warm-up 50, cosine), seed 0", done(out / "runs" / "default"),
             test_ce(out, "default")),
            (f"the sweep's best (trial {best}), seed 0", {"best_val_ce": confirm["sweep_value"]}, test_ce(out, "best"))]
    for s in confirm["seeds"]:
        rows.append((f"best configuration, new seed {s['seed']}", s, test_ce(out, f"confirm{s['seed']}")))
    students = sorted(out.glob("runs/student*"))
    for i, run in enumerate(students, 1):
        rows.append((f"student {i} (seed {9 + i}) from the cache of seeds 1+2, alpha 0.5, T 1", done(run),
                     test_ce(out, f"student{i}")))
    print("\n### Val and test CE\n")
    print("| model | best val CE | test CE |\n|---|---|---|")
    for label, d, t in rows:
        print(f"| {label} | {fmt((d or {}).get('best_val_ce'))} | {fmt(t)} |")
    print(f"| direct ensemble of new seeds 1+2 (logits averaged) | – | {fmt(test_ce(out, 'ensemble', 'ensemble'))} |")
    re_val = [s["best_val_ce"] for s in confirm["seeds"]]
    re_test = [test_ce(out, f"confirm{s['seed']}") for s in confirm["seeds"]]
    st_val = [(done(r) or {}).get("best_val_ce") for r in students]
    st_test = [test_ce(out, f"student{i}") for i in range(1, len(students) + 1)]
    print("\n### Answers\n")
    print(f"- re-seeding: the sweep's best val CE {confirm['sweep_value']:.4f} vs {mean_sd(re_val)} over "
          f"{len(re_val)} new seeds ({confirm['n_as_good']}/{len(re_val)} as good; z = "
          f"{fmt(confirm['z'])}); test CE {fmt(test_ce(out, 'best'))} vs {mean_sd(re_test)}.")
    print(f"- distillation: students val CE {mean_sd(st_val)}, test CE {mean_sd(st_test)}; the sweep's best "
          f"{confirm['sweep_value']:.4f} / {fmt(test_ce(out, 'best'))}; re-seeded best configuration "
          f"{mean_sd(re_val)} / {mean_sd(re_test)}.")


if __name__ == "__main__":
    main()
