"""Search spaces of `bl2 sweep`: a small YAML file, one entry per training parameter, each one distribution.

    lr:          {log_uniform: [1.0e-4, 1.0e-2]}     # low, high (both > 0), sampled on a log scale
    beta1:       {uniform: [0.8, 0.95]}             # low, high
    warmup_steps: {int: [0, 400], step: 50}         # integers low..high (optional `step`, or `log: true`)
    lr_schedule: {categorical: [cosine, linear]}    # a list of values
    temperature: {categorical: cache}               # student sweeps: the temperatures the cache offers

Names are TrainConfig fields (`bl2 pretrain --help`), plus `beta1` / `beta2` (AdamW's betas). A parameter the
space does not name keeps the sweep's fixed value (command line, --config file, preset). Every bound and choice
is checked against TrainConfig's own validation when the file is read, so a bad space fails before any trial.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

from bl2.distill.config import TrainConfig
from bl2.errors import UserError, require

DISTRIBUTIONS = ("log_uniform", "uniform", "int", "categorical")
INTEGER = ("batch_size", "grad_accum", "epochs", "warmup_steps")
FLOAT = ("lr", "beta1", "beta2", "eps", "weight_decay", "grad_clip", "attention_dropout")
CHOICE = ("lr_schedule",)
STUDENT_ONLY = {"alpha": float, "temperature": float, "kl_reduction": str}
FROM_CACHE = "cache"  # `temperature: {categorical: cache}`


@dataclass(frozen=True)
class Vocab:
    """The parameters one kind of sweep may search, by type."""

    integer: tuple[str, ...]
    floats: tuple[str, ...]
    choice: tuple[str, ...]
    student_only: dict  # name -> type: searchable by student sweeps only

    def sweepable(self, students: bool) -> list[str]:
        return list(self.integer + self.floats + self.choice) + (list(self.student_only) if students else [])


TRAINING = Vocab(INTEGER, FLOAT, CHOICE, STUDENT_ONLY)
# `bl2 sweep finetune`: the fields of eval/finetune/train.Hyper that the paper's fine-tuning sweep searched
FINETUNE = Vocab(("batch_size", "epochs"), ("lr", "weight_decay", "warmup_proportion", "min_factor"), ("schedule",),
                 {})


@dataclass(frozen=True)
class Param:
    """One searched parameter: its distribution and bounds (or choices)."""

    name: str
    kind: str  # log_uniform | uniform | int | categorical
    low: float | int | None = None
    high: float | int | None = None
    choices: tuple | None = None  # categorical
    step: int | None = None  # int: grid step
    log: bool = False  # int: sample on a log scale

    def suggest(self, trial):
        """The trial's value (an Optuna trial; an enqueued retry gets its fixed value back)."""
        if self.kind == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.name, self.low, self.high, step=self.step or 1, log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, log=self.kind == "log_uniform")

    def extremes(self) -> list:
        return list(self.choices) if self.kind == "categorical" else [self.low, self.high]

    def to_dict(self) -> dict:
        if self.kind == "categorical":
            return {"categorical": list(self.choices)}
        extra = {"step": self.step} if self.step else {}
        return {self.kind: [self.low, self.high]} | extra | ({"log": True} if self.log else {})


@dataclass(frozen=True)
class Space:
    """The parameters a sweep searches; `apply` turns a trial's values into its TrainConfig."""

    params: dict[str, Param]
    source: str = ""  # the file it came from (for messages)

    def suggest(self, trial) -> dict:
        return {name: p.suggest(trial) for name, p in self.params.items()}

    def apply(self, base, values: dict):
        """`base` (a TrainConfig, or a fine-tuning Hyper) with the searched values; beta1/beta2 go into `betas`."""
        values = dict(values)
        if not hasattr(base, "betas"):
            return dataclasses.replace(base, **values)
        betas = [values.pop("beta1", base.betas[0]), values.pop("beta2", base.betas[1])]
        return dataclasses.replace(base, betas=tuple(float(b) for b in betas), **values)

    def to_dict(self) -> dict:
        return {name: p.to_dict() for name, p in self.params.items()}

    def with_temperatures(self, grid: list[float], continuous_ok: bool) -> Space:
        """Student sweeps: `{categorical: cache}` becomes the cache's temperatures; a continuous range is
        allowed only where any T is exact (a full cache)."""
        t = self.params.get("temperature")
        if t is None:
            return self
        if t.kind == "categorical" and t.choices == (FROM_CACHE,):
            t = dataclasses.replace(t, choices=tuple(float(g) for g in grid))
        require(t.kind == "categorical" or continuous_ok,
                f"{self.source}: temperature: this cache offers only T in {grid}; use {{categorical: cache}} "
                "or a list from it")
        return Space(self.params | {"temperature": t}, self.source)


SHIPPED = Path(__file__).parent / "spaces"  # the spaces that ship with bl2, by name: --space teacher


def shipped_spaces() -> list[str]:
    return sorted(p.stem for p in SHIPPED.glob("*.yaml"))


def resolve_space(spec: str | Path) -> Path:
    """A space file's path: an existing file as given, else a shipped space by name (`teacher`, `student`)."""
    path = Path(spec)
    if path.is_file():
        return path
    if str(spec) in shipped_spaces():
        return SHIPPED / f"{spec}.yaml"
    raise UserError(f"--space {spec}: no such file, and not a space shipped with bl2 (by name: "
                    f"{', '.join(shipped_spaces())})")


