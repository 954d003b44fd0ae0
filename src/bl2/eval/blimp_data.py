"""Find and load BLiMP-style minimal-pair suites (jsonl files with `sentence_good` / `sentence_bad`).

Layouts accepted for a data dir:
- the BabyLM `evaluation_data` layout: `DIR/blimp_filtered/*.jsonl` (suite `filtered`) and
  `DIR/supplement_filtered/*.jsonl` (suite `supplement`);
- a folder that itself holds `*.jsonl` files (e.g. the original BLiMP, 67 x 1000): it is one filtered-style
  suite named after the folder; `--suite filtered` and `--suite all` score it, `--suite supplement` is refused.
Subtask name = file stem; a pair's index = its 0-based line index in the file (the BabyLM prediction ids).
`index_sentences` maps every pair onto a list of distinct sentences, so each sentence is scored once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bl2.errors import UserError, require

SUITE_CHOICES = ("filtered", "supplement", "all")
SUITE_FOLDERS = {"filtered": "blimp_filtered", "supplement": "supplement_filtered"}


@dataclass(frozen=True)
class Pair:
    """One minimal pair; `index` is its line index in the subtask file."""

    index: int
    good: str
    bad: str


@dataclass
class Suite:
    """A named set of subtasks (file stem -> pairs, in file order), e.g. `blimp_filtered`."""

    name: str
    folder: Path
    subtasks: dict[str, list[Pair]] = field(default_factory=dict)

    @property
    def n_pairs(self) -> int:
        return sum(len(p) for p in self.subtasks.values())


def suite_folders(data_dir: Path, suite: str) -> list[tuple[str, Path]]:
    """(suite name, folder) for each suite `--suite` asks for, following the layout rules above."""
    require(suite in SUITE_CHOICES, f"unknown suite {suite!r}; choose one of {', '.join(SUITE_CHOICES)}")
    data_dir = Path(data_dir)
    require(data_dir.is_dir(), f"BLiMP data dir not found: {data_dir}")
    if any(data_dir.glob("*.jsonl")):
        require(suite != "supplement", f"{data_dir} holds *.jsonl files itself, so it is one filtered-style suite; "
                "--suite supplement needs the evaluation_data layout (DIR/supplement_filtered/*.jsonl)")
        return [(data_dir.resolve().name, data_dir)]
    wanted = ["filtered", "supplement"] if suite == "all" else [suite]
    out = []
    for key in wanted:
        folder = data_dir / SUITE_FOLDERS[key]
        require(folder.is_dir(), f"suite folder not found: {folder} (expected DIR/{SUITE_FOLDERS[key]}/*.jsonl, "
                "or a DIR that holds *.jsonl files itself)")
        out.append((SUITE_FOLDERS[key], folder))
    return out


def parse_line(line: str, path: Path, lineno: int) -> Pair:
    """One jsonl line -> Pair; any defect names the file and its 1-based line number."""
    where = f"{path}:{lineno + 1}"
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise UserError(f"{where}: malformed JSON ({e.msg})") from None
    require(isinstance(obj, dict), f"{where}: expected a JSON object")
    for key in ("sentence_good", "sentence_bad"):
        require(isinstance(obj.get(key), str), f"{where}: missing or non-string {key!r}")
    return Pair(lineno, obj["sentence_good"], obj["sentence_bad"])


def read_subtask(path: Path, limit: int | None = None) -> list[Pair]:
    """Pairs of one jsonl file, in order; blank lines are skipped (they keep their line index)."""
    pairs: list[Pair] = []
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text ({e.reason})") from None
    for lineno, line in enumerate(text.split("\n")):
        if limit is not None and len(pairs) >= limit:
            break
        if line.strip():
            pairs.append(parse_line(line, path, lineno))
    require(len(pairs) > 0, f"{path}: no pairs")
    return pairs


def load_suite(name: str, folder: Path, limit: int | None = None) -> Suite:
    """All `*.jsonl` files of `folder` (sorted by name), each cut to its first `limit` pairs."""
    require(limit is None or limit >= 1, f"--limit must be >= 1, got {limit}")
    files = sorted(Path(folder).glob("*.jsonl"))
    require(len(files) > 0, f"empty suite: no *.jsonl files in {folder}")
    return Suite(name, Path(folder), {f.stem: read_subtask(f, limit) for f in files})


def load_suites(data_dir: Path, suite: str = "all", limit: int | None = None) -> list[Suite]:
    return [load_suite(name, folder, limit) for name, folder in suite_folders(data_dir, suite)]


@dataclass
class SubtaskPairs:
    """A subtask's pairs with the column of each sentence in the score matrix."""

    suite: str
    name: str
    pairs: list
    good: np.ndarray
    bad: np.ndarray

    def correct(self, scores: np.ndarray) -> np.ndarray:
        """[K, n] bool: good >= bad (a tie counts as correct, as in lm-eval's argmax over [good, bad])."""
        return scores[:, self.good] >= scores[:, self.bad]

    def ties(self, scores: np.ndarray) -> np.ndarray:
        """[K, n] bool: equal log-probabilities. They count as correct (the BabyLM 2024 rule); the 2025 pipeline
        gives a tie to whichever sentence comes first, so a tie count shows how much either rule is worth."""
        return scores[:, self.good] == scores[:, self.bad]


def index_sentences(suites: list[Suite]) -> tuple[list[str], list[SubtaskPairs]]:
    """Distinct sentences (each scored once) and, per subtask, where its pairs' sentences sit."""
    column: dict[str, int] = {}
    subtasks = []
    for suite in suites:
        for name, pairs in suite.subtasks.items():
            good = [column.setdefault(p.good, len(column)) for p in pairs]
            bad = [column.setdefault(p.bad, len(column)) for p in pairs]
            subtasks.append(SubtaskPairs(suite.name, name, pairs, np.array(good), np.array(bad)))
    return list(column), subtasks
