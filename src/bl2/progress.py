"""Consoles and progress bars shared by every long job.

Results and messages go to `console` (stdout); progress goes to `err_console` (stderr), so `bl2 eval loss >
results.txt` keeps its results clean. On a terminal a progress bar shows its rate and ETA; when stderr is not a
terminal (`> log 2>&1`, nohup, SLURM) a bar would print nothing until it ends, so `make_progress` prints one
plain line every `$BL2_PROGRESS_EVERY_S` seconds (default 30) instead: done/total, rate and ETA. Under torchrun
only rank 0's consoles print (read from torchrun's environment, so no torch import is needed here)."""

from __future__ import annotations

import os
import sys
import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


def env_rank() -> int:
    """This process's rank under torchrun (0 without it)."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def log_width(stream) -> int | None:
    """None (the terminal's width) on a terminal; otherwise wide enough that tables in logs and pipes are not cut
    or wrapped at rich's default of 80 columns ($COLUMNS still decides when set)."""
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    return None if tty or os.environ.get("COLUMNS") else 200


console = Console(highlight=False, quiet=env_rank() != 0, width=log_width(sys.stdout))
err_console = Console(stderr=True, highlight=False, quiet=env_rank() != 0, width=log_width(sys.stderr))


def set_quiet(quiet: bool) -> None:
    """Silence (or restore) both consoles: the ranks other than 0 of a multi-process run."""
    console.quiet = err_console.quiet = quiet


class RateColumn(ProgressColumn):
    """Items per second, named by the job's unit (tokens, windows, pairs); seconds per item when slower than one
    a second (a slow job never reads "0 steps/s")."""

    def __init__(self, unit: str):
        super().__init__()
        self.unit = unit

    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else rate_text(speed, self.unit), style="progress.data.speed")


def rate_text(per_s: float, unit: str) -> str:
    if per_s <= 0:
        return f"0 {unit}/s"
    if per_s < 1:
        return f"{1 / per_s:,.1f} s/{unit.rstrip('s')}"
    return f"{per_s:,.0f} {unit}/s" if per_s >= 10 else f"{per_s:,.1f} {unit}/s"


def clock(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class _Task:
    def __init__(self, description: str, total: float | None, completed: float):
        self.description, self.total, self.completed = description, total, completed
        self.start_completed, self.t0 = completed, time.perf_counter()


class LineProgress:
    """What `make_progress` gives when stderr is not a terminal: the subset of rich's Progress the jobs use
    (context manager, add_task, advance, update, disable), printing one line per task every `every_s` seconds
    and a last one when the job ends."""

    def __init__(self, unit: str, every_s: float, out: Console):
        self.unit, self.every_s, self.out, self.disable = unit, every_s, out, False
        self.tasks: list[_Task] = []
        self.last = time.perf_counter()

    def __enter__(self):
        self.last = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            for task in self.tasks:
                self._line(task)

    def add_task(self, description: str, total: float | None = None, completed: float = 0, **_) -> int:
        self.tasks.append(_Task(description, total, completed))
        return len(self.tasks) - 1

    def advance(self, task_id: int, advance: float = 1) -> None:
        self.tasks[task_id].completed += advance
        self._maybe()

    def update(self, task_id: int, *, completed: float | None = None, advance: float | None = None,
               total: float | None = None, description: str | None = None, **_) -> None:
        task = self.tasks[task_id]
        task.completed = completed if completed is not None else task.completed + (advance or 0)
        task.total = total if total is not None else task.total
        task.description = description or task.description
        self._maybe()

    def _maybe(self) -> None:
        now = time.perf_counter()
        if now - self.last >= self.every_s:
            self.last = now
            for task in self.tasks:
                self._line(task)

    def _line(self, task: _Task) -> None:
        if self.disable:
            return
        elapsed = time.perf_counter() - task.t0
        done = task.completed - task.start_completed
        per_s = done / elapsed if elapsed > 0 else 0.0
        parts = [f"{task.description}: {task.completed:,.0f}"]
        if task.total:
            parts[0] += f"/{task.total:,.0f} {self.unit} ({100 * task.completed / task.total:.0f}%)"
        else:
            parts[0] += f" {self.unit}"
        parts.append(rate_text(per_s, self.unit))
        parts.append(f"elapsed {clock(elapsed)}")
        if task.total and per_s > 0:
            parts.append(f"ETA {clock(max(0.0, task.total - task.completed) / per_s)}")
        self.out.print("  ".join(parts), soft_wrap=True, markup=False, highlight=False)


def progress_every_s() -> float:
    try:
        return max(0.0, float(os.environ.get("BL2_PROGRESS_EVERY_S", "30")))
    except ValueError:
        return 30.0


def make_progress(unit: str = "chars", lines: bool = True):
    """A progress display on stderr: rich's bar on a terminal; otherwise a plain line every
    `$BL2_PROGRESS_EVERY_S` seconds (`lines=False`: nothing, for a job that prints its own periodic lines, such
    as training's step lines)."""
    if err_console.is_terminal or not lines:
        return Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            MofNCompleteColumn(),
            RateColumn(unit),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=err_console,
            disable=not err_console.is_terminal,
        )
    return LineProgress(unit, progress_every_s(), err_console)


__all__ = ["console", "err_console", "env_rank", "make_progress", "set_quiet"]
