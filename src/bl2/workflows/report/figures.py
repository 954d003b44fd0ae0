"""The figures of `bl2 report`: training curves, the Figure 1 analogue (each metric by group), the Figure 2
analogue (BLiMP against validation CE) and cache diagnostics, each saved as PNG and SVG.

matplotlib is imported only inside these functions, and only its object-oriented API is used (Figure objects
with the Agg renderer): no display, no pyplot state shared with a caller. Readability: Okabe-Ito colours (safe
for colour-blind readers) by group, plus a marker shape per group; titles; axis labels with units; legends
outside the axes. Determinism: a fixed SVG hash salt (the ids of clip paths) and no date in the metadata, so the
same inputs give byte-identical files.
"""

from __future__ import annotations

import math
from pathlib import Path

from bl2.workflows.report.inputs import Model, blimp_points, metric_names, unit

OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000", "#F0E442")
MARKERS = ("o", "s", "D", "^", "v", "P", "X", "*")
LINESTYLES = ("-", "--", ":", "-.")
RC = {"svg.hashsalt": "bl2-report", "font.size": 9, "axes.titlesize": 10, "axes.spines.top": False,
      "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3, "savefig.dpi": 120}
STEMS = {"curves": "curves", "fig1": "fig1_metrics", "fig2": "fig2_blimp_vs_val_ce", "caches": "caches",
         "words": "zero_shot_vs_words", "fig3": "fig3_val_ce_vs_data"}
FOCUS = 0.3  # the curves' y range covers the steps after this fraction of the longest run
MAX_RUN_LEGEND = 16  # more runs than this: the curves' legend names groups instead of runs


def draw_all(rows: list[Model], caches: list[dict], fits: dict, out: Path) -> dict[str, str]:
    """Draw and save every figure; returns {figure: file stem} (the cache figure only when caches are given)."""
    import matplotlib

    with matplotlib.rc_context(RC):
        styles = group_styles(rows)
        figs = {"curves": curves(rows, styles), "fig1": fig1(rows, styles)}
        if fits:  # no BLiMP evaluation: no empty figure (report.md says why)
            figs["fig2"] = fig2(rows, styles, fits)
        if caches:
            figs["caches"] = cache_figure(caches)
        from bl2.workflows.report.zero_shot import words_figure

        scaling = fig3(rows)
        if scaling is not None:  # only when runs of one preset were trained on several data sizes
            figs["fig3"] = scaling
        words = words_figure(rows, styles, new_figure)
        if words is not None:  # only when some evaluation covered word checkpoints (--all-revisions)
            figs["words"] = words
        for key, fig in figs.items():
            save(fig, Path(out), STEMS[key])
    return {key: STEMS[key] for key in figs}


def save(fig, out: Path, stem: str) -> None:
    # constrained layout keeps the outside legends within the figure: no bbox_inches="tight" (a second layout pass)
    fig.savefig(out / f"{stem}.png", format="png", metadata={"Software": None})
    fig.savefig(out / f"{stem}.svg", format="svg", metadata={"Date": None})


def new_figure(n_panels: int, width: float = 4.3, height: float = 3.6, ncols: int = 3):
    """A constrained-layout Figure with n panels in rows of `ncols`; unused panels hidden."""
    from matplotlib.figure import Figure

    ncols = max(1, min(ncols, n_panels))
    nrows = math.ceil(max(1, n_panels) / ncols)
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = list(fig.subplots(nrows, ncols, squeeze=False).ravel())
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes[: max(1, n_panels)]


def note(ax, text: str) -> None:
    """An empty panel that says why it is empty."""
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4", wrap=True)


def group_styles(rows: list[Model]) -> dict[str, tuple[str, str]]:
    """group -> (colour, marker), in the rows' group order."""
    groups = list(dict.fromkeys(m.group for m in rows))
    return {g: (OKABE_ITO[i % len(OKABE_ITO)], MARKERS[i % len(MARKERS)]) for i, g in enumerate(groups)}


def group_handles(styles: dict, groups: list[str], line: bool = False) -> list:
    from matplotlib.lines import Line2D

    return [Line2D([], [], color=styles[g][0], marker=None if line else styles[g][1], linestyle="-" if line else "",
                   label=g) for g in groups]


# ----------------------------------------------------------------------------------------------- curves
def curves(rows: list[Model], styles: dict):
    """Train CE, train KL and validation CE per step: one line per run, coloured by group."""
    from matplotlib.lines import Line2D

    runs = [m for m in rows if not m.members]
    reductions = {m.kl_reduction for m in runs if any(r.get("kl") is not None for r in m.train)}
    kl_unit = {"sequence": "nats/sequence", "token": "nats/token"}.get(next(iter(reductions)), "as logged") \
        if len(reductions) == 1 else "as logged"
    panels = [("train cross-entropy", "CE (nats/token)", lambda m: [(r["step"], r["ce"]) for r in m.train
                                                                      if r.get("ce") is not None]),
              ("train KL to the teachers", f"KL ({kl_unit})", lambda m: [(r["step"], r["kl"]) for r in m.train
                                                                          if r.get("kl") is not None]),
              ("validation cross-entropy", "CE (nats/token)", lambda m: [(r["step"], r["val_ce"]) for r in m.val])]
    fig, axes = new_figure(3, width=4.2, height=3.4)
    index: dict[str, int] = {}
    handles = []
    for m in runs:
        colour, _ = styles[m.group]
        style = LINESTYLES[index.setdefault(m.group, 0) % len(LINESTYLES)]
        index[m.group] += 1
        handles.append(Line2D([], [], color=colour, linestyle=style, label=m.label))
        for ax, (_, _, pick) in zip(axes, panels):
            pts = pick(m)
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], color=colour, linestyle=style, linewidth=1.1,
                        marker="." if pick is panels[2][2] else None, markersize=3)
    for ax, (title, ylabel, pick) in zip(axes, panels):
        ax.set(title=title, xlabel="optimizer step", ylabel=ylabel)
        values = [p for m in runs for p in pick(m)]
        if not values:
            note(ax, "nothing logged (no distillation run)" if "KL" in title else "nothing logged")
        else:
            focus(ax, values)
    if len(runs) > MAX_RUN_LEGEND:
        handles = group_handles(styles, list(dict.fromkeys(m.group for m in runs)), line=True)
    fig.legend(handles=handles, loc="outside right upper", title="run (colour: group)", fontsize=8)
    fig.suptitle("Training curves")
    return fig


