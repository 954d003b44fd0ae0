"""`bl2 budget RUN [--cap-epochs N]`: the BabyLM training-budget ledger of a run dir. BabyLM allows at most 10
epochs over the word budget and counts the text that helper models (teachers) were trained on, so the ledger
lists the words each teacher was trained on (its own teachers included) and the run's own words seen, and
expresses the total in epoch-equivalents of the corpus (train + val words of the DATA dir, or --corpus-words).

What the run recorded is used (run.json `budget` and `summary`, see runs/ledger.py); a run still in progress
is counted from its metrics, and a distilled run older than the ledger from its teachers' run dirs now.
"""

from __future__ import annotations

from pathlib import Path

from bl2.errors import require
from bl2.runs import record
from bl2.runs.ledger import count, recorded_words, teacher_budgets


def _teachers_of(doc: dict) -> list[str]:
    """Teacher dirs of a distilled run: its recorded paths (identities hold only the weights' hashes)."""
    recorded = [t.get("path") for t in (doc.get("budget") or {}).get("teachers") or []]
    return [p for p in recorded or (doc.get("paths") or {}).get("teachers") or [] if p]


def _unknown_teachers(doc: dict) -> list[dict]:
    """A distilled run older than the budget record whose teacher dirs are not recorded: its teachers still
    count, as unknowns (one per teacher its identity names), so the total is a lower bound and says so."""
    from bl2.progress import console

    ident = doc.get("identity") or {}
    if not str(ident.get("command", "")).startswith("distill"):
        return []
    shas = (ident.get("cache") or {}).get("teacher_sha256") or ident.get("teachers") or [None]
    console.print("[yellow]warning:[/] this distilled run does not record its teachers' dirs or words (a run older "
                  "than the budget record): they are counted as unknown")
    return [{"path": f"unknown (weights {str(sha)[:12]})" if sha else "unknown", "total_words": None,
             "source": "unknown"} for sha in shas]


def _corpus_words(doc: dict) -> int | None:
    from bl2.data.store import TokenStore
    from bl2.errors import UserError
    from bl2.runs.ledger import corpus_words

    data_dir = (doc.get("paths") or {}).get("data") or (doc.get("identity", {}).get("data") or {}).get("dir")
    try:
        return corpus_words(TokenStore(data_dir)) if data_dir else None
    except UserError:
        return None


def ledger(run_dir, corpus_words: int | None = None) -> dict:
    """Rows (each teacher, then the run itself) with words and epoch-equivalents, and the total."""
    run_dir = Path(run_dir)
    doc = record.read(run_dir)
    budget = doc.get("budget")
    teachers = budget["teachers"] if budget is not None else teacher_budgets(_teachers_of(doc))
    if budget is None and not teachers:
        teachers = _unknown_teachers(doc)
    where = f"{record.path_of(run_dir)} budget"
    corpus = corpus_words or count((budget or {}).get("corpus_words"), f"{where}.corpus_words") or _corpus_words(doc)
    own = recorded_words(run_dir) or {}
    rows = [{"model": f"teacher {i + 1}", "path": t["path"], "words": count(t.get("total_words"), f"{where}.teachers"),
             "source": t.get("source")} for i, t in enumerate(teachers)]
    rows.append({"model": "this run", "path": str(run_dir), "words": own.get("words_seen"),
                 "source": own.get("source")})
    for row in rows:
        row["epochs"] = row["words"] / corpus if corpus and row["words"] is not None else None
    known = sum(r["words"] for r in rows if r["words"] is not None)
    complete = all(r["words"] is not None for r in rows)
    return {"run": str(run_dir), "corpus_words": corpus, "rows": rows, "total_words": known, "complete": complete,
            "epoch_equivalents": known / corpus if corpus else None}


def over_cap(led: dict, cap: float | None) -> bool:
    """True when the (known part of the) total exceeds `cap` epochs: a lower bound is already over."""
    if cap is None:
        return False
    require(led["corpus_words"], "the corpus size is unknown (the run's DATA dir is gone): pass --corpus-words N")
    return led["epoch_equivalents"] > cap


def print_ledger(led: dict, cap: float | None) -> None:
    from rich.table import Table

    from bl2.progress import console

    def fmt(x, spec=","):
        return "unknown" if x is None else format(x, spec)

    table = Table(title=f"BabyLM budget of {led['run']} (corpus: {fmt(led['corpus_words'])} words = 1 epoch)")
    for col in ("model", "path", "words", "epochs", "source"):
        table.add_column(col, justify="right" if col in ("words", "epochs") else "left",
                         overflow="fold" if col == "path" else "ellipsis")
    for r in led["rows"]:
        table.add_row(r["model"], r["path"], fmt(r["words"]), fmt(r["epochs"], ".2f"), r["source"] or "")
    table.add_section()
    bound = "" if led["complete"] else ">= "
    table.add_row("[bold]total", "", f"[bold]{bound}{led['total_words']:,}", f"[bold]{bound}"
                  f"{fmt(led['epoch_equivalents'], '.2f')}", "")
    console.print(table)
    if not led["complete"]:
        console.print("[yellow]incomplete:[/] some teachers' words are unknown; the total is a lower bound "
                      "(`bl2 distill --teacher-words N` records them)")
    if cap is not None:
        verdict = "[red]OVER[/]" if over_cap(led, cap) else "within"
        console.print(f"cap {cap:g} epochs ({cap * led['corpus_words']:,.0f} words): {verdict}")


def budget(run_dir, cap: float | None = None, corpus_words: int | None = None) -> bool:
    """Print the ledger; returns False when the run is over `cap` epoch-equivalents."""
    require(cap is None or cap > 0, f"--cap-epochs must be > 0, got {cap}")
    led = ledger(run_dir, corpus_words)
    print_ledger(led, cap)
    return not over_cap(led, cap)
