"""`bl2 eval blimp`: BLiMP minimal-pair accuracy of a model dir or a direct ensemble, scored exactly as the
BabyLM 2024 pipeline (lm-evaluation-harness) does: each sentence is conditioned on a single BOS token, its
score is the summed log-probability of the tokens of `" " + sentence`, and a pair is correct when
score(good) >= score(bad): a tie counts as correct (the 2024 rule, kept as the default; the 2025 pipeline's
argmax gives a tie to the first sentence), and ties are counted per subtask. Subtask accuracy = mean over pairs;
suite score = unweighted mean over subtasks.

Speed: every distinct sentence is scored once, and a batch of sentences (in lexicographic token order) is
packed into prefix tries, so that each distinct prefix costs one position of one forward pass (a custom 4D
attention mask lets each node see only its ancestors). A model that cannot run that form (checked against
plain batching on a probe) gets length-sorted, right-padded batches instead. Log-probs are gathered with
torch ops, never a Python loop over tokens (blimp_scoring.py).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from bl2.errors import UserError, require
from bl2.eval.blimp_data import SubtaskPairs, index_sentences, load_suites
from bl2.eval.blimp_scoring import ENSEMBLE_RULE, packing_agrees, score_sentences
from bl2.progress import console
from bl2.storage import write_text_atomic

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model", "vocab.txt")
TIE_RULE = "a tie (equal log-probabilities) counts as correct (BabyLM 2024 / lm-eval); ties are counted per subtask"


# ----------------------------------------------------------------------------------------------- tokenizer
def check_model_dirs(model_dirs: list[Path]) -> None:
    """Cheap checks before anything heavy: each dir exists, is a model dir and has tokenizer files."""
    from bl2.model.io import read_config

    require(len(model_dirs) >= 1, "no model dirs given")
    for d in model_dirs:
        read_config(d)  # the dir exists and its config.json is a JSON object
        require(any((Path(d) / f).is_file() for f in TOKENIZER_FILES),
                f"{d} has no tokenizer ({' / '.join(TOKENIZER_FILES[:2])} missing)")


def load_tokenizer(model_dirs: list[Path]):
    """The (shared) tokenizer of the model dirs; it must define a BOS token, the one-token prefix."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(model_dirs[0]))
    except Exception as e:  # any failure to build the tokenizer is a defect of the user's dir
        raise UserError(f"cannot load the tokenizer of {model_dirs[0]}: {str(e).splitlines()[0]}") from None
    require(tok.bos_token_id is not None, f"the tokenizer of {model_dirs[0]} has no BOS token: BLiMP scoring "
            "conditions every sentence on exactly one BOS token (the BabyLM / lm-eval rule)")
    return tok


def encode_sentences(tok, sentences: list[str]) -> list[list[int]]:
    """Continuation tokens of each sentence: `" " + sentence`, no special tokens ("\\n" kept as is)."""
    if not sentences:
        return []
    return tok([" " + s for s in sentences], add_special_tokens=False)["input_ids"]


def max_positions(models) -> int | None:
    """Longest input every member accepts (None when a config does not say)."""
    limits = [getattr(m.config, "max_position_embeddings", None) for m in models]
    return None if any(n is None for n in limits) else min(int(n) for n in limits)


# ----------------------------------------------------------------------------------------------- results
@dataclass
class BlimpResult:
    """Accuracies of one scored system (a model, an ensemble member, or the ensemble)."""

    name: str
    kind: str  # "model" | "member" | "ensemble"
    model_dirs: list[str]
    suites: dict[str, dict] = field(default_factory=dict)  # suite -> {score, n_pairs, n_subtasks, subtasks}
    average: float | None = None  # mean of the suite scores when there are several


def system_names(model_dirs: list[Path], members: bool = True) -> list[tuple[str, str, list[str]]]:
    """(name, kind, dirs) of each row of the score matrix, in order: members (if asked), then the ensemble."""
    dirs = [str(d) for d in model_dirs]
    if len(dirs) == 1:
        return [(Path(dirs[0]).name or dirs[0], "model", dirs)]
    names = [f"m{i + 1}:{Path(d).name}" for i, d in enumerate(dirs)]
    rows = [(n, "member", [d]) for n, d in zip(names, dirs)] if members else []
    return rows + [("ensemble", "ensemble", dirs)]


