"""The resolved configuration of a training run (pretrain or distill): every field declared once, here, with its
default, a one-line help that names its unit, and the --help panel of the command-line option that bl2.cli makes
from it (every field is settable from the command line, a --config YAML file, or a preset's defaults)."""

from __future__ import annotations

import math
import numbers
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Literal

from bl2.cache.schema import IN_MEMORY
from bl2.errors import UserError, require
from bl2.model.presets import PRESETS, SEQ_LEN, TRAIN_DEFAULTS
from bl2.runs import sinks
from bl2.runs.marks import parse_marks

Preset = Literal[tuple(PRESETS)]  # the preset names, from the one dict that defines them
LrSchedule = Literal["cosine", "linear", "constant"]
KlReduction = Literal["sequence", "token"]
InMemory = Literal[IN_MEMORY]
KL_REDUCTIONS = typing.get_args(KlReduction)
LR_SCHEDULES = typing.get_args(LrSchedule)
# --help panels of the training options, in the order they are shown
MODEL, OPTIM, SCHEDULE, DISTILL, CKPT, OUTPUT = "Model", "Optimisation", "Schedule", "Distillation", "Checkpoints", \
    "Output"
# Fields that do not change what a run computes: --resume accepts new values for them.
NOT_IDENTITY = ("log_every_steps", "ckpt_every_steps", "keep_checkpoints", "compile", "eval_batch_size",
                "word_checkpoints", "cache_in_memory", "report_to", "mlflow_uri", "loss_chunk")
# Fields added after runs were made: at these values they stay out of the identity, so older runs still resume.
LATER_DEFAULTS = {"lr_schedule": "cosine", "attention_dropout": 0.0}
# Fields renamed so that their option names say their unit: old run.json files, YAML files and sweep spaces
# keep working.
RENAMED = {"warmup": "warmup_steps", "val_every": "val_every_steps", "log_every": "log_every_steps",
           "ckpt_every": "ckpt_every_steps"}


def opt(default, help: str, panel: str, distill_only: bool = False):
    """A field declared once: default, one-line help (with its unit) and the --help panel of its option."""
    return field(default=default, metadata={"help": help, "panel": panel, "distill_only": distill_only})


