"""metrics.jsonl: one JSON object per line, written and read only through this module (the training loop,
resume, `bl2 report`, sweeps, benchmarks, experiments and tests all use it).

Every row has a `kind` and a wall-clock `time` (Unix seconds):
- `train`: one per log step: `step`, `epoch`, `lr`, `ce` (mean train CE over the steps since the last row),
  `kl` (distillation runs only: the reduced KL, same window), `grad_norm` (mean global gradient norm before
  clipping, same window; absent when grad_clip is 0), `tokens_per_s` (all ranks), `elapsed_s`,
  `tokens_seen` (optimizer steps x global batch_size x seq_len: the predicted positions so far) and `words_seen`
  (tokens_seen x the training split's words per token, rounded; absent when the DATA dir cannot tell);
- `val`: one per validation: `step`, `epoch`, `val_ce`, `val_ppl`, `best_val_ce`;
- `event`: `event` names it: `resume` (`step`, `checkpoint`), `diverged` (a loss or gradient norm was not
  finite: `step`, `reason`; the run stopped before that optimizer step), `stopped` (a hook ended the run early:
  `step`, `reason`), `done` (`step`, `best_step`, `best_val_ce`, `train_s`, `stopped`, `tokens_seen`, `words_seen`, and
  the budget: `teacher_words`, `total_words` (own + teachers'; None when a teacher's is unknown),
  `epoch_equivalents` (total_words / corpus words); also run.json's `summary`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

KINDS = ("train", "val", "event")
FILENAME = "metrics.jsonl"


def append(path: str | Path, row: dict) -> dict:
    """Append one row (it must carry a known `kind`); returns the row as written (with `time`)."""
    assert row.get("kind") in KINDS, f"metrics row without a valid kind: {row}"
    row = row | {"time": round(time.time(), 3)}
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")
    return row


def read(path: str | Path, kind: str | None = None) -> list[dict]:
    """All rows (or those of one kind), in file order; [] when the file does not exist. A torn last line
    (a crash mid-write) is skipped; a file that is not text is a one-line UserError naming it."""
    from bl2.errors import UserError

    path = Path(path)
    if not path.is_file():
        return []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path} is not a metrics file (not UTF-8 text)") from None
    rows = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows if kind is None else of_kind(rows, kind)


def of_kind(rows: list[dict], kind: str) -> list[dict]:
    """The rows of one kind (train, val or event), in order."""
    return [r for r in rows if _kind(r) == kind]


def _kind(row: dict) -> str:
    """Rows written before `kind` existed: val rows have val_ce, events an `event` name, the rest are train."""
    if "kind" in row:
        return row["kind"]
    return "event" if "event" in row else "val" if "val_ce" in row else "train"


def events(path: str | Path, name: str) -> list[dict]:
    return [r for r in read(path, "event") if r.get("event") == name]


def truncate_after(path: str | Path, step: int) -> None:
    """Drop rows logged after `step` (a resumed run logs them again) and the `done` event."""
    path = Path(path)
    if not path.is_file():
        return
    keep = [r for r in read(path) if r.get("step", 0) <= step and r.get("event") != "done"]
    path.write_text("".join(json.dumps(r) + "\n" for r in keep))
