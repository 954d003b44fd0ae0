"""Words seen and word-count checkpoints (the BabyLM 2025/2026 conventions).

Every optimizer step consumes `batch_size x seq_len` predicted tokens (the global batch); words seen = tokens
seen x the words per token of the split the windows come from (`TokenStore.words_per_token`). BabyLM counts
words with repetition (a second epoch counts again) and asks for checkpoints every 1M words up to 10M, every
10M up to 100M and (tracks other than strict-small) every 100M up to 1000M, named `chck_1M`, ..., `chck_10M`,
`chck_20M`, ..., `chck_1000M`: the revision names of the 2025 evaluation pipeline (babylm/evaluation-pipeline-2025,
README "Submission Requirements" and eval_zero_shot_fast_all_revisions.sh). `--word-checkpoints babylm` is that
list; marks a run never reaches are simply not written.

The training loop calls a `WordClock`: `seen(step)` for its metrics rows, `after_step(step, model)` once per
optimizer step (it saves a Hugging Face model dir, RUN/word-checkpoints/chck_1M/, for every mark the step
passes: the weights of that step, bit-exact again after a resume), and `finish(summary)` at the end (run.json's
`summary`). The marks do not change the weights, so they are not part of a run's identity.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from bl2.errors import UserError, require
from bl2.storage import write_text_atomic

WORD_DIR = "word-checkpoints"
MARKS_FILE = "words.json"  # inside each mark dir: the step, tokens and words at which it was saved
UNITS = {"": 1, "K": 10**3, "M": 10**6}
BABYLM_MARKS = tuple([m * 10**6 for m in range(1, 10)] + [m * 10**6 for m in range(10, 101, 10)]
                     + [m * 10**6 for m in range(200, 1001, 100)])


def parse_count(text: str, what: str = "a word count") -> int:
    """'1M' -> 1000000, '500K' -> 500000, '2.5M' -> 2500000, '1234' -> 1234; UserError otherwise."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*", str(text))
    require(m is not None, f"{what}: expected a count like 1M, 500K or 1234, got {text!r}")
    value = float(m.group(1)) * UNITS[m.group(2).upper()]
    require(value >= 1 and value == int(value), f"{what}: {text!r} is not a positive whole number of words")
    return int(value)


def parse_marks(spec) -> tuple[int, ...]:
    """`babylm` or a list like `1M,2M,...` (a string or a YAML list) -> sorted distinct word counts."""
    if spec is None:
        return ()
    items = spec if isinstance(spec, (list, tuple)) else str(spec).split(",")
    items = [str(i).strip() for i in items if str(i).strip()]
    require(bool(items), "--word-checkpoints: give `babylm` or a list of word counts like 1M,2M,5M")
    if [i.lower() for i in items] == ["babylm"]:
        return BABYLM_MARKS
    return tuple(sorted({parse_count(i, "--word-checkpoints") for i in items}))


def mark_name(words: int) -> str:
    """chck_1M, chck_20M, chck_500K, chck_1500K, chck_1234: the pipeline's `chck_{N}M` where N is whole."""
    for unit in ("M", "K"):
        if words % UNITS[unit] == 0:
            return f"chck_{words // UNITS[unit]}{unit}"
    return f"chck_{words}"


def mark_dirs(run_dir: Path) -> list[Path]:
    """The finished word-count checkpoints of a run dir, in order of words."""
    root = Path(run_dir) / WORD_DIR
    dirs = [d for d in root.iterdir() if (d / MARKS_FILE).is_file()] if root.is_dir() else []
    return sorted(dirs, key=lambda d: json.loads((d / MARKS_FILE).read_text())["words"])


class WordClock:
    """Tokens and words consumed by a run, and the word-count checkpoints it owes."""

    def __init__(self, tokens_per_step: int, words_per_token: float | None, marks=(), run_dir: Path | None = None,
                 tokenizer_dir: Path | None = None, rank: int = 0):
        self.tokens_per_step, self.words_per_token = tokens_per_step, words_per_token
        self.marks = tuple(marks) if words_per_token else ()  # Job refuses marks without the ratio
        self.run_dir, self.tokenizer_dir, self.writer = run_dir, tokenizer_dir, rank == 0

    @classmethod
    def of(cls, job, run, rank: int = 0) -> WordClock:
        cfg = job.cfg
        return cls(cfg.batch_size * cfg.seq_len, job.words_per_token, parse_marks(cfg.word_checkpoints), run.path,
                   job.tokenizer_dir, rank)

    def words(self, step: int) -> float | None:
        return None if not self.words_per_token else step * self.tokens_per_step * self.words_per_token

    def seen(self, step: int) -> dict:
        """`tokens_seen` and `words_seen` after `step` optimizer steps (words when the ratio is known)."""
        words = self.words(step)
        return {"tokens_seen": step * self.tokens_per_step} | ({} if words is None else {"words_seen": round(words)})

    def after_step(self, step: int, model) -> None:
        """Save every mark that step `step` passes (several marks in one step get the same weights)."""
        if not self.marks or not self.writer:
            return
        before, now = self.words(step - 1), self.words(step)
        for mark in self.marks:
            if before < mark <= now:
                self.save(mark, step, model)

    def save(self, mark: int, step: int, model) -> Path:
        from bl2.model.io import save_model_dir
        from bl2.progress import console

        final = Path(self.run_dir) / WORD_DIR / mark_name(mark)
        tmp = final.with_name(final.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        save_model_dir(model, tmp, self.tokenizer_dir)
        marks = {"words": mark, "step": step} | self.seen(step)
        write_text_atomic(tmp / MARKS_FILE, json.dumps(marks, indent=2, default=str))
        if final.exists():  # a resumed run passes the mark again: the same step, the same weights
            shutil.rmtree(final)
        tmp.rename(final)
        console.print(f"word checkpoint {final.name}: step {step}, {round(self.words(step)):,} words seen -> {final}")
        return final

    def finish(self, summary: dict) -> dict:
        """Add words and tokens seen to the run's summary and record it in run.json (`summary`)."""
        from bl2.distill.ledger import run_summary

        out = run_summary(summary, self.seen(summary["step"]), self.run_dir)
        if self.writer:
            record_summary(self.run_dir, out)
        return out


def record_summary(run_dir: Path, summary: dict) -> None:
    """run.json is written when the run starts; its `summary` is added (or replaced) when it ends."""
    path = Path(run_dir) / "run.json"
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"cannot update {path}: {e}") from None
    summary = {k: v for k, v in summary.items() if k not in ("kind", "time")}
    write_text_atomic(path, json.dumps(doc | {"summary": summary}, indent=2, default=str))