def focus(ax, points: list[tuple[float, float]]) -> None:
    """y range of the curves' last 70 % of steps: the start of training (CE ~ ln V) would flatten the
    differences that matter, so it is cut off."""
    last = max(p[0] for p in points)
    late = [p[1] for p in points if p[0] >= FOCUS * last] or [p[1] for p in points]
    lo, hi = min(late), max(late)
    pad = 0.05 * (hi - lo) or 0.05 * abs(hi) or 0.1
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_xlim(FOCUS * last - 0.03 * last, last * 1.03)


# ----------------------------------------------------------------------------------------------- figure 1
def fig1(rows: list[Model], styles: dict):
    """One panel per metric: a violin per group of 3 or more, a dot per model, the group's mean ± sd."""
    import textwrap

    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    from bl2.workflows.report.finetune import AVG, section, short_note

    names = metric_names(rows)
    subtitles = {AVG: short_note(section(rows))}  # which tasks the average covers, and the selection rule
    n_groups = len(dict.fromkeys(m.group for m in rows))
    # wider panels for many groups, so tick labels (wrapped, rotated) neither overlap nor get clipped
    fig, axes = new_figure(len(names), width=max(4.3, 0.9 * n_groups + 1.5), height=3.6 + 0.25 * min(n_groups, 8),
                           ncols=3 if n_groups <= 4 else 2)
    if not names:
        note(axes[0], "no evaluation found (--evals)")
    violins = mean_sd = False
    for ax, name in zip(axes, names):
        groups = list(dict.fromkeys(m.group for m in rows if name in m.metrics))
        for i, g in enumerate(groups):
            members = [m for m in rows if m.group == g and name in m.metrics]
            drew = group_panel(ax, i, [m.metrics[name] for m in members], [m.label for m in members], styles[g])
            violins, mean_sd = violins or drew, mean_sd or len(members) > 1
        ax.set_xticks(range(len(groups)), [textwrap.fill(g, 18) for g in groups], rotation=30, ha="right",
                      rotation_mode="anchor", fontsize=8)
        ax.set_xlim(-0.6, len(groups) - 0.4)
        ax.set(title=name + subtitles.get(name, ""),
               ylabel=f"CE ({unit(name)})" if name.endswith(" CE") else unit(name))
    handles = [Line2D([], [], marker="o", color="0.3", linestyle="", label="one model")]
    if violins:  # the legend promises only what is drawn
        handles.insert(0, Patch(facecolor="0.7", alpha=0.5, label="distribution (groups of ≥ 3)"))
    if mean_sd:
        handles.append(Line2D([], [], marker="_", color="black", markersize=10, linestyle="-",
                              label="group mean ± sd"))
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=8)
    fig.suptitle("Figure 1 analogue: every metric by group")
    return fig


