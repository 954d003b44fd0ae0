"""The BabyLM training-budget ledger. BabyLM caps training at 10 epochs over the word budget and counts the text
that helper models (teachers) were trained on toward it, so a student's budget is its own words seen plus every
teacher's (and, for a distilled teacher, its teachers' in turn).

A run records, when it starts, run.json `budget`: the corpus words (train + val words of the DATA dir: all the
text `bl2 prepare` read), the words per token of its training split and each teacher's words (from the
teacher's run.json, or `--teacher-words`); when it ends, run.json `summary` adds its own `words_seen`, the
`total_words` (own + teachers') and `epoch_equivalents` (total_words / corpus words). `bl2 budget` prints it.
"""

from __future__ import annotations

from pathlib import Path

from bl2.errors import require
from bl2.runs import record


def corpus_words(store) -> int | None:
    """Words of all the text `bl2 prepare` read from the corpus (train + val splits): one epoch's worth."""
    words = store.n_words("train") + store.n_words("val")
    return words or None


def budget_info(store, split: str = "train", teachers=(), teacher_words=None) -> dict:
    """run.json `budget` of a new run: its corpus, its words per token, its teachers' words."""
    return {"corpus_words": corpus_words(store), "train_words": store.n_words("train") or None,
            "words_per_token": store.words_per_token(split), "split": split,
            "teachers": teacher_budgets(list(teachers), teacher_words)}


def teacher_budgets(paths: list, teacher_words=None) -> list[dict]:
    """One record per teacher dir: `total_words` it was trained on (its teachers' included), and where that
    number comes from. `teacher_words`: one count for every teacher or one per teacher (it wins over run.json)."""
    from bl2.progress import console

    if teacher_words:
        require(len(teacher_words) in (1, len(paths)), f"--teacher-words: give one count or one per teacher "
                f"({len(paths)}), got {len(teacher_words)}")
        counts = list(teacher_words) * (len(paths) if len(teacher_words) == 1 else 1)
        return [{"path": str(p), "words_seen": n, "total_words": n, "source": "--teacher-words"}
                for p, n in zip(paths, counts)]
    out = []
    for p in paths:
        rec = recorded_words(p) or {"words_seen": None, "total_words": None, "source": "unknown"}
        if rec["total_words"] is None:
            console.print(f"[yellow]warning:[/] the training words of teacher {p} are unknown (no bl2 run.json that "
                          "records them): the budget ledger is incomplete; pass --teacher-words N")
        out.append({"path": str(p)} | rec)
    return out


def recorded_words(run_dir) -> dict | None:
    """What a bl2 run dir says about the words it was trained on: its own `words_seen` and `total_words` (with
    its teachers'); None when it is not a bl2 run dir. Runs older than these fields are counted from their
    metrics and config (the words of their teachers, if any, then stay unknown)."""
    doc = record.find(run_dir)
    if doc is None:
        return None
    summary = doc.get("summary") or {}
    if summary.get("words_seen") is not None:
        where = f"{record.path_of(run_dir)} summary"
        return {"words_seen": count(summary["words_seen"], f"{where}.words_seen"),
                "total_words": count(summary.get("total_words"), f"{where}.total_words"), "source": "run.json"}
    own = words_from_metrics(run_dir, doc)
    teachers = (doc.get("budget") or {}).get("teachers")
    distilled = str(doc.get("identity", {}).get("command", "")).startswith("distill")
    upstream = None if distilled and teachers is None else teachers_total(teachers)
    total = None if own is None or upstream is None else own + upstream
    return {"words_seen": own, "total_words": total, "source": "metrics.jsonl (run in progress or older bl2)"}


def count(value, where: str) -> int | None:
    """A recorded word count: a whole non-negative number, or None; anything else is a one-line error naming
    the record (a hand-edited or damaged run.json)."""
    if value is None:
        return None
    require(isinstance(value, int | float) and not isinstance(value, bool) and value >= 0 and value == int(value),
            f"{where} is not a word count: {value!r}")
    return int(value)


def words_from_metrics(run_dir, doc: dict) -> int | None:
    """Words seen by the last logged step: its `words_seen`, or steps x batch x seq_len x words per token."""
    from bl2.runs import metrics

    rows = metrics.read(Path(run_dir) / metrics.FILENAME, "train")
    if not rows:
        return None
    if rows[-1].get("words_seen") is not None:
        return int(rows[-1]["words_seen"])
    cfg = doc.get("config") or {}
    wpt = (doc.get("budget") or {}).get("words_per_token") or data_words_per_token(doc)
    if not (wpt and cfg.get("batch_size") and cfg.get("seq_len")):
        return None
    return round(rows[-1]["step"] * cfg["batch_size"] * cfg["seq_len"] * wpt)


def data_words_per_token(doc: dict) -> float | None:
    from bl2.data.store import TokenStore
    from bl2.errors import UserError

    data_dir = (doc.get("identity", {}).get("data") or {}).get("dir")
    try:
        return TokenStore(data_dir).words_per_token("train") if data_dir else None
    except UserError:
        return None


def teachers_total(teachers) -> int | None:
    """Sum of the teachers' total words; None when any is unknown."""
    totals = [count(t.get("total_words"), f"the teacher record {t.get('path')}") for t in teachers or []]
    return None if any(t is None for t in totals) else sum(totals)


def run_summary(summary: dict, seen: dict, run_dir) -> dict:
    """The end-of-run summary with words: own words seen, total with the teachers', epoch-equivalents."""
    budget = record.read(run_dir).get("budget") or {}
    out = summary | seen
    teachers = teachers_total(budget.get("teachers"))
    if seen.get("words_seen") is not None:
        total = None if teachers is None else seen["words_seen"] + teachers
        corpus = budget.get("corpus_words")
        out |= {"teacher_words": teachers, "total_words": total,
                "epoch_equivalents": None if total is None or not corpus else total / corpus}
    return out
