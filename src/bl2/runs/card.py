"""Model cards. Every final run dir gets a README.md in the Hugging Face convention: a YAML header (library name,
tags, a `license` field left for the user: a license set there survives every rewrite) and a body made from
what the run dir records: architecture (config.json), data and words seen, teachers and cache for students,
the BabyLM budget, hyperparameters, validation, word-count checkpoints, and evaluation results.

Evaluation results reach the card through RUN/evals.json: `bl2 eval blimp|loss|zero-shot ... --out FILE` records
each evaluated bl2 run dir's results there (`record_blimp`, `record_loss`, `record_zero_shot`) and rewrites its
card; the card is also rewritten whenever the run saves its final model (a resume keeps evals.json).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from bl2.runs import record
from bl2.runs.marks import mark_dirs
from bl2.storage import write_text_atomic

CARD = "README.md"
EVALS = "evals.json"
LICENSE_HINT = "  # choose a license before publishing (e.g. apache-2.0)"
CONFIG_ROWS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
               "vocab_size", "max_position_embeddings", "tie_word_embeddings")


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def existing_license(run_dir: Path) -> str | None:
    """The license the user set in the card's YAML header, if any."""
    import yaml

    path = Path(run_dir) / CARD
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    if not text.startswith("---\n") or "\n---" not in text[4:]:
        return None
    try:
        header = yaml.safe_load(text[4 : text.index("\n---", 4)]) or {}
    except yaml.YAMLError:
        return None
    return header.get("license") if isinstance(header, dict) and header.get("license") else None


def shown(run_dir: Path, location) -> str | None:
    """A location as a card or evals.json shows it: relative to the run dir (a card is published with the model,
    so it must not carry the author's absolute local paths); a URL as it is; None stays None."""
    import os

    if location is None or location == "None":
        return None
    text = str(location)
    if "://" in text:
        return text
    path = Path(text)
    if not path.is_absolute() and not path.exists():
        return text  # already relative (to the run dir), or a name
    try:
        return os.path.relpath(path.resolve(), Path(run_dir).resolve())
    except ValueError:  # another drive (Windows): the name alone
        return path.name


def _fmt(n) -> str:
    if n is None:
        return "unknown"
    return f"{n:,}" if isinstance(n, int) else f"{n:,.4g}"


def header(doc: dict, license_: str | None) -> list[str]:
    student = str(doc.get("identity", {}).get("command", "")).startswith("distill")
    tags = ["babylm", "bl2", "llama"] + (["knowledge-distillation"] if student else [])
    return (["---", "library_name: transformers", f"license: {license_}" if license_ else "license:" + LICENSE_HINT,
             "language:", "- en", "pipeline_tag: text-generation", "tags:"] + [f"- {t}" for t in tags] + ["---", ""])


def architecture(run_dir: Path, doc: dict) -> list[str]:
    config = _json(run_dir / "config.json")
    params = doc.get("n_params")
    lines = ["## Architecture", "", f"`{' / '.join(config.get('architectures', ['LlamaForCausalLM']))}`, bl2 preset "
             f"`{doc.get('config', {}).get('preset')}`" + (f", {params / 1e6:.2f}M parameters" if params else "") + ".",
             "", "| field | value |", "|---|---|"]
    return lines + [f"| {k} | {config[k]} |" for k in CONFIG_ROWS if k in config] + [""]


def data_section(run_dir: Path, doc: dict, summary: dict) -> list[str]:
    ident, budget = doc.get("identity", {}), doc.get("budget") or {}
    marks = [d.name for d in mark_dirs(run_dir)]
    lines = ["## Data and words seen", "",
             f"- DATA dir: `{shown(run_dir, (doc.get('paths') or {}).get('data'))}` (tokenizer sha256 "
             f"`{str((ident.get('data') or {}).get('tokenizer_sha256'))[:12]}`)",
             f"- corpus words (train + val: one epoch of the budget): {_fmt(budget.get('corpus_words'))}; words per "
             f"token of the {budget.get('split', 'train')} split: {_fmt(budget.get('words_per_token'))}",
             f"- tokens seen: {_fmt(summary.get('tokens_seen'))}; words seen: {_fmt(summary.get('words_seen'))} "
             "(counted with repetition over epochs, as BabyLM does)",
             "- word-count checkpoints (`word-checkpoints/`, one Hugging Face revision each): "
             + (", ".join(f"`{m}`" for m in marks) if marks else "none")]
    return lines + [""]