@dataclass
class TrainConfig:
    """Everything that determines a run's result. `--resume` refuses a run dir whose config differs."""

    preset: Preset | None = opt(None, "Model preset (DESIGN §4); required: here or in --config.", MODEL)
    seq_len: int = opt(SEQ_LEN, "Tokens per training window (inputs); windows hold seq_len + 1 tokens.", MODEL)
    attention_dropout: float = opt(0.0, "Dropout on attention probabilities (HF Llama's only dropout).", MODEL)
    compile: bool = opt(False, "torch.compile the student (same results; 30-40 s to compile, no faster on the CPUs "
                        "measured: BENCHMARKS.md).", MODEL)
    loss_chunk: int = opt(0, "Positions per chunk of the fused output layer + loss: 0 = the fastest, measured "
                          "once per machine (cached) | N; same results up to float rounding.", MODEL)
    seed: int = opt(0, "Seed of weight init, data order and window offsets (>= 0).", OPTIM)
    lr: float | None = opt(None, "Peak learning rate (preset default).", OPTIM)
    batch_size: int | None = opt(None, "Sequences per optimizer step, all processes together (preset default).",
                                 OPTIM)
    grad_accum: int | None = opt(None, "Micro-batches per optimizer step; batch size must divide evenly "
                                 "(preset default).", OPTIM)
    weight_decay: float | None = opt(None, "AdamW decay on matrices only, not norms or biases (preset default).",
                                     OPTIM)
    betas: tuple[float, float] = opt((0.9, 0.999), "AdamW betas (HF Trainer defaults, as in the reference).", OPTIM)
    eps: float = opt(1e-8, "AdamW epsilon.", OPTIM)
    grad_clip: float = opt(1.0, "Max global gradient norm (0 = off).", OPTIM)
    epochs: int | None = opt(None, "Passes over the training windows (preset default).", SCHEDULE)
    max_steps: int | None = opt(None, "Optimizer steps in total; overrides epochs (the schedule spans them).",
                                SCHEDULE)
    warmup_steps: int | None = opt(None, "Linear warm-up steps before the lr schedule (preset default).", SCHEDULE)
    lr_schedule: LrSchedule = opt("cosine", "After warm-up: cosine or linear decay to 0, or constant.", SCHEDULE)
    val_every_steps: int | None = opt(None, "Optimizer steps between validations (default: each epoch's end).",
                                      SCHEDULE)
    eval_batch_size: int = opt(64, "Sequences per validation forward.", SCHEDULE)
    alpha: float = opt(1.0, "Weight of CE; (1 - alpha) * T^2 weighs the KL (1 = no distillation).", DISTILL, True)
    temperature: float = opt(1.0, "Distillation temperature T (topk caches: a T of the cache's grid).", DISTILL, True)
    kl_reduction: KlReduction = opt("sequence", "sequence: KL summed over positions, mean over sequences (the "
                                    "reference); token: mean over positions.", DISTILL, True)
    shuffle_buffer: int = opt(8192, "Windows shuffled together (cache sources read shard-sized blocks).", DISTILL,
                              True)
    cache_in_memory: InMemory = opt("auto", "Decode the whole cache into RAM: auto (if it fits half the free RAM), "
                                    "yes, or no (shard blocks streamed on demand); the same results either way.",
                                    DISTILL, True)
    ckpt_every_steps: int = opt(200, "Optimizer steps between checkpoints (and one at every epoch end).", CKPT)
    keep_checkpoints: int = opt(2, "Newest step checkpoints kept on disk.", CKPT)
    word_checkpoints: str | None = opt(None, "Hugging Face model dirs RUN/word-checkpoints/chck_1M/ .. as the run "
                                       "passes each count of words seen: `babylm` (the BabyLM 2025 revisions) or "
                                       "a list like 1M,5M,500K.", CKPT)
    log_every_steps: int = opt(10, "Optimizer steps between log lines and metrics rows.", OUTPUT)
    report_to: str | None = opt(None, "Also show the metrics in: none, or a list of tensorboard (RUN/tensorboard/), "
                                "wandb (offline without an API key) and mlflow (MLFLOW_TRACKING_URI), e.g. "
                                "tensorboard,mlflow; rank 0 reports; metrics.jsonl stays the record.", OUTPUT)
    mlflow_uri: str | None = opt(None, "Tracking URI of --report-to mlflow (default: $MLFLOW_TRACKING_URI, else "
                                 "MLflow's default store).", OUTPUT)

    def __post_init__(self):
        require(self.preset is not None, "no model preset: pass --preset (or set `preset` in --config)")
        require(isinstance(self.preset, str) and self.preset in PRESETS,
                f"unknown preset {self.preset!r}; choose one of {', '.join(PRESETS)}")
        d = TRAIN_DEFAULTS[self.preset]
        for name in ("epochs", "lr", "batch_size", "grad_accum", "warmup_steps", "weight_decay"):
            if getattr(self, name) is None:
                setattr(self, name, getattr(d, name))
        for name in ("word_checkpoints", "report_to"):
            if isinstance(getattr(self, name), (list, tuple)):  # a YAML list
                setattr(self, name, ",".join(str(m) for m in getattr(self, name)))
        check_types(self)  # YAML gives any type: 2.5 steps or "yes" for a bool end here, with the field's name
        self._check_ranges()
        parse_marks(self.word_checkpoints)  # a UserError now rather than after training started
        sinks.parse(self.report_to)  # an unknown sink (its package is checked by sinks.require_installed)

    def _check_ranges(self) -> None:
        positive = ("epochs", "batch_size", "grad_accum", "max_steps", "seq_len", "val_every_steps",
                    "eval_batch_size", "log_every_steps", "ckpt_every_steps", "keep_checkpoints", "shuffle_buffer")
        for name in positive:
            value = getattr(self, name)
            require(value is None or value >= 1, f"{name} must be >= 1, got {value}")
        for name in ("seed", "warmup_steps", "weight_decay", "grad_clip", "loss_chunk"):
            require(getattr(self, name) >= 0, f"{name} must be >= 0, got {getattr(self, name)}")
        require(self.lr > 0 and self.eps > 0 and self.temperature > 0,
                f"lr, eps and temperature must be > 0, got {self.lr}, {self.eps}, {self.temperature}")
        require(self.seq_len >= 2, f"seq_len must be >= 2, got {self.seq_len}")
        require(self.batch_size % self.grad_accum == 0,
                f"batch_size {self.batch_size} is not divisible by grad_accum {self.grad_accum}")
        require(0.0 <= self.alpha <= 1.0, f"alpha must be in [0, 1], got {self.alpha}")
        require(0.0 <= self.attention_dropout < 1.0, f"attention_dropout must be in [0, 1), got "
                f"{self.attention_dropout}")
        require(all(0.0 <= b < 1.0 for b in self.betas), f"betas must each be in [0, 1), got {list(self.betas)}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d

    def identity(self) -> dict:
        """The fields a resumed run must share with the run it continues."""
        return {k: v for k, v in self.to_dict().items()
                if k not in NOT_IDENTITY and not (k in LATER_DEFAULTS and v == LATER_DEFAULTS[k])}

    @classmethod
    def from_sources(cls, file: Path | None, overrides: dict, defaults: dict | None = None) -> TrainConfig:
        """The preset's defaults, then the command's `defaults` (a student's alpha), then a YAML file's values,
        then explicit command-line values (None = not given)."""
        values = dict(defaults or {}) | renamed(load_yaml(file) if file else {})
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(values)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """From config keys (a YAML file, a run.json `config`): old field names accepted; unknown keys refused."""
        values = renamed(values)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        require(not unknown, f"unknown config keys: {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        try:
            return cls(**values)
        except TypeError as e:
            raise UserError(f"bad config: {e}") from None


def renamed(values: dict) -> dict:
    """Config keys with the old names of renamed fields replaced by the new ones."""
    return {RENAMED.get(k, k): v for k, v in values.items()}


def check_types(cfg) -> None:
    """Check (and normalise) every field against its annotation: ints are integers (not bools, not 2.5),
    floats are finite numbers (a string such as "3e-4", which YAML 1.1 does not read as a number, is
    converted), bools are booleans, pairs are two numbers, fixed choices one of theirs. One-line UserError
    naming the field otherwise."""
    hints = typing.get_type_hints(type(cfg))
    for f in fields(cfg):
        setattr(cfg, f.name, _typed(f.name, getattr(cfg, f.name), hints[f.name]))


def _typed(name: str, value, hint):
    args = typing.get_args(hint)
    if type(None) in args:  # `X | None`
        if value is None:
            return None
        hint = next(a for a in args if a is not type(None))
        args = typing.get_args(hint)
    if typing.get_origin(hint) is Literal:
        require(value in args, f"{name} must be one of {', '.join(map(str, args))}, got {value!r}")
        return value
    if typing.get_origin(hint) is tuple:
        require(isinstance(value, (list, tuple)) and len(value) == len(args),
                f"{name} must be a list of {len(args)} numbers, got {value!r}")
        return tuple(_typed(name, v, t) for v, t in zip(value, args))
    if hint is bool:
        require(isinstance(value, bool), f"{name} must be true or false, got {value!r}")
    elif hint is int:
        require(isinstance(value, numbers.Integral) and not isinstance(value, bool),
                f"{name} must be an integer, got {value!r}")
        return int(value)
    elif hint is float:
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise UserError(f"{name} must be a number, got {value!r}") from None
        require(isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value),
                f"{name} must be a finite number, got {value!r}")
        return float(value)
    elif hint is str:
        require(isinstance(value, str), f"{name} must be a string, got {value!r}")
    return value


def load_yaml(path: Path) -> dict:
    import yaml

    path = Path(path)
    require(path.is_file(), f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise UserError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    require(isinstance(data, dict), f"{path}: expected a mapping of config keys")
    return {k.replace("-", "_"): v for k, v in data.items()}
