"""Word-count checkpoint marks (the BabyLM 2025/2026 conventions): their names, parsing, and the finished marks
of a run dir. Torch-free; the training loop's `WordClock` (distill/words.py) writes them.

BabyLM counts words with repetition (a second epoch counts again) and asks for checkpoints every 1M words up
to 10M, every 10M up to 100M and (tracks other than strict-small) every 100M up to 1000M, named `chck_1M`, ...,
`chck_10M`, `chck_20M`, ..., `chck_1000M`: the revision names of the 2025 evaluation pipeline
(babylm/evaluation-pipeline-2025, README "Submission Requirements" and eval_zero_shot_fast_all_revisions.sh).
`--word-checkpoints babylm` is that list. Each mark is a Hugging Face model dir RUN/word-checkpoints/chck_1M/
with `words.json` (its step, tokens and words).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from bl2.errors import UserError, require

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


def mark_info(mark_dir: Path) -> dict:
    """words.json of a finished mark dir; a one-line UserError naming it when unreadable."""
    path = Path(mark_dir) / MARKS_FILE
    try:
        info = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise UserError(f"{path} is unreadable ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    require(isinstance(info, dict) and isinstance(info.get("words"), int), f"{path} has no word count")
    return info


def mark_dirs(run_dir: Path) -> list[Path]:
    """The finished word-count checkpoints of a run dir, in order of words."""
    root = Path(run_dir) / WORD_DIR
    dirs = [d for d in root.iterdir() if (d / MARKS_FILE).is_file()] if root.is_dir() else []
    return sorted(dirs, key=lambda d: mark_info(d)["words"])
