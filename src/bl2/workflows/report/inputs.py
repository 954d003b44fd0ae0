"""What `bl2 report` reads: run dirs (and the role of each), evaluation JSONs matched to them, the direct
ensembles they name, and cache diagnostics. See report.py for the rules; nothing here draws or writes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from bl2.errors import UserError, require
from bl2.progress import console
from bl2.runs import metrics, record
from bl2.storage import local_path
from bl2.workflows.report import finetune
from bl2.workflows.report.finetune import AVG

RUN_JSON = record.RUN_JSON
SUITES = {"blimp_filtered": "BLiMP filtered", "supplement_filtered": "BLiMP supplement"}
SYNTHETIC = "Minimal pairs, synthetic (not BLiMP)"  # `eval blimp` on bl2's built-in pairs
SPLIT_ORDER = ("test", "val", "train")


@dataclass
class Model:
    """One row of the report: a run dir, or the direct ensemble of several."""

    key: str  # resolved run dir, or "ensemble:" + the members' keys
    path: str  # as found (for humans)
    label: str
    role: str  # teacher | baseline | student | sweep trial | direct ensemble
    group: str  # the figures' and tables' group
    n_params: int | None = None
    tokens_seen: int | None = None
    train_s: float | None = None  # training loop wall time (all segments of a resumed run)
    best_val_ce: float | None = None  # the lowest validation CE of training (bl2 keeps those weights)
    metrics: dict[str, float] = field(default_factory=dict)  # "test CE" (nats/token), "BLiMP filtered" (%), ...
    train: list[dict] = field(default_factory=list)  # metrics.jsonl rows of kind train
    val: list[dict] = field(default_factory=list)  # rows of kind val
    members: list[str] = field(default_factory=list)  # direct ensemble: member keys
    word_scores: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # metric -> (words, score)
    preset: str | None = None
    train_words: int | None = None  # words of its DATA dir's train split (a --max-words subset: Figure 3)
    kl_reduction: str | None = None
    finetune: dict[str, dict] = field(default_factory=dict)  # task -> `bl2 finetune` result (score in %)

    @property
    def val_ce(self) -> float | None:
        """Validation CE of the final weights (see fill_val_ce)."""
        return self.metrics.get("val CE")


# ----------------------------------------------------------------------------------------------- run dirs
def find_run_dirs(args: list[str]) -> list[Path]:
    """Run dirs named or found below the arguments, in argument order (sorted below each folder), once each."""
    found: dict[str, Path] = {}
    for arg in args:
        path = local_path(arg, "a run dir")
        require(path.exists(), f"{arg}: no such run dir or folder")
        if (path / RUN_JSON).is_file():
            below = [path]
        else:
            require(path.is_dir(), f"{arg} is not a run dir (no {RUN_JSON})")
            below = sorted(p.parent for p in path.rglob(RUN_JSON) if "checkpoints" not in p.relative_to(path).parts)
            require(len(below) > 0, f"{arg}: no run dir ({RUN_JSON}) found in it")
        for p in below:
            found.setdefault(str(p.resolve()), p)
    return list(found.values())


def load_run(path: Path, info: dict) -> tuple[Model, dict]:
    """The run's Model (role filled in later) and its run.json (`info`, read by bl2.runs.record)."""
    cfg = info.get("config") or {}
    rows = metrics.read(path / metrics.FILENAME)  # read once: a report may load dozens of sweep trials
    train, val = metrics.of_kind(rows, "train"), metrics.of_kind(rows, "val")
    model = Model(str(path.resolve()), str(path), path.name, "", "", n_params=info.get("n_params"),
                  train=train, val=val, kl_reduction=cfg.get("kl_reduction"), preset=cfg.get("preset"),
                  train_words=(info.get("budget") or {}).get("train_words"))
    model.best_val_ce = min((r["val_ce"] for r in val), default=None)
    model.tokens_seen = tokens_seen(train, cfg)
    model.train_s = train_seconds(rows)
    return model, info


def tokens_seen(train: list[dict], cfg: dict) -> int | None:
    """Training tokens seen: as logged, else steps x batch x seq_len."""
    if not train:
        return None
    if train[-1].get("tokens_seen") is not None:
        return int(train[-1]["tokens_seen"])
    if cfg.get("batch_size") and cfg.get("seq_len"):
        return int(train[-1]["step"]) * int(cfg["batch_size"]) * int(cfg["seq_len"])
    return None


