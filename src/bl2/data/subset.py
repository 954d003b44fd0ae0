"""Nested random subsets of a training split, for data-size scaling (the paper's Figure 3).

Lines of the train split (all files together) are visited in one random order fixed by the seed, and a subset
of N words is the shortest prefix of that order holding at least N words, kept in corpus order within each file.
The order does not depend on N, so with one seed every smaller subset lies inside every larger one. Only the
train split is cut: val and test stay whole, and `bl2 prepare` trains the tokenizer on the whole corpus as
without a subset, so every subset of a corpus gets the same tokenizer (identical tokenizer.json) and the
same validation windows: losses across subsets are comparable."""

from __future__ import annotations

import numpy as np

from bl2.errors import require


def nested_subset(files: list[tuple[str, list[str]]], max_words: int, seed: int = 0):
    """(files with only the chosen lines, record for the DATA dir's attrs)."""
    require(max_words >= 1, f"--max-words must be >= 1, got {max_words}")
    where = [(i, j) for i, (_, lines) in enumerate(files) for j in range(len(lines))]
    total = sum(len(line.split()) for _, lines in files for line in lines)
    require(max_words <= total, f"--max-words {max_words:,} is more than the {total:,} words of the train split")
    keep = [np.zeros(len(lines), dtype=bool) for _, lines in files]
    words = 0
    for k in np.random.default_rng(seed).permutation(len(where)):
        if words >= max_words:
            break
        i, j = where[k]
        keep[i][j] = True
        words += len(files[i][1][j].split())
    chosen = [(name, [line for line, k in zip(lines, mask) if k]) for (name, lines), mask in zip(files, keep)]
    return chosen, {"max_words": max_words, "seed": seed, "train_words": words, "of_train_words": total,
                    "train_lines": int(sum(m.sum() for m in keep))}