def summarise(scores: np.ndarray, subtasks: list[SubtaskPairs], model_dirs: list[Path],
              members: bool = True) -> list[BlimpResult]:
    """Per-subtask accuracies, suite scores (unweighted means over subtasks) and their mean, per system."""
    results = []
    for k, (name, kind, dirs) in enumerate(system_names(model_dirs, members)):
        res = BlimpResult(name, kind, dirs)
        for st in subtasks:
            acc = float(st.correct(scores[k : k + 1]).mean())
            suite = res.suites.setdefault(st.suite, {"score": 0.0, "n_pairs": 0, "n_subtasks": 0, "subtasks": {}})
            suite["subtasks"][st.name] = {"acc": acc, "n": len(st.pairs), "ties": int(st.ties(scores[k : k + 1]).sum())}
        for suite in res.suites.values():
            accs = [s["acc"] for s in suite["subtasks"].values()]
            suite.update(score=float(np.mean(accs)), n_subtasks=len(accs),
                         n_pairs=sum(s["n"] for s in suite["subtasks"].values()),
                         ties=sum(s["ties"] for s in suite["subtasks"].values()))
        if len(res.suites) > 1:
            res.average = float(np.mean([s["score"] for s in res.suites.values()]))
        results.append(res)
    return results


# ----------------------------------------------------------------------------------------------- outputs
def check_output(path: Path | None, overwrite: bool) -> None:
    """Before any scoring: an existing file needs --overwrite, and the file must be writable."""
    from bl2.storage import require_writable_file

    if path is not None:
        require(overwrite or not Path(path).exists(), f"{path} exists; pass --overwrite to replace it")
        require_writable_file(path, "output file")


def sample_lines(scores: np.ndarray, subtasks: list[SubtaskPairs]) -> list[str]:
    """One JSON line per pair; logp_* are the headline system's (the ensemble's with several dirs)."""
    lines = []
    for st in subtasks:
        good, bad = scores[:, st.good], scores[:, st.bad]
        for j, p in enumerate(st.pairs):
            rec = {"suite": st.suite, "subtask": st.name, "index": p.index, "sentence_good": p.good,
                   "sentence_bad": p.bad, "logp_good": float(good[-1, j]), "logp_bad": float(bad[-1, j]),
                   "correct": bool(good[-1, j] >= bad[-1, j]), "tie": bool(good[-1, j] == bad[-1, j])}
            if len(scores) > 1:
                rec["members_logp_good"] = [float(x) for x in good[:-1, j]]
                rec["members_logp_bad"] = [float(x) for x in bad[:-1, j]]
            lines.append(json.dumps(rec, ensure_ascii=False))
    return lines


def results_json(results: list[BlimpResult], settings: dict, timing: dict, device: str) -> str:
    from bl2.runtime import provenance

    doc = {"settings": settings, "timing": timing, "provenance": provenance(device),
           "results": [r.__dict__ for r in results]}
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def print_table(results: list[BlimpResult]) -> None:
    """One table per suite: per-subtask accuracy (%) with a column per system, then the suite score
    (unweighted mean over subtasks); the mean of the suites last."""
    from rich.table import Table

    first = results[0]
    for suite_name, suite in first.suites.items():
        table = Table(title=f"BLiMP {suite_name}: accuracy (%)")
        table.add_column("subtask", overflow="fold")  # long names fold; the numbers never do
        table.add_column("n", justify="right", no_wrap=True)
        for r in results:
            table.add_column(r.name, justify="right", no_wrap=True, min_width=5)
        table.add_column("ties", justify="right", no_wrap=True)  # per system, counted correct

        def ties(get):
            return "/".join(str(get(r.suites[suite_name])["ties"]) for r in results)

        for st_name, st in suite["subtasks"].items():
            table.add_row(st_name, str(st["n"]),
                          *[f"{100 * r.suites[suite_name]['subtasks'][st_name]['acc']:.1f}" for r in results],
                          ties(lambda s: s["subtasks"][st_name]))
        table.add_section()
        table.add_row(f"[bold]{suite_name} (macro over {suite['n_subtasks']})[/]", str(suite["n_pairs"]),
                      *[f"[bold]{100 * r.suites[suite_name]['score']:.1f}[/]" for r in results], ties(lambda s: s))
        console.print(table)
    for r in results:
        scores = ", ".join(f"{name} {100 * s['score']:.1f}" for name, s in r.suites.items())
        average = "" if r.average is None else f", average {100 * r.average:.1f}"
        console.print(f"[bold]{r.name}[/]: {scores}{average}")


