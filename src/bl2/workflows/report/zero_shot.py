"""`bl2 eval zero-shot --out` results in `bl2 report`: a metric per task named after the data scored (the
official BabyLM 2025 fast or full set, e.g. "EWoK fast (2025)"), the macro-average over the accuracy tasks
present, and with `--all-revisions` each model's scores against the words seen at its word checkpoints."""

from __future__ import annotations

LABELS = {"blimp": "BLiMP", "supplement": "BLiMP supplement", "ewok": "EWoK", "entity_tracking": "Entity tracking",
          "wug_adj": "WUG adj. rho", "wug_past": "WUG past rho", "comps": "COMPS", "reading": "Reading eye-tracking"}
SPR = "Reading self-paced"
MACRO = "BabyLM macro"


def is_zero_shot(doc: dict) -> bool:
    if isinstance(doc.get("revisions"), dict):
        return all(is_zero_shot(d) for d in doc["revisions"].values()) and bool(doc["revisions"])
    return isinstance(doc.get("systems"), list) and isinstance(doc.get("settings"), dict) and "which" in doc[
        "settings"] and all(isinstance(s, dict) and "tasks" in s for s in doc["systems"])


def metric(label: str, which: str) -> str:
    return f"{label} {which} (2025)"


def system_scores(system: dict, which: str) -> dict[str, float]:
    """{metric: value} of one system: each task's headline, reading's two scores, the macro-average."""
    out = {}
    for task, r in system["tasks"].items():
        if r.get("score") is None:
            continue
        out[metric(LABELS.get(task, task), which)] = float(r["score"])
        if task == "reading":
            out[metric(SPR, which)] = float(r["subtasks"]["self_paced_reading"])
    if system.get("macro_average") is not None:
        out[metric(MACRO, which)] = float(system["macro_average"])
    return out


def words_of(revision: str) -> float | None:
    """Words seen at a chck_* revision (chck_1M = 1e6, chck_500K = 5e5); None for other names."""
    from bl2.runs.marks import parse_marks

    if not revision.startswith("chck_"):
        return None
    try:
        return float(parse_marks(revision[len("chck_"):])[0])
    except Exception:  # a revision name bl2 did not write: no position on the words axis
        return None


def attach(doc: dict, put, ensemble_of, models, match) -> None:
    """Put a zero-shot document's numbers on its models (`put(dir, metric, value)` for single models; `match`
    finds a run dir's key, `ensemble_of` the direct ensemble of dirs: inputs.py's, passed in to keep this module
    below it)."""
    revisions = doc["revisions"] if "revisions" in doc else {None: doc}
    for revision, d in revisions.items():
        which = d["settings"]["which"]
        for system in d["systems"]:
            dirs = [str(x) for x in system.get("model_dirs") or []]
            scores = system_scores(system, which)
            if revision is not None:  # a word checkpoint: a point of the words-seen figure
                words = words_of(revision)
                model = models.get(match(dirs[0], models)) if len(dirs) == 1 else None
                if words is not None and model is not None:
                    for name, value in scores.items():
                        model.word_scores.setdefault(name, []).append((words, value))
                continue
            if len(dirs) > 1 or system.get("kind") == "ensemble":
                ensemble_of(dirs, models).metrics.update(scores)
            elif dirs:
                for name, value in scores.items():
                    put(dirs[0], name, value)


def words_figure(rows, styles, new_figure):
    """Each zero-shot score against words seen, a line per model with word checkpoints (None if none has)."""
    names = sorted({n for m in rows for n in m.word_scores})
    if not names:
        return None
    fig, axes = new_figure(len(names))
    for ax, name in zip(axes, names):
        for m in rows:
            pts = sorted(m.word_scores.get(name, []))
            if pts:
                colour, marker = styles[m.group]
                ax.plot([w for w, _ in pts], [v for _, v in pts], marker=marker, color=colour, label=m.label)
        ax.set_xscale("log")
        ax.set_title(name)
        ax.set_xlabel("words seen")
        ax.set_ylabel(unit_of(name))
    axes[0].legend(fontsize=7)
    fig.suptitle("Zero-shot scores across word checkpoints (bl2 eval zero-shot --all-revisions)")
    return fig


def unit_of(name: str) -> str | None:
    """The unit of a zero-shot metric (None: not a zero-shot metric)."""
    if not name.endswith("(2025)"):
        return None
    if " rho " in name:
        return "Spearman's rho"
    if name.startswith("Reading"):
        return "gain in R² (% of unexplained)"
    return "accuracy (%)"