def group_panel(ax, x: int, values: list[float], labels: list[str], style: tuple[str, str]) -> bool:
    """One group's dots (and violin, mean ± sd); returns whether a violin was drawn."""
    colour, marker = style
    violin = len(values) > 2 and max(values) > min(values)  # a KDE of identical values is singular
    if violin:
        body = ax.violinplot([values], positions=[x], widths=0.7, showextrema=False)["bodies"][0]
        body.set(facecolor=colour, edgecolor=colour, alpha=0.3)
    n = len(values)
    xs = [x + (-0.15 + 0.3 * i / (n - 1) if n > 1 else 0.0) for i in range(n)]  # fixed spread, no random jitter
    ax.scatter(xs, values, color=colour, marker=marker, edgecolor="black", linewidth=0.5, s=24, zorder=3)
    if n == 2:  # a group of one is named by its tick; a group of 3+ is a distribution
        for side, (xi, v, label) in zip((-1, 1), zip(xs, values, labels)):  # left dot: label left; right: right
            ax.annotate(label.rsplit("/", 1)[-1], (xi, v), xytext=(6 * side, 0), textcoords="offset points",
                        fontsize=7, va="center", ha="right" if side < 0 else "left")
    if n > 1:
        mean = sum(values) / n
        sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
        ax.errorbar([x - 0.32], [mean], yerr=[sd], fmt="_", color="black", markersize=10, capsize=3, zorder=4)
    return violin


# ----------------------------------------------------------------------------------------------- figure 2
def fig2(rows: list[Model], styles: dict, fits: dict):
    """BLiMP accuracy against validation CE: a point per model, the least-squares line and its R²."""
    names = list(fits)
    fig, axes = new_figure(len(names), width=4.6, height=3.8)
    if not names:
        note(axes[0], "no BLiMP evaluation found (--evals)")
    groups: list[str] = []
    for ax, name in zip(axes, names):
        pts = blimp_points(rows, name)
        for m, x, y in pts:
            colour, marker = styles[m.group]
            ax.scatter([x], [y], color=colour, marker=marker, edgecolor="black", linewidth=0.5, s=28, zorder=3)
            if m.group not in groups:
                groups.append(m.group)
        fit = fits[name]
        subtitle = "fewer than 3 models: no fit"
        if fit is not None:
            xs = [min(p[1] for p in pts), max(p[1] for p in pts)]
            ax.plot(xs, [fit["slope"] * x + fit["intercept"] for x in xs], color="0.2", linewidth=1, zorder=2)
            r2 = "–" if fit["r2"] is None else f"{fit['r2']:.2f}"
            subtitle = f"R² = {r2}, n = {fit['n']}, slope {fit['slope']:.1f} %/nat"
        if not pts:
            note(ax, "no model has both a BLiMP score and a validation CE")
        ax.set(title=f"{name} vs validation CE\n{subtitle}", xlabel="validation CE (nats/token)",
               ylabel="accuracy (%)")
    if groups:
        fig.legend(handles=group_handles(styles, [g for g in styles if g in groups]), loc="outside lower center",
                   ncols=min(3, len(groups)), fontsize=8)
    fig.suptitle("Figure 2 analogue: BLiMP against validation CE")
    return fig


