"""The tasks of the BabyLM 2025 zero-shot suite: where each one's data lives in the official `evaluation_data`
layout (fast and full sets, as `eval_zero_shot_fast.sh` / `eval_zero_shot.sh` pass them) and how a line of it
becomes an item, field for field as the official `sentence_zero_shot/read_files.py` decodes it for a causal
model: the candidate sentences, the completion scored in each, the correct index (always 0) and the metadata
the accuracies are grouped by (its key order is the report's section order).

EWoK is read from the organizers' password-protected zip in memory (its terms forbid plain-text copies)."""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from bl2.errors import UserError, require

# task -> (official --task, folder per set); reading is a CSV, scored by reading.py
FOLDERS = {
    "blimp": ("blimp", {"fast": "blimp_fast", "full": "blimp_filtered"}),
    "supplement": ("blimp", {"fast": "supplement_fast", "full": "supplement_filtered"}),
    "ewok": ("ewok", {"fast": "ewok_fast", "full": "ewok_filtered"}),
    "entity_tracking": ("entity_tracking", {"fast": "entity_tracking_fast", "full": "entity_tracking"}),
    "wug_adj": ("wug_adj", {"fast": "wug_adj_nominalization", "full": "wug_adj_nominalization"}),
    "wug_past": ("wug_past", {"fast": "wug_past_tense", "full": "wug_past_tense"}),
    "comps": ("comps", {"full": "comps"}),  # not in the official fast suite
    "reading": ("reading", {"fast": "reading", "full": "reading"}),
}
TASKS = tuple(FOLDERS)
SETS = ("fast", "full")
ZIP_PASSWORD_ENV = "BL2_EVAL_ZIP_PASSWORD"


@dataclass
class Item:
    sentences: list[str]
    completions: list[str]
    meta: dict  # grouping keys in the official order (UID always among them)
    ratio: float | None = None  # WUG: the human preference for the first sentence


@dataclass
class TaskData:
    """A task's items on one set, and the folder name the official layout files its results under."""

    task: str
    official_task: str
    dataset: str
    source: str
    items: list[Item] = field(default_factory=list)


# ------------------------------------------------------------------------------------------------ decoders
def blimp_item(raw: dict, stem: str) -> Item:
    pair = [raw["sentence_good"], raw["sentence_bad"]]
    if "field" in raw:
        field_ = "syntax/semantics" if raw["field"] == "syntax_semantics" else raw["field"]
        meta = {"field": field_, "UID": raw["UID"], "linguistics_term": raw["linguistics_term"]}
    else:  # the supplement has no field or UID: the file stem is its UID
        meta = {"field": "supplement", "UID": stem, "linguistics_term": "supplement"}
    return Item(pair, list(pair), meta)


def ewok_item(raw: dict, full_sentence: bool) -> Item:
    sentences = [" ".join([raw["Context1"], raw["Target1"]]), " ".join([raw["Context1"], raw["Target2"]])]
    completions = sentences if full_sentence else [" " + raw["Target1"], " " + raw["Target2"]]
    meta = {"UID": raw["Domain"], "context_type": raw["ContextType"], "context_contrast": raw["ContextDiff"],
            "target_contrast": raw["TargetDiff"]}
    return Item(sentences, list(completions), meta)


def wug_item(raw: dict, task: str) -> Item:
    sentences = raw["sentences"].split("\t")
    return Item(sentences, list(sentences), {"ratio": float(raw["ratio"]), "UID": task}, float(raw["ratio"]))


def entity_item(raw: dict, stem: str) -> Item:
    options = list(raw["options"])
    return Item([raw["input_prefix"] + o for o in options], options, {"UID": f"{stem}_{raw['numops']}_ops"})


COMPS_SUBSETS = {"comps_base": "base", "comps_wugs": "wugs", "comps_wugs_dist-before": "wugs_dist_before"}