def teachers_section(run_dir: Path, doc: dict) -> list[str]:
    ident, cfg = doc.get("identity", {}), doc.get("config", {})
    if not str(ident.get("command", "")).startswith("distill"):
        return []
    records = (doc.get("budget") or {}).get("teachers", [])  # path + words, in the teachers' order
    lines = ["## Teachers", "", f"Loss: {cfg.get('alpha')} x CE + (1 - {cfg.get('alpha')}) x T^2 x KL(teachers || "
             f"student), T = {cfg.get('temperature')}, KL reduction `{cfg.get('kl_reduction')}`.", ""]
    cache = ident.get("cache")
    if cache:
        lines += [f"Soft targets from the bl2 cache `{shown(run_dir, (doc.get('paths') or {}).get('cache'))}`: mode "
                  f"`{cache.get('mode')}`"
                  + (f", k = {cache.get('k')}" if cache.get("mode") == "topk" else "")
                  + f", ensemble `{cache.get('ensemble')}`, {_fmt(cache.get('n_windows'))} windows of "
                  f"{cache.get('seq_len')} tokens; the teachers were never loaded during training.", ""]
        shas = cache.get("teacher_sha256") or []
    else:
        lines += [f"Online distillation: the teachers ran live (ensemble `{ident.get('ensemble')}`).", ""]
        shas = ident.get("teachers") or []  # identities hold the weights' sha256; paths are in budget / paths
    lines += ["| teacher | weights sha256 | words trained on |", "|---|---|---|"]
    for i, sha in enumerate(shas):
        rec = records[i] if i < len(records) else {}
        lines.append(f"| `{shown(run_dir, rec.get('path'))}` | `{str(sha)[:12]}` | {_fmt(rec.get('total_words'))} |")
    return lines + [""]


def budget_section(summary: dict) -> list[str]:
    if summary.get("words_seen") is None:
        return []
    eq = summary.get("epoch_equivalents")
    total = (f"{_fmt(summary.get('total_words'))} words = {eq:.2f} epoch-equivalents of the corpus"
             if eq is not None else "unknown (a teacher's training words are not recorded)")
    return ["## Training budget (BabyLM)", "", f"This model's words: {_fmt(summary.get('words_seen'))}; its teachers': "
            f"{_fmt(summary.get('teacher_words')) if summary.get('teacher_words') is not None else 'unknown'}; "
            f"total: {total}. BabyLM caps training at 10 epochs and counts teachers' training text "
            "(`bl2 budget RUN --cap-epochs 10`).", ""]


