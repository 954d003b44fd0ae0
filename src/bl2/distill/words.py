"""Words seen by a training run and its word-count checkpoints (marks: bl2.runs.marks).

Every optimizer step consumes `batch_size x seq_len` predicted tokens (the global batch); words seen = tokens
seen x the words per token of the split the windows come from (`TokenStore.words_per_token`).

The training loop calls a `WordClock`: `seen(step)` for its metrics rows, `after_step(step, model)` once per
optimizer step (it saves a Hugging Face model dir, RUN/word-checkpoints/chck_1M/, for every mark the step
passes: the weights of that step, bit-exact again after a resume), and `finish(summary)` at the end (run.json's
`summary`, and a line saying which marks were written and which the run never reached). The marks do not change
the weights, so they are not part of a run's identity.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from bl2.runs.marks import MARKS_FILE, WORD_DIR, mark_name, parse_marks
from bl2.storage import write_text_atomic


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
        from bl2.runs import record
        from bl2.runs.ledger import run_summary

        out = run_summary(summary, self.seen(summary["step"]), self.run_dir)
        if self.writer:
            record.update(self.run_dir, summary={k: v for k, v in out.items() if k not in ("kind", "time")})
            self.say_marks(summary["step"])
        return out

    def say_marks(self, step: int) -> None:
        """Which marks the run wrote and which it never reached (a short run must not skip them silently)."""
        from bl2.progress import console

        if not self.marks:
            return
        words = self.words(step)
        written = [mark_name(m) for m in self.marks if m <= words]
        missed = [mark_name(m) for m in self.marks if m > words]
        console.print(f"word checkpoints: {len(written)} written" + (f" ({', '.join(written)})" if written else "")
                      + (f"; {len(missed)} not reached (the run ended at {round(words):,} words): "
                         + (", ".join(missed) if len(missed) <= 4 else f"{missed[0]} .. {missed[-1]}")
                         if missed else ""), soft_wrap=True)  # one line, whatever the terminal's width