def comps_item(raw: dict, stem: str) -> Item:
    sentences = [" ".join([raw["prefix_acceptable"], raw["property_phrase"]]),
                 " ".join([raw["prefix_unacceptable"], raw["property_phrase"]])]
    subset = COMPS_SUBSETS.get(stem, "wugs_dist_in_between")
    return Item(sentences, [raw["property_phrase"]] * 2, {"UID": subset})


def decode(task: str, raw: dict, stem: str, full_sentence: bool) -> Item:
    if task in ("blimp", "supplement"):
        return blimp_item(raw, stem)
    if task == "ewok":
        return ewok_item(raw, full_sentence)
    if task.startswith("wug"):
        return wug_item(raw, task)
    if task == "entity_tracking":
        return entity_item(raw, stem)
    return comps_item(raw, stem)


# ------------------------------------------------------------------------------------------------ files
def zip_password(given: str | None) -> bytes:
    password = given or os.environ.get(ZIP_PASSWORD_ENV)
    require(bool(password), f"EWoK is a password-protected zip: pass --zip-password or set {ZIP_PASSWORD_ENV} "
            "(the official pipeline's README publishes it)")
    return password.encode()


def zip_members(path: Path, password: str | None) -> list[tuple[str, str]]:
    """(stem, text) of each *.jsonl in the zip, decrypted in memory only (never written anywhere)."""
    pwd = zip_password(password)
    try:
        with zipfile.ZipFile(path) as z:
            names = sorted(n for n in z.namelist() if n.endswith(".jsonl"))
            return [(Path(n).stem, z.read(n, pwd=pwd).decode("utf-8")) for n in names]
    except RuntimeError as e:  # zipfile says "Bad password for file ..."
        raise UserError(f"{path}: cannot decrypt ({e}); check --zip-password / {ZIP_PASSWORD_ENV}") from None
    except (zipfile.BadZipFile, OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not a readable zip ({e})") from None


def folder_members(folder: Path) -> list[tuple[str, str]]:
    files = sorted(folder.glob("*.jsonl"))
    require(bool(files), f"{folder} holds no *.jsonl files")
    return [(f.stem, f.read_text(encoding="utf-8")) for f in files]


def locate(data_dir: Path, task: str, which: str) -> Path | None:
    """The task's folder (or EWoK's zip, or reading's CSV) under DIR/{fast,full}_eval, or DIR itself when it
    is that set folder; None when absent (the suite skips it)."""
    official, per_set = FOLDERS[task]
    name = per_set.get(which)
    if name is None:
        return None
    base = Path(data_dir)
    if (base / f"{which}_eval").is_dir():
        base = base / f"{which}_eval"
    candidates = [base / name, base / f"{name}.zip"] if task == "ewok" else [base / name]
    if task == "reading":
        candidates = [base / name / "reading_data.csv"]
    return next((c for c in candidates if c.exists()), None)


def load_task(task: str, source: Path, dataset: str, full_sentence: bool = False, password: str | None = None,
              limit: int | None = None) -> TaskData:
    """Read one task from its folder (or EWoK's zip); `limit` keeps the first N lines of each file."""
    require(task in FOLDERS and task != "reading", f"unknown task {task!r}")
    members = zip_members(source, password) if source.suffix == ".zip" else folder_members(source)
    data = TaskData(task, FOLDERS[task][0], dataset, str(source))
    for stem, text in members:
        lines = [line for line in text.splitlines() if line.strip()]
        require(bool(lines), f"{source}: {stem}.jsonl is empty")
        for n, line in enumerate(lines[:limit] if limit else lines):
            try:
                data.items.append(decode(task, json.loads(line), stem, full_sentence))
            except (ValueError, KeyError, TypeError, AttributeError) as e:
                raise UserError(f"{source}: {stem}.jsonl line {n + 1} is not a {task} item ({type(e).__name__}: "
                                f"{e})") from None
    return data
