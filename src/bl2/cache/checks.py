"""Helpers shared by the cache checks (`bl2 cache verify` and its `--teachers` recomputation): tolerances, a
stable numpy logsumexp, and the PASS/FAIL/SKIP collector."""

from __future__ import annotations

import numpy as np

# fp16 stores a value with relative error <= 2^-11; recomputation may also see float noise from batching.
REL_TOL, ABS_TOL = 2e-3, 2e-3
SAMPLE_MATCH = 0.99  # fraction of positions whose draws must reproduce exactly (CPU batching can flip a rare draw)


def logsumexp(x: np.ndarray) -> np.ndarray:
    """log(sum(exp(x))) over the last axis, stably."""
    top = x.max(-1, keepdims=True)
    return (top + np.log(np.exp(x - top).sum(-1, keepdims=True)))[..., 0]


class Checks:
    """Collects failures per check name; `report` prints one line per check."""

    def __init__(self):
        self.results: dict[str, list[str]] = {}
        self.skipped: dict[str, str] = {}
        self.details: dict[str, str] = {}

    def check(self, name: str, ok: bool, failure: str = "") -> None:
        self.results.setdefault(name, [])
        if not ok:
            self.results[name].append(failure)

    def skip(self, name: str, why: str) -> None:
        self.skipped[name] = why

    def report(self, say) -> bool:
        for name, failures in self.results.items():
            if failures:
                more = f" (+{len(failures) - 1} more)" if len(failures) > 1 else ""
                say(f"FAIL  {name}: {failures[0]}{more}")
            elif name in self.skipped:  # passed on what could be read, but data it covers is missing: not a pass
                continue
            else:
                say(f"PASS  {name}" + (f": {self.details[name]}" if name in self.details else ""))
        for name, why in self.skipped.items():
            say(f"SKIP  {name}: {why}")
        return not any(self.results.values())
