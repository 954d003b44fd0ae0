"""The built-in sample corpus of `bl2 quickstart`: generated child-directed English and BLiMP-style minimal pairs.

Everything is produced by a small hand-written probabilistic grammar (`lexicon.py`, `grammar.py`, `texts.py`)
with Python's `random.Random` seeded from strings (stable across runs, platforms and Python versions): no
external text, no download.

- `write_sample_corpus` writes BabyLM-style files: `corpus/<source>.train` and `dev/<source>.dev` for three
  sources, `childes` (one child-directed utterance per line, CHILDES-style spaced punctuation), `gutenberg`
  (short stories, one per line) and `switchboard` ("A:\\t" / "B:\\t" dialogue turns).
- `write_sample_pairs` writes `<out>/blimp_filtered/<phenomenon>.jsonl` (BLiMP fields) for `PHENOMENA`.

Pair sentences are canonical BLiMP-formatted sentences ("The dogs are running."), which is exactly how training
sentences look after `bl2 prepare`'s cleaning (see `texts.py`). They are drawn from the grammar's held-out
(reserved) sentences, which no train or dev file of any seed or size contains; `exclude` removes more.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from pathlib import Path

from bl2.data.sample.pairs import PHENOMENA, write_pairs
from bl2.data.sample.texts import Sentence, Speaker, canonical, reserved, spaced

__all__ = ["PHENOMENA", "SOURCES", "read_sentences", "write_sample_corpus", "write_sample_pairs"]

# source -> share of the lines (a story line holds ~6 sentences, a dialogue line 1-2, a childes line one)
SOURCES: tuple[tuple[str, float], ...] = (("childes", .74), ("gutenberg", .04), ("switchboard", .22))
_SPEAKER = re.compile(r"^[AB]:\t")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def _ok(sentences: Iterable[Sentence]) -> list[Sentence]:
    """Drop any reserved sentence (the generator avoids them already; this is the single last check)."""
    return [(p, end) for p, end in sentences if not reserved(canonical(p.words, end))]


def source_lines(source: str, n: int, rng: random.Random) -> list[str]:
    """`n` lines of `source` ("childes", "gutenberg" or "switchboard")."""
    sp = Speaker(rng)
    lines: list[str] = []
    while len(lines) < n:
        if source == "childes":
            lines.extend(spaced(p.words, end) for p, end in _ok([sp.utterance()]))
        elif source == "gutenberg":
            story = _ok(sp.story())
            lines.append(" ".join(canonical(p.words, end) for p, end in story))
        else:
            turns: list[tuple[str, str]] = []
            for who, turn in sp.dialogue():
                text = " ".join(canonical(p.words, end) for p, end in _ok(turn))
                if turns and turns[-1][0] == who:  # one line per turn, even after a dropped sentence
                    turns[-1] = (who, f"{turns[-1][1]} {text}".strip())
                elif text:
                    turns.append((who, text))
            lines.extend(f"{who}:\t{text}" for who, text in turns[: n - len(lines)])
    return lines


def _split_counts(n: int) -> list[tuple[str, int]]:
    counts = [(name, round(n * share)) for name, share in SOURCES[:-1]]
    return counts + [(SOURCES[-1][0], max(0, n - sum(c for _, c in counts)))]


def write_sample_corpus(out_dir: Path, *, n_train_lines: int = 48_000, n_dev_lines: int = 4_800,
                        seed: int = 0) -> tuple[Path, Path]:
    """Write out_dir/corpus/<source>.train and out_dir/dev/<source>.dev; returns (corpus_dir, dev_dir).

    Line counts are totals over the sources (shares in SOURCES). Defaults: ~340k whitespace-separated words of
    train text (~300k once `bl2 prepare` has glued the childes punctuation) and ~34k of dev, generated in about a
    second. Same arguments, byte-identical files."""
    out_dir = Path(out_dir)
    dirs = {"train": out_dir / "corpus", "dev": out_dir / "dev"}
    for split, n in (("train", n_train_lines), ("dev", n_dev_lines)):
        dirs[split].mkdir(parents=True, exist_ok=True)
        for source, k in _split_counts(n):
            rng = random.Random(f"bl2-sample:{seed}:{split}:{source}")
            text = "".join(line + "\n" for line in source_lines(source, k, rng))
            (dirs[split] / f"{source}.{split}").write_text(text, encoding="utf-8", newline="\n")
    return dirs["train"], dirs["dev"]


def read_sentences(*folders: Path) -> set[str]:
    """Every sentence of the *.train / *.dev / *.txt files of `folders`, cleaned as `bl2 prepare` cleans them
    (per-source rule), speaker labels stripped: the canonical forms to pass as `exclude`."""
    from bl2.data.clean import clean_text

    out: set[str] = set()
    for folder in folders:
        for path in sorted(Path(folder).iterdir()):
            if path.suffix not in (".train", ".dev", ".txt"):
                continue
            for line in clean_text(path.stem, path.read_text(encoding="utf-8")).splitlines():
                out.update(s for s in _SENTENCE_END.split(_SPEAKER.sub("", line).strip()) if s)
    return out


def write_sample_pairs(out_dir: Path, *, n_pairs: int = 250, seed: int = 0, exclude: set[str] | None = None) -> Path:
    """Write out_dir/blimp_filtered/<phenomenon>.jsonl (n_pairs each); returns out_dir (for `--data-dir`).

    No pair sentence (good or bad) is in `exclude` (canonical sentences, e.g. `read_sentences(corpus, dev)`), nor
    in any text `write_sample_corpus` can write."""
    return write_pairs(Path(out_dir), n_pairs=n_pairs, seed=seed, exclude=set(exclude or ()))