# ----------------------------------------------------------------------------------------------- caches
def cache_figure(caches: list[dict]):
    """Head-mass distribution per temperature (topk), unique sampled ids (sample), bytes per token."""
    import numpy as np

    names = cache_names(caches)
    topk = [(n, c) for n, c in zip(names, caches) if c["mode"] == "topk" and c["dist"]]
    sample = [(n, c) for n, c in zip(names, caches) if c["mode"] == "sample" and c["dist"]]
    fig, axes = new_figure(2 + bool(sample), width=4.4, height=3.6)
    ax = axes[0]
    for i, (name, c) in enumerate(topk):
        for j, (t, values) in enumerate(c["dist"].items()):
            ax.hist(values, bins=np.linspace(0, 1, 41), density=True, histtype="step", linewidth=1.2,
                    color=OKABE_ITO[i % len(OKABE_ITO)], linestyle=LINESTYLES[j % len(LINESTYLES)],
                    label=f"{name} {t}")
    if topk:
        ax.legend(fontsize=7, loc="upper left")
    else:
        note(ax, "no topk cache")
    ax.set(title="head mass per position (first windows)", xlabel="probability kept by the top-k",
           ylabel="density (positions)")
    ax = axes[1]
    ax.bar(range(len(caches)), [c["bytes_per_token"] for c in caches], width=0.5,
           color=[OKABE_ITO[i % len(OKABE_ITO)] for i in range(len(caches))])
    ax.set_xticks(range(len(caches)), names, rotation=25, ha="right")
    ax.set(title="size on disk", ylabel="bytes/token")
    if sample:
        ax = axes[2]
        for i, (name, c) in enumerate(sample):
            values = c["dist"]["unique ids"]
            ax.hist(values, bins=np.arange(0.5, values.max() + 1.5), density=True, histtype="step",
                    color=OKABE_ITO[i % len(OKABE_ITO)], label=name)
        ax.legend(fontsize=7)
        ax.set(title="unique sampled ids per position", xlabel="unique ids (count)", ylabel="density (positions)")
    fig.suptitle("Cache diagnostics")
    return fig


def cache_names(caches: list[dict]) -> list[str]:
    names = [Path(c["path"]).name for c in caches]
    return [n if names.count(n) == 1 else "/".join(Path(c["path"]).parts[-2:]) for n, c in zip(names, caches)]


# ----------------------------------------------------------------------------------------------- figure 3
def scaling_points(rows: list[Model]) -> dict[str, list[tuple[int, float]]]:
    """preset -> sorted (train words, best val CE) of its run dirs, for presets seen at 2+ data sizes."""
    by_preset: dict[str, list[tuple[int, float]]] = {}
    for m in rows:
        if m.members or m.preset is None or not m.train_words or m.best_val_ce is None:
            continue
        by_preset.setdefault(m.preset, []).append((int(m.train_words), float(m.best_val_ce)))
    return {p: sorted(v) for p, v in by_preset.items() if len({w for w, _ in v}) > 1}


def fig3(rows: list[Model]):
    """The paper's Figure 3 analogue: validation CE against training words (log axis), a line per preset
    (the mean over runs at each size, every run a dot); None when no preset has two data sizes."""
    points = scaling_points(rows)
    if not points:
        return None
    fig, (ax,) = new_figure(1, width=5.5, height=4.0)
    for i, (preset, pts) in enumerate(sorted(points.items())):
        colour, marker = OKABE_ITO[i % len(OKABE_ITO)], MARKERS[i % len(MARKERS)]
        sizes = sorted({w for w, _ in pts})
        means = [sum(c for w, c in pts if w == s) / sum(1 for w, _ in pts if w == s) for s in sizes]
        ax.plot(sizes, means, color=colour, marker=marker, label=preset)
        ax.scatter([w for w, _ in pts], [c for _, c in pts], color=colour, s=12, alpha=0.5)
    ax.set_xscale("log")
    ax.set_xlabel("training words (DATA dir train split)")
    ax.set_ylabel("best validation CE (nats/token)")
    ax.set_title("Figure 3 analogue: validation CE against data size")
    ax.legend(title="preset")
    return fig