# ----------------------------------------------------------------------------------------------- entry point
def evaluate_blimp(model_dirs: list[Path], data_dir: Path, suite: str = "all", limit: int | None = None,
                   batch_size: int = 64, device: str = "cpu", out: Path | None = None,
                   log_samples: Path | None = None, overwrite: bool = False, members: bool = True,
                   progress: bool = True, show: bool = True, pack: bool = True) -> list[BlimpResult]:
    """Score the suites with the model (several dirs: each member, then the direct ensemble) and report.
    pack: share prefixes between sentences when the model passes the packing check (same scores, faster)."""
    from bl2.model.ensemble import Ensemble

    model_dirs = [Path(d) for d in model_dirs]
    require(batch_size >= 1, f"--batch-size must be >= 1, got {batch_size}")
    check_output(out, overwrite)
    check_output(log_samples, overwrite)
    check_model_dirs(model_dirs)
    suites = load_suites(data_dir, suite, limit)
    tok = load_tokenizer(model_dirs)
    sentences, subtasks = index_sentences(suites)
    token_lists = encode_sentences(tok, sentences)
    ensemble = Ensemble(model_dirs, device, ENSEMBLE_RULE)
    check_lengths(sentences, token_lists, max_positions(ensemble.models))
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.bos_token_id  # never scored: any id works
    if pack and not packing_agrees(ensemble, token_lists, tok.bos_token_id, pad):
        console.print("[yellow]warning:[/] prefix packing does not reproduce plain batching for this model "
                      "(custom 4D attention masks / position ids unsupported?); using plain batching")
        pack = False
    t0 = time.perf_counter()
    scores = score_sentences(ensemble, token_lists, tok.bos_token_id, pad, batch_size, members, progress, pack)
    score_s = time.perf_counter() - t0
    results = summarise(scores, subtasks, model_dirs, members)
    if show:
        print_table(results)
    if out is not None:
        settings = {"suite": suite, "data_dir": str(Path(data_dir).resolve()), "suites": [s.name for s in suites],
                    "limit": limit, "batch_size": batch_size, "device": device, "ensemble_rule": ENSEMBLE_RULE,
                    "prefix_token_id": tok.bos_token_id, "continuation": "' ' + sentence, no special tokens",
                    "tie_rule": TIE_RULE, "synthetic_suites": synthetic_suites(suites),
                    "batching": "prefix tries" if pack else "length-sorted, right-padded",
                    "date": datetime.now(UTC).isoformat(timespec="seconds")}
        write_text_atomic(out, results_json(results, settings, timing(score_s, len(sentences), subtasks), device))
    if log_samples is not None:
        write_text_atomic(log_samples, "\n".join(sample_lines(scores, subtasks)) + "\n")
    return results


def synthetic_suites(suites) -> list[str]:
    """Suites whose folder holds the built-in pairs' marker (bl2.data.sample.pairs): not BLiMP."""
    from bl2.data.sample.pairs import SYNTHETIC_MARK

    return [s.name for s in suites if (Path(s.folder) / SYNTHETIC_MARK).is_file()]


def timing(score_s: float, n_sentences: int, subtasks: list[SubtaskPairs]) -> dict:
    """Throughput of the scoring phase (model loading and data reading excluded)."""
    n_pairs = sum(len(st.pairs) for st in subtasks)
    return {"score_s": round(score_s, 3), "n_sentences": n_sentences, "n_pairs": n_pairs,
            "sentences_per_s": round(n_sentences / score_s, 1), "pairs_per_s": round(n_pairs / score_s, 1)}


def check_lengths(sentences: list[str], token_lists: list[list[int]], limit: int | None) -> None:
    """lm-eval cuts BOS+continuation to the last max_length+1 tokens and asserts the continuation fits in
    max_length; a longer sentence cannot be scored under the BOS rule, so it is refused, not mis-scored."""
    if limit is None:
        return
    for s, t in zip(sentences, token_lists):
        require(len(t) <= limit, f"sentence {s[:60]!r} has {len(t)} tokens, more than the model's "
                f"max_position_embeddings ({limit}); it cannot be scored after a BOS token")
