"""`bl2 report`: the paper's tables and figures from what bl2 leaves behind (run dirs, `bl2 eval ... --out`
JSONs, caches, sweep studies), written as OUT/report.md + OUT/results.json + PNG and SVG figures:
training curves, the Figure 1 analogue (each metric by group: violins, single models, mean ± sd), the Figure 2
analogue (BLiMP against validation CE with a fitted line and R²), cache diagnostics, the results table and,
from `bl2 finetune` results, the fine-tuning average column and per-task table (finetune.py).

Roles (report_inputs.py): `pretrain` = teacher when a distilled student of the report learned from it (its
weights' sha256 or path is among the student's cache teachers), else baseline; `distill` / `distill-online` =
student (N teachers), or baseline when alpha = 1 (CE only); a run.json with a top-level `sweep` record = sweep
trial (grouped by study); an evaluation over several dirs = their direct ensemble. `--label` and `--group`
override a run's name and group (e.g. a teacher seed that no student learned from). Missing evaluations leave
gaps; inputs that hold nothing bl2 made are one-line errors.

Same inputs, byte-identical report.md, results.json and SVGs (no dates, sorted inputs, fixed SVG ids).
matplotlib is imported only here, when drawing (`pip install 'bl2[report]'`).
"""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from bl2.errors import require
from bl2.workflows.report import finetune
from bl2.workflows.report.inputs import SYNTHETIC, Model, blimp_points, finite, metric_names

EXTRA_HINT = "pip install 'bl2[report]'"
BLIMP_PREFIX = "BLiMP "


@dataclass
class ReportConfig:
    """What `bl2 report` reads and where it writes."""

    runs: list[str]  # run dirs, or folders searched for run dirs (a sweep study, runs/)
    out: Path  # folder for report.md, results.json and the figures
    evals: list[str] = field(default_factory=list)  # eval JSON files (`bl2 eval ... --out`) or folders of them
    caches: list[str] = field(default_factory=list)  # caches whose diagnostics are shown
    labels: dict[str, str] = field(default_factory=dict)  # run dir -> name shown instead of the dir's name
    groups: dict[str, str] = field(default_factory=dict)  # run dir -> group instead of the one its role gives
    overwrite: bool = False  # replace an existing report folder

    def __post_init__(self):
        require(len(self.runs) > 0, "no run dir given")
        self.out = Path(self.out)


def parse_pairs(values: list[str], option: str) -> dict[str, str]:
    """--label / --group DIR=NAME (the last '=' splits, so a dir may contain one)."""
    pairs = {}
    for v in values:
        dir_, sep, name = v.rpartition("=")
        require(bool(sep and dir_ and name.strip()), f"{option} takes DIR=NAME, got {v!r}")
        pairs[dir_] = name.strip()
    return pairs


def require_matplotlib() -> None:
    require(importlib.util.find_spec("matplotlib") is not None,
            f"bl2 report draws its figures with matplotlib, which is not installed: {EXTRA_HINT}")


