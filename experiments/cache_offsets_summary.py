"""The tables of EXPERIMENTS.md section 8 from experiments/cache_offsets.sh's outputs: per group the test CE and
best val CE (mean +- sd over seeds), and per cache its bytes and the teacher windows it cost.

    python experiments/cache_offsets_summary.py experiments/out/seed_spread experiments/out/cache_offsets
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from bl2.runs import metrics

# (label, where, run-name pattern with {s} for the seed); "src" = experiments/seed_spread.sh's outputs
GROUPS = [
    ("teachers (pretraining, fresh offsets; seeds 0-2)", "src", "teacher{s}", (0, 1, 2)),
    ("students, cache --offsets 1 (seed_spread's)", "src", "student{s}", None),
    ("students, cache --offsets 2", "out", "o2_student{s}", None),
    ("students, cache --offsets 4", "out", "o4_student{s}", None),
    ("students, cache --offsets 8", "out", "o8_student{s}", None),
    ("students, online, fixed windows (full targets)", "out", "online_fixed{s}", None),
    ("students, online, fresh offsets (full targets)", "out", "online_fresh{s}", None),
    ("CE only (alpha 1), cache --offsets 1 (seed_spread's)", "src", "baseline{s}", None),
    ("CE only (alpha 1), cache --offsets 8", "out", "o8_baseline{s}", None),
]
SEEDS = (2, 3, 4)


def scores(root: Path, name: str) -> tuple[float, float, float] | None:
    """(test CE, best val CE, train seconds) of one run, None while it is missing."""
    loss = root / "eval" / f"loss_{name}.json"
    done = metrics.events(root / "runs" / name / "metrics.jsonl", "done") \
        if (root / "runs" / name / "metrics.jsonl").exists() else []
    if not loss.exists() or not done:
        return None
    test = next(iter(json.loads(loss.read_text())["results"].values()))["ce"]
    return test, done[-1]["best_val_ce"], done[-1]["train_s"]


def fmt(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.4f}" if values else "–"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def main(src: Path, out: Path) -> None:
    print("| group | n | test CE | best val CE | train s (mean) |\n|---|---|---|---|---|")
    for label, where, pattern, seeds in GROUPS:
        got = [scores(src if where == "src" else out, pattern.format(s=s)) for s in seeds or SEEDS]
        got = [g for g in got if g]
        if got:
            print(f"| {label} | {len(got)} | {fmt([g[0] for g in got])} | {fmt([g[1] for g in got])} | "
                  f"{statistics.mean(g[2] for g in got):.0f} |")
    print("\n| cache | bytes on disk | teacher windows computed | cache-logits s |\n|---|---|---|---|")
    caches = [(1, src / "cache.zarr", None)] + [(n, out / f"cache_o{n}.zarr", out / f"cache_o{n}.seconds")
                                                for n in (2, 4, 8)]
    for n, path, secs in caches:
        if not path.exists():
            continue
        size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        attrs = json.loads((path / "zarr.json").read_text()).get("attributes", {})
        windows = attrs.get("n_windows", 0)  # windows_per_offset x the number of alignments
        seconds = secs.read_text().strip() if secs and secs.exists() else "–"
        print(f"| --offsets {n} | {size / 1e6:.1f} MB | {windows:,} | {seconds} |")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