def train_seconds(rows: list[dict]) -> float | None:
    """Wall time of the training loop: each segment's last elapsed_s (a resume starts a new segment), the
    last one's `done` train_s."""
    total, segment, seen = 0.0, 0.0, False
    for r in rows:
        if r.get("elapsed_s") is not None:  # train rows
            segment, seen = float(r["elapsed_s"]), True
        elif r.get("event") in ("resume", "done"):
            if r["event"] == "done" and r.get("train_s") is not None:
                segment, seen = float(r["train_s"]), True
            total, segment = total + segment, 0.0
    return total + segment if seen else None


def teachers_of(info: dict) -> tuple[list[str], list[str]]:
    """(paths, weight hashes) of a distilled run's teachers, from any run.json layout bl2 wrote: identities
    hold the hashes (`cache.teacher_sha256`, online `teachers`), `paths` / `budget` the paths; older run.json
    files held [{path, sha256}] records in the identity."""
    ident = info.get("identity") or {}
    cache = ident.get("cache") or {}
    records = list(cache.get("teachers") or []) + list(ident.get("teachers") or [])
    shas = [t.get("sha256") if isinstance(t, dict) else t for t in records] + list(cache.get("teacher_sha256") or [])
    paths = [t.get("path") for t in records if isinstance(t, dict)]
    paths += list((info.get("paths") or {}).get("teachers") or [])
    paths += [t.get("path") for t in (info.get("budget") or {}).get("teachers") or []]
    return [p for p in paths if p], [s for s in dict.fromkeys(shas) if s]


def teacher_refs(infos: list[dict]) -> tuple[set[str], set[str]]:
    """Paths and weight hashes of every teacher a student of the report learned from."""
    paths, shas = set(), set()
    for info in infos:
        p, s = teachers_of(info)
        paths |= {str(Path(x).resolve()) for x in p if "://" not in x}
        shas |= set(s)
    return paths, shas


def assign_role(model: Model, info: dict, teacher_paths: set[str], teacher_shas: set[str]) -> None:
    ident = info.get("identity") or {}
    command, cfg = ident.get("command"), info.get("config") or {}
    sweep, confirm = info.get("sweep"), info.get("sweep_confirm")
    if isinstance(sweep, dict):
        study = Path(str(sweep.get("study", "study"))).name
        model.role, model.group = "sweep trial", f"sweep {study}"
        model.label = f"{study}/{model.label}"  # trial-0003 of two studies: two labels
    elif isinstance(confirm, dict):  # `sweep confirm`: the sweep's best config re-trained from a new seed
        study = Path(str(confirm.get("study", "study"))).name
        model.role, model.group = "sweep confirm", f"sweep {study}: best config, new seeds"
        model.label = f"{study}/{model.label}"
    elif command == "pretrain":
        model.role = "teacher" if is_teacher(model, teacher_paths, teacher_shas) else "baseline"
        model.group = "teachers" if model.role == "teacher" else "baselines (pretrained)"
    elif cfg.get("alpha") == 1:
        # a distill run with alpha = 1 learns from CE only, on the cache's windows (pretraining redraws them)
        model.role, model.group = "baseline", "baselines (alpha 1)"
    else:
        paths, shas = teachers_of(info)
        n = len(shas) or len(dict.fromkeys(paths))
        model.role = "student"
        model.group = f"students ({n} teacher{'s' * (n != 1)}{', online' * (command == 'distill-online')})"


def is_teacher(model: Model, paths: set[str], shas: set[str]) -> bool:
    if model.key in paths:
        return True
    if not shas:
        return False
    from bl2.cache.teachers import weights_sha256

    try:
        return weights_sha256(Path(model.path)) in shas
    except UserError:  # no weights yet (an unfinished run): not a teacher of anything
        return False


def collect_runs(args: list[str], labels: dict[str, str], groups: dict[str, str] | None = None) -> dict[str, Model]:
    """The run dirs of the arguments with their roles; --label and --group (DIR -> NAME) override."""
    loaded, found = [], record.read_many(find_run_dirs(args))  # a bad run is skipped and named, not fatal
    runs = [(path, info) for path, info in found if not finetune.is_finetune_run(info)]
    hint = " (`bl2 finetune` task dirs are outputs, not models: give their folder to --evals)"
    if len(runs) < len(found):
        console.print(f"skipped {len(found) - len(runs)} fine-tuning task dir(s){hint}", soft_wrap=True)
    for path, info in runs:
        try:
            loaded.append(load_run(path, info))
        except UserError as e:
            console.print(f"[yellow]warning:[/] skipped: {e}", soft_wrap=True)
    require(bool(loaded), "none of the given run dirs could be read" + (hint if len(runs) < len(found) else ""))
    paths, shas = teacher_refs([info for _, info in loaded])
    models = {}
    for model, info in loaded:
        assign_role(model, info, paths, shas)
        models[model.key] = model
    unique_labels(list(models.values()))
    for option, mapping in (("label", labels), ("group", groups or {})):
        for dir_, name in mapping.items():
            key = str(local_path(dir_).resolve())
            require(key in models, f"--{option} {dir_}={name}: {dir_} is not one of the report's run dirs")
            setattr(models[key], option, name)
    return models