def prepare_out(out: Path, overwrite: bool) -> None:
    """An existing non-empty folder is replaced only with --overwrite, and only when it is a report folder."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        require(overwrite, f"{out} already exists; pass --overwrite to replace it")
        require((out / "report.md").is_file(), f"{out} is not a bl2 report folder; refusing to overwrite it")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def report(cfg: ReportConfig) -> Path:
    """Collect and check every input, then write the report; returns the path of report.md."""
    from bl2.locks import hold
    from bl2.progress import console
    from bl2.workflows.report.caches import read_cache
    from bl2.workflows.report.figures import draw_all
    from bl2.workflows.report.inputs import attach_evals, collect_runs, fill_val_ce, find_eval_docs, ordered

    require_matplotlib()
    models = collect_runs(cfg.runs, cfg.labels, cfg.groups)
    docs = find_eval_docs(cfg.evals)
    used: set = set()
    unmatched = attach_evals(docs, models, used)
    docs = [d for d in docs if d[0] in used]  # files only about other runs are listed as left out, not counted
    fill_val_ce(models)
    caches = [read_cache(c) for c in cfg.caches]
    rows = ordered(models)
    doc = results_doc(rows, caches)
    with hold(cfg.out, "report folder"):  # one writer per output
        prepare_out(cfg.out, cfg.overwrite)
        figures = draw_all(rows, caches, doc["fits"], cfg.out)
        (cfg.out / "results.json").write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
        text = markdown(rows, doc, figures, [str(p) for p, _, _ in docs], unmatched)
        (cfg.out / "report.md").write_text(text)
    console.print(f"report: {len(rows)} models, {len(docs)} evaluation files, {len(caches)} cache(s) -> "
                  f"{cfg.out / 'report.md'}")
    return cfg.out / "report.md"


# ----------------------------------------------------------------------------------------------- numbers
def summary(values: list[float]) -> dict:
    """n, mean, sample sd (n - 1; None for one value), min, max."""
    n, mean = len(values), sum(values) / len(values)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    return {"n": n, "mean": mean, "sd": sd, "min": min(values), "max": max(values)}


def group_stats(rows: list[Model], names: list[str]) -> list[dict]:
    groups = list(dict.fromkeys(m.group for m in rows))
    out = []
    for g in groups:
        members = [m for m in rows if m.group == g]
        stats = {}
        for name in names:
            values = finite([m.metrics.get(name) for m in members])
            if values:
                stats[name] = summary(values)
        out.append({"group": g, "n": len(members), "metrics": stats})
    return out


def linear_fit(x: list[float], y: list[float]) -> dict | None:
    """Least-squares line y = slope * x + intercept and its R² (None below 3 points or with constant x)."""
    n = len(x)
    if n < 3:
        return None
    mx, my = sum(x) / n, sum(y) / n
    sxx = sum((a - mx) ** 2 for a in x)
    if sxx == 0:
        return None
    slope = sum((a - mx) * (b - my) for a, b in zip(x, y)) / sxx
    intercept = my - slope * mx
    ss_tot = sum((b - my) ** 2 for b in y)
    ss_res = sum((b - (slope * a + intercept)) ** 2 for a, b in zip(x, y))
    return {"n": n, "slope": slope, "intercept": intercept, "r2": 1 - ss_res / ss_tot if ss_tot > 0 else None}


def results_doc(rows: list[Model], caches: list[dict]) -> dict:
    """Everything report.md shows, as numbers (results.json)."""
    names = metric_names(rows)
    fits = {}
    for name in names:
        if name.startswith(BLIMP_PREFIX) or name == SYNTHETIC:
            pts = blimp_points(rows, name)
            fits[name] = linear_fit([p[1] for p in pts], [p[2] for p in pts])
    models = [{"label": m.label, "path": m.path, "role": m.role, "group": m.group, "n_params": m.n_params,
               "tokens_seen": m.tokens_seen, "train_s": m.train_s, "best_val_ce": m.best_val_ce, "metrics": m.metrics}
              for m in rows]
    cache_docs = [{k: v for k, v in c.items() if k != "dist"} for c in caches]
    from bl2.workflows.report.figures import scaling_points

    return {"models": models, "metrics": names, "groups": group_stats(rows, names), "fits": fits,
            "caches": cache_docs, "scaling": scaling_points(rows), "finetune": finetune.section(rows)}


# ----------------------------------------------------------------------------------------------- report.md
def fmt(metric: str, value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.4f}" if metric.endswith(" CE") else f"{value:.2f}"


def human(n: float | None, unit_: str = "") -> str:
    if n is None:
        return "–"
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.2f}{suffix}{unit_}"
    return f"{n:.0f}{unit_}"


def duration(s: float | None) -> str:
    if s is None:
        return "–"
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.1f} h"


def table(header: list[str], body: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in body]


def results_table(rows: list[Model], names: list[str], ft: dict | None = None) -> list[str]:
    def cell(m: Model, name: str) -> str:
        text = fmt(name, m.metrics.get(name))
        return finetune.avg_cell(ft, m.label, text) if name == finetune.AVG else text

    header = ["model", "group"] + names + ["parameters", "tokens seen", "train time"]
    body = [[m.label, m.group] + [cell(m, n) for n in names]
            + [human(m.n_params), human(m.tokens_seen), duration(m.train_s)] for m in rows]
    return table(header, body)


def groups_table(groups: list[dict], names: list[str]) -> list[str]:
    def cell(g, name):
        s = g["metrics"].get(name)
        if s is None:
            return "–"
        spread = "" if s["sd"] is None else f" ± {fmt(name, s['sd'])}"
        return f"{fmt(name, s['mean'])}{spread} ({s['n']})"

    return table(["group", "models"] + names, [[g["group"], str(g["n"])] + [cell(g, n) for n in names] for g in groups])


def cache_table(caches: list[dict]) -> list[str]:
    body = []
    for c in caches:
        mass = ", ".join(f"T={t}: {s['mean']:.3f} / {s['p10']:.3f}" for t, s in c["head_mass"].items()) or "–"
        u = c["unique_ids"]
        body.append([c["path"], c["mode"], str(c["k"] if c["k"] is not None else "–"), str(c["teachers"]),
                     f"{c['n_windows']:,}", f"{c['bytes_per_token']:.1f}", mass,
                     f"{u['mean']:.1f} / {u['p90']:.0f}" if u else "–", "yes" if c["complete"] else "NO"])
    return table(["cache", "mode", "k", "teachers", "windows", "B/token", "head mass mean / p10",
                  "unique ids mean / p90", "complete"], body)


def figure(title: str, stem: str | None) -> list[str]:
    if stem is None:
        return []
    return [f"![{title}]({stem}.png)", "", f"Vector version: [{stem}.svg]({stem}.svg).", ""]


def markdown(rows: list[Model], doc: dict, figures: dict, eval_files: list[str], unmatched: list[str]) -> str:
    names = doc["metrics"]
    n_runs = sum(1 for m in rows if not m.members)
    n_caches = len(doc["caches"])
    lines = ["# bl2 report", "",
             f"{len(rows)} models ({n_runs} run dirs), {len(eval_files)} evaluation files"
             + (f" ({len(unmatched)} entries about models outside these run dirs left out)" if unmatched else "")
             + f", {n_caches} cache{'s' * (n_caches != 1)}. CE in nats/token (lower is better); BLiMP accuracy in % "
             "(chance 50). A gap (–) is an evaluation that was not found.", "", "## Results", ""]
    lines += results_table(rows, names, doc["finetune"])
    lines += ["", "val CE: validation CE of the final weights: an `eval loss --split val` where one was found, else "
              "the best validation of training (bl2 keeps those weights). Direct ensembles: parameters, tokens and "
              "time summed over their members."
              + (f" `{finetune.AVG}`: {finetune.avg_note(doc['finetune'])} (per task below)." if doc["finetune"]
                 else ""), ""]
    if doc["finetune"]:
        lines += ["## Fine-tuning: (Super)GLUE per task (Table 5 analogue)", ""]
        lines += table(*finetune.table_rows(doc["finetune"])) + [""] + finetune.notes(doc["finetune"])
    lines += ["## Groups (mean ± sd over members, n)", ""]
    lines += groups_table(doc["groups"], names)
    lines += ["", "sd: sample standard deviation (n − 1); a single value has none.", "", "## Training curves", ""]
    lines += ["The y axes cover the last 70 % of training: the first steps (CE near ln V) are cut off.", ""]
    lines += figure("Training curves", figures.get("curves"))
    lines += ["## Figure 1 analogue: every metric by group", "",
              "Violins for groups of 3 or more models, a dot per model, black ticks: the group's mean ± sd.", ""]
    lines += figure("Figure 1 analogue", figures.get("fig1"))
    lines += ["## Figure 2 analogue: BLiMP against validation CE", ""]
    for name, fit in doc["fits"].items():
        lines.append(f"- {name}: " + ("fewer than 3 models with both numbers: no fit" if fit is None else
                     f"slope {fit['slope']:.2f} %/nat, R² = "
                     f"{'–' if fit['r2'] is None else format(fit['r2'], '.3f')} over {fit['n']} models"))
    if not doc["fits"]:
        lines.append("- no BLiMP evaluation found (`bl2 eval blimp ... --out` into --evals): Figure 2 is not drawn")
    lines.append("")
    lines += figure("Figure 2 analogue", figures.get("fig2"))
    if "fig3" in figures:
        lines += ["## Figure 3 analogue: validation CE against data size", "",
                  "Run dirs of one preset trained on DATA dirs of different sizes (`bl2 prepare --max-words`): the "
                  "best validation CE of each run against its train split's words; lines join the means.", ""]
        lines += figure("Figure 3 analogue", figures.get("fig3"))
    if any(n.endswith("(2025)") for n in names) or "words" in figures:
        lines += ["## BabyLM 2025 zero-shot suite", "",
                  "Columns named `... fast (2025)` / `... full (2025)` come from `bl2 eval zero-shot` on that set of "
                  "the official evaluation data, scored with the official 2025 rules: accuracy in %, WUG as "
                  "Spearman's rho, reading as the gain in R² (% of the unexplained variance); `BabyLM macro` = the "
                  "mean of the accuracy tasks present (each results JSON lists them in `macro_tasks`).", ""]
        lines += figure("Zero-shot scores across word checkpoints", figures.get("words"))
    lines += ["## Caches", ""]
    if doc["caches"]:
        lines += cache_table(doc["caches"])
        lines += ["", "Head mass: probability the stored top-k keeps per position (mean / 10th percentile, from "
                  "the cache's diagnostics); the figure shows its distribution over the first "
                  "windows of each cache.", ""]
        lines += figure("Cache diagnostics", figures.get("caches"))
    else:
        lines += ["No cache given (`--cache`).", ""]
    lines += ["## Inputs", ""]
    lines += table(["model", "role", "group", "path"], [[m.label, m.role, m.group, m.path] for m in rows])
    lines += ["", "Evaluation files:", ""] + [f"- {f}" for f in eval_files] + ([] if eval_files else ["- none"])
    if unmatched:
        lines += ["", "Evaluations of models that are not among the report's run dirs (left out):", ""]
        lines += [f"- {u}" for u in unmatched]
    return "\n".join(lines) + "\n"