def space_warnings(space: Space, base: TrainConfig) -> list[str]:
    """Settings of the space that the fixed options make meaningless (a warning each, the sweep still runs)."""
    out = []
    warmup = space.params.get("warmup_steps")
    if warmup is not None and base.max_steps and warmup.high > base.max_steps:
        out.append(f"--max-steps {base.max_steps} is shorter than the space's warm-up range (warmup_steps up to "
                   f"{warmup.high}): trials sampled above {base.max_steps} never finish their warm-up; lower the "
                   "range in a copy of the space or raise --max-steps")
    return out


def load_space(path: Path | str, base, students: bool, vocab: Vocab = TRAINING) -> Space:
    """Read and check a space file (or a shipped space by name) against the sweep's fixed config `base`."""
    from bl2.distill.config import load_yaml, renamed

    path = resolve_space(path)
    raw = renamed(load_yaml(path))  # one-line errors for a missing file, bad YAML, not a mapping; old field names
    require(bool(raw), f"{path}: the space names no parameter")
    params = {name: _param(str(path), name, spec, students, vocab) for name, spec in raw.items()}
    space = Space(params, str(path))
    for p in params.values():
        for value in p.extremes():
            _check_value(space, base, p, value)
    return space


def sweepable(students: bool) -> list[str]:
    return TRAINING.sweepable(students)


def _param(src: str, name: str, spec, students: bool, vocab: Vocab = TRAINING) -> Param:
    where = f"{src}: {name}"
    if name in vocab.student_only and not students:
        raise UserError(f"{where}: only student sweeps (`bl2 sweep students`) search distillation parameters")
    require(name in vocab.sweepable(students), f"{src}: unknown parameter {name!r} (sweepable: "
            f"{', '.join(vocab.sweepable(students))})")
    example = "e.g. {log_uniform: [1.0e-4, 1.0e-2]}, {int: [0, 400]} or {categorical: [a, b]}"
    require(isinstance(spec, dict), f"{where}: expected a mapping with one distribution, {example}")
    kinds = [k for k in spec if k in DISTRIBUTIONS]
    require(len(kinds) == 1, f"{where}: expected exactly one of {', '.join(DISTRIBUTIONS)}, {example}")
    kind = kinds[0]
    allowed = {kind} | ({"step", "log"} if kind == "int" else set())
    extra = sorted(set(spec) - allowed)
    require(not extra, f"{where}: unknown key(s) {', '.join(map(str, extra))} for {kind}")
    integer = name in vocab.integer
    numeric = integer or name in vocab.floats or vocab.student_only.get(name) is float
    if kind == "categorical":
        return _categorical(where, name, spec[kind], numeric, integer)
    require(numeric, f"{where}: takes named values only: use {{categorical: [...]}}")
    bounds = spec[kind]
    require(isinstance(bounds, list) and len(bounds) == 2, f"{where}: {kind} takes [low, high], got {bounds!r}")
    low, high = (_number(where, b) for b in bounds)
    if kind == "int":
        require(integer, f"{where}: is not an integer parameter: use uniform or log_uniform")
        return _int(where, name, low, high, spec.get("step"), spec.get("log", False))
    require(not integer, f"{where}: is an integer parameter: use int or categorical")
    require(low < high, f"{where}: {kind} needs low < high, got [{low}, {high}]")
    require(kind == "uniform" or low > 0, f"{where}: log_uniform needs 0 < low, got {low}")
    return Param(name, kind, float(low), float(high))


def _categorical(where: str, name: str, choices, numeric: bool, integer: bool) -> Param:
    if name == "temperature" and choices == FROM_CACHE:
        return Param(name, "categorical", choices=(FROM_CACHE,))
    require(isinstance(choices, list) and len(choices) >= 1, f"{where}: categorical takes a non-empty list")
    if numeric:
        choices = [_number(where, c) for c in choices]
        if integer:
            require(all(float(c).is_integer() for c in choices), f"{where}: choices must be integers, got {choices}")
            choices = [int(c) for c in choices]
    else:
        require(all(isinstance(c, str) for c in choices), f"{where}: choices must be names, got {choices}")
    require(len(set(choices)) == len(choices), f"{where}: repeated choices in {choices}")
    return Param(name, "categorical", choices=tuple(choices))


def _int(where: str, name: str, low, high, step, log) -> Param:
    require(float(low).is_integer() and float(high).is_integer(), f"{where}: int needs integer bounds")
    low, high = int(low), int(high)
    require(low <= high, f"{where}: int needs low <= high, got [{low}, {high}]")
    require(isinstance(log, bool), f"{where}: log must be true or false")
    require(step is None or (isinstance(step, int) and step >= 1), f"{where}: step must be an integer >= 1")
    require(not (log and step), f"{where}: int takes step or log, not both")
    require(not log or low >= 1, f"{where}: a log-scale int needs low >= 1")
    return Param(name, "int", low, high, step=step, log=log)


def _number(where: str, value) -> float | int:
    """YAML 1.1 reads `1e-4` (no dot) as a string: accept any float literal."""
    if isinstance(value, bool):
        raise UserError(f"{where}: expected a number, got {value!r}")
    if isinstance(value, int | float):
        if isinstance(value, float):
            require(math.isfinite(value), f"{where}: expected a finite number, got {value}")
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{where}: expected a number, got {value!r}") from None
    require(math.isfinite(number), f"{where}: expected a finite number, got {value!r}")
    return number


def _check_value(space: Space, base: TrainConfig, p: Param, value) -> None:
    """A bound or choice must make a valid config on its own (TrainConfig's checks; betas in [0, 1))."""
    where = f"{space.source}: {p.name}"
    if value == FROM_CACHE:
        return
    if p.name in ("beta1", "beta2"):
        require(0.0 <= value < 1.0, f"{where}: {value} is outside [0, 1)")
        return
    try:
        space.apply(base, {p.name: value})
    except UserError as e:
        raise UserError(f"{where}: {value!r} is not allowed ({e})") from None