def unique_labels(models: list[Model]) -> None:
    """Labels stay unique: where two runs share one, each gets as many of its parent folders as it takes."""
    for depth in range(2, 8):
        names = [m.label for m in models]
        clashes = [m for m in models if names.count(m.label) > 1]
        if not clashes:
            return
        for m in clashes:
            m.label = "/".join(Path(m.path).resolve().parts[-depth:])


# ----------------------------------------------------------------------------------------------- evaluations
def find_eval_docs(args: list[str]) -> list[tuple[Path, dict, str]]:
    """(file, JSON, kind) of every `eval loss|blimp|zero-shot` or `finetune` JSON named or found below the
    arguments."""
    docs = []
    for arg in args:
        path = Path(arg)
        require(path.exists(), f"--evals {arg}: no such file or folder")
        files = [path] if path.is_file() else sorted(path.rglob("*.json"))
        found = []
        for f in files:
            try:
                doc = json.loads(f.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                continue  # not ours; a garbled eval file is reported as not found below
            kind = eval_kind(doc)
            if kind:
                found.append((f, doc, kind))
        require(len(found) > 0, f"--evals {arg}: no evaluation JSON (`bl2 eval loss|blimp|zero-shot --out`, "
                                   "`bl2 finetune --out`) found")
        docs += found
    return docs


def eval_kind(doc) -> str | None:
    from bl2.workflows.report import zero_shot

    if not isinstance(doc, dict):
        return None
    if zero_shot.is_zero_shot(doc):
        return "zero_shot"
    if finetune.is_finetune(doc):
        return "finetune"
    results = doc.get("results")
    if isinstance(results, dict) and "split" in doc and isinstance(doc.get("models"), list):
        return "loss"
    if isinstance(results, list) and results and all(isinstance(r, dict) and "suites" in r for r in results):
        return "blimp"
    return None


def match_dir(name: str, models: dict[str, Model]) -> str | None:
    """The run dir an evaluation names: the same resolved path, else the one run whose path ends like it."""
    key = str(Path(name).resolve())
    if key in models:
        return key
    tail = [p for p in Path(name).parts if p not in ("", ".", "..", "/")]
    hits = [k for k, m in models.items() if not m.members and tail and list(Path(k).parts[-len(tail):]) == tail]
    return hits[0] if len(hits) == 1 else None


def ensemble_of(names: list[str], models: dict[str, Model]) -> Model:
    """The direct ensemble of these member dirs (made once, shared by every evaluation of it)."""
    keys = [match_dir(n, models) or f"?{n}" for n in names]
    key = "ensemble:" + "+".join(sorted(keys))
    if key not in models:
        members = [models.get(k) for k in keys]
        label = "ensemble(" + "+".join(m.label if m else Path(n).name for m, n in zip(members, names)) + ")"
        ens = Model(key, " + ".join(names), label, "direct ensemble", "direct ensemble", members=keys)
        if all(members):
            for attr in ("n_params", "tokens_seen", "train_s"):
                values = [getattr(m, attr) for m in members]
                setattr(ens, attr, None if None in values else sum(values))
        models[key] = ens
    return models[key]


def attach_evals(docs: list[tuple[Path, dict, str]], models: dict[str, Model], used: set | None = None) -> list[str]:
    """Put every evaluation's numbers on its model; returns the entries that name no run dir of the report.
    `used` receives the files that gave at least one number (the others are about other runs)."""
    unmatched = []
    used = set() if used is None else used

    def put(name: str, metric: str, value: float, where: Path) -> None:
        key = match_dir(name, models)
        if key is None:
            unmatched.append(f"{where}: {name} ({metric})")
        else:
            models[key].metrics[metric] = value
            used.add(where)

    finetune.attach([(p, d) for p, d, kind in docs if kind == "finetune"], models, match_dir, unmatched, used)
    for path, doc, kind in docs:
        if kind == "finetune":
            continue
        if kind == "loss":
            metric = f"{doc['split']} CE"
            for name in doc["models"]:
                if name in doc["results"]:
                    put(name, metric, float(doc["results"][name]["ce"]), path)
            if "ensemble" in doc["results"] and len(doc["models"]) > 1:
                if all(match_dir(d, models) for d in doc["models"]):
                    ensemble_of(doc["models"], models).metrics[metric] = float(doc["results"]["ensemble"]["ce"])
                    used.add(path)
                else:
                    unmatched.append(f"{path}: ensemble of {', '.join(doc['models'])} (members not among the run "
                                     "dirs)")
            continue
        if kind == "zero_shot":
            from bl2.workflows.report import zero_shot

            zero_shot.attach(doc, lambda name, metric, value, where=path: put(name, metric, value, where),
                             ensemble_of, models, match_dir)
            continue
        for entry in doc["results"]:
            dirs = [str(d) for d in entry.get("model_dirs") or []]
            synthetic = set((doc.get("settings") or {}).get("synthetic_suites") or [])
            scores = {SYNTHETIC if s in synthetic else suite_metric(s): 100 * float(v["score"])
                      for s, v in (entry.get("suites") or {}).items()}
            if len(dirs) > 1 or entry.get("kind") == "ensemble":
                if all(match_dir(d, models) for d in dirs):  # an ensemble of runs outside the report: left out
                    ensemble_of(dirs, models).metrics.update(scores)
                    used.add(path)
                else:
                    unmatched.append(f"{path}: ensemble of {', '.join(dirs)} (members not among the run dirs)")
            elif dirs:
                for metric, value in scores.items():
                    put(dirs[0], metric, value, path)
    return unmatched


def fill_val_ce(models: dict[str, Model]) -> None:
    """"val CE" = the validation CE of the final weights: an `eval loss --split val` where one was found, else
    the best validation of training (the weights bl2 keeps; the two agree, both score the val split's windows)."""
    for m in models.values():
        if "val CE" not in m.metrics and m.best_val_ce is not None:
            m.metrics["val CE"] = m.best_val_ce


def suite_metric(suite: str) -> str:
    return SUITES.get(suite, f"BLiMP {suite}")


def unit(metric: str) -> str:
    from bl2.workflows.report.zero_shot import unit_of

    if metric == AVG:
        return finetune.UNIT
    return "nats/token" if metric.endswith(" CE") else unit_of(metric) or "accuracy (%)"


def metric_order(names: set[str]) -> list[str]:
    """CE metrics first (test, val, train), then BLiMP filtered, supplement, the other suites, the fine-tuning
    average last."""
    def rank(name: str):
        if name == AVG:
            return (2, 0, name)
        if name.endswith(" CE"):
            split = name[:-3]
            return (0, SPLIT_ORDER.index(split) if split in SPLIT_ORDER else 9, name)
        known = [*SUITES.values(), SYNTHETIC]
        return (1, known.index(name) if name in known else 9, name)

    return sorted(names, key=rank)


# ----------------------------------------------------------------------------------------------- ordering
def group_order(models: list[Model]) -> list[str]:
    """teachers, direct ensembles, students (by teachers), baselines, sweeps, the rest."""
    def rank(group: str):
        for i, prefix in enumerate(("teachers", "direct ensemble", "students", "baselines", "sweep")):
            if group.startswith(prefix):
                digits = "".join(c for c in group if c.isdigit())
                return (i, int(digits) if digits and prefix == "students" else 0, group)
        return (9, 0, group)

    return sorted({m.group for m in models}, key=rank)


def natural(text: str):
    """Sort key that puts trial-2 before trial-10."""
    import re

    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def ordered(models: dict[str, Model]) -> list[Model]:
    groups = group_order(list(models.values()))
    return sorted(models.values(), key=lambda m: (groups.index(m.group), natural(m.label)))


def metric_names(rows: list[Model]) -> list[str]:
    return metric_order({name for m in rows for name in m.metrics})


def blimp_points(rows: list[Model], metric: str) -> list[tuple[Model, float, float]]:
    """(model, validation CE, BLiMP %) of every model that has both."""
    return [(m, m.val_ce, m.metrics[metric]) for m in rows
            if m.val_ce is not None and math.isfinite(m.val_ce) and metric in m.metrics]


def finite(values: list[float | None]) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v)]