def hyperparameters(doc: dict, summary: dict) -> list[str]:
    cfg = doc.get("config", {})
    lines = ["## Training", ""]
    if summary.get("best_val_ce") is not None:
        lines += [f"Final weights = the best validation CE, {summary['best_val_ce']:.4f} at step "
                  f"{summary.get('best_step')} of {summary.get('step')}"
                  + (f" (stopped early: {summary['stopped']})" if summary.get("stopped") else "") + ".", ""]
    lines += ["| hyperparameter | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in cfg.items() if v is not None]
    prov = doc.get("provenance", {})
    return lines + ["", f"Trained with bl2 {prov.get('bl2_version')} (git `{str(prov.get('git_sha'))[:12]}`), torch "
                    f"{prov.get('torch')}, transformers {prov.get('transformers')}, on {prov.get('device')}, "
                    f"started {doc.get('started')}.", ""]


def evaluation(run_dir: Path) -> list[str]:
    evals = _json(run_dir / EVALS)
    if not evals:
        return ["## Evaluation", "", "Not evaluated yet: `bl2 eval blimp RUN --out FILE.json` or "
                "`bl2 eval loss RUN --data DATA --out FILE.json` record their results here.", ""]
    lines = ["## Evaluation", "", "| task | score | details | source |", "|---|---|---|---|"]
    for suite, r in evals.get("blimp", {}).items():
        limit = f", first {r['limit']} pairs per subtask" if r.get("limit") else ""
        lines.append(f"| {r.get('label') or 'BLiMP'} {suite} | {100 * r['score']:.1f} % | {r['n_subtasks']} subtasks, "
                     f"{r['n_pairs']:,} "
                     f"pairs, {r.get('ties', 0)} ties counted correct (BabyLM 2024 rule){limit} | "
                     f"`{shown(run_dir, r['file'])}` {r['date']} |")
    for split, r in evals.get("loss", {}).items():
        lines.append(f"| {split} loss | {r['ce']:.4f} nats/token (ppl {r['ppl']:.2f}) | {r['n_tokens']:,} tokens of "
                     f"`{shown(run_dir, r['data_dir'])}` | `{shown(run_dir, r['file'])}` {r['date']} |")
    lines += zero_shot_rows(evals.get("zero_shot", {}))
    return lines + [""]


def zero_shot_rows(entries: dict) -> list[str]:
    """A row per task of each `bl2 eval zero-shot` set recorded (official 2025 rules), then the macro-average."""
    rows = []
    for which, r in entries.items():
        limit = f", first {r['limit']} items per file" if r.get("limit") else ""
        for task, t in r["tasks"].items():
            value = f"{t['score']:.3f} rho" if t["metric"] == "spearman_rho" else f"{t['score']:.2f} %"
            rows.append(f"| {task} ({which} set) | {value} | {t['n_items']:,} items, {t['ties']} ties; BabyLM 2025 "
                        f"rules{limit} | `{r['file']}` {r['date']} |")
        if r.get("macro") is not None:
            rows.append(f"| BabyLM macro ({which} set) | {r['macro']:.2f} % | mean of {', '.join(r['macro_tasks'])} "
                        f"| `{r['file']}` {r['date']} |")
    return rows


def usage(run_dir: Path) -> list[str]:
    return ["## Usage", "", "```python", "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
            f'model = AutoModelForCausalLM.from_pretrained("{run_dir.name}")',
            f'tokenizer = AutoTokenizer.from_pretrained("{run_dir.name}")', "```", "",
            "Fine-tuning (`AutoModelForSequenceClassification`): the pad token is `<pad>` (id 0, set in config.json) "
            "and padding is on the right (tokenizer_config.json), as the BabyLM 2025 pipeline pads by default.", ""]


def card_text(run_dir) -> str:
    run_dir = Path(run_dir)
    doc = record.read(run_dir)
    summary = doc.get("summary") or {}
    body = ["<!-- Written by bl2 from this run dir's records; rewritten when the run saves its final model and by "
            "`bl2 eval ... --out`. The license set in the header is kept. -->", "", f"# {run_dir.resolve().name}", "",
            "A small Llama language model trained from scratch with bl2 (BabyLlama-2 style ensemble distillation "
            "with cached teacher soft targets) in the BabyLM setting.", ""]
    body += architecture(run_dir, doc) + data_section(run_dir, doc, summary) + teachers_section(run_dir, doc)
    body += budget_section(summary) + hyperparameters(doc, summary) + evaluation(run_dir) + usage(run_dir)
    return "\n".join(header(doc, existing_license(run_dir)) + body)


def write_card(run_dir) -> Path:
    """(Re)write RUN/README.md from what the run dir records."""
    path = Path(run_dir) / CARD
    write_text_atomic(path, card_text(run_dir))
    return path


def record_eval(run_dir, task: str, key: str, entry: dict) -> None:
    """Store one result under evals.json[task][key] and rewrite the card."""
    path = Path(run_dir) / EVALS
    evals = _json(path)
    evals.setdefault(task, {})[key] = entry | {"date": datetime.now(UTC).isoformat(timespec="seconds")}
    write_text_atomic(path, json.dumps(evals, indent=2) + "\n")
    write_card(run_dir)


def blimp_entries(results, out=None, limit: int | None = None, label: str | None = None) -> list[tuple]:
    """(run dir, "blimp", suite, entry) of each evaluated bl2 run dir (a model or an ensemble member). `label`
    names pairs that are not BLiMP (the quickstart's built-in synthetic pairs) in evals.json and the card."""
    return [(r.model_dirs[0], "blimp", suite, {k: s.get(k) for k in ("score", "n_pairs", "n_subtasks", "ties")}
             | {"limit": limit, "file": shown(r.model_dirs[0], out)} | ({"label": label} if label else {}))
            for r in results if r.kind in ("model", "member") and record.is_run_dir(r.model_dirs[0])
            for suite, s in r.suites.items()]


def loss_entries(report: dict, out=None) -> list[tuple]:
    """(run dir, "loss", split, entry) of each evaluated bl2 run dir: its CE and perplexity on the split."""
    return [(name, "loss", report["split"], {"ce": report["results"][name]["ce"], "ppl": report["results"][name]["ppl"],
             "n_tokens": report["n_tokens"], "data_dir": shown(name, report["data_dir"]),
             "file": shown(name, out)})
            for name in report["models"] if record.is_run_dir(name)]


def record_entries(entries: list[tuple]) -> list[str]:
    """`bl2 eval ... --out`: each entry into its run dir's evals.json and card."""
    done = []
    for run_dir, task, key, entry in entries:
        record_eval(run_dir, task, key, entry)
        done += [] if run_dir in done else [run_dir]
    return _told(done)


def record_blimp(results, out, limit: int | None = None, label: str | None = None) -> list[str]:
    """`bl2 eval blimp --out`: each evaluated bl2 run dir (a model or an ensemble member) gets its suite scores."""
    return record_entries(blimp_entries(results, out, limit, label))


def zero_shot_entries(doc: dict, out=None) -> list[tuple]:
    """(run dir, "zero_shot", set, entry) of each evaluated bl2 run dir: its task scores (one entry per set)."""
    entries = []
    for system in doc["systems"]:
        if system["kind"] in ("model", "member") and record.is_run_dir(system["model_dirs"][0]):
            tasks = {t: {k: r[k] for k in ("score", "metric", "n_items", "ties")} for t, r in system["tasks"].items()}
            entries.append((system["model_dirs"][0], "zero_shot", doc["settings"]["which"],
                            {"tasks": tasks, "macro": system["macro_average"], "macro_tasks": system["macro_tasks"],
                             "limit": doc["settings"]["limit"], "file": out and Path(out).name}))
    return entries


def record_zero_shot(doc: dict, out) -> list[str]:
    """`bl2 eval zero-shot --out`: each evaluated bl2 run dir gets its task scores (one entry per set)."""
    return record_entries(zero_shot_entries(doc, out))


def record_loss(report: dict, out) -> list[str]:
    """`bl2 eval loss --out`: each evaluated bl2 run dir gets its CE and perplexity on the split."""
    return record_entries(loss_entries(report, out))


def _told(dirs: list[str]) -> list[str]:
    from bl2.progress import console

    for d in dirs:
        console.print(f"results recorded in {Path(d) / EVALS} and the model card {Path(d) / CARD}")
    return dirs
