"""The resolved configuration of a training run (pretrain or distill), with one-line field docs and checks."""

from __future__ import annotations

import math
import numbers
import typing
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from bl2.errors import UserError, require
from bl2.model.presets import PRESETS, SEQ_LEN, TRAIN_DEFAULTS
from bl2.runs.marks import parse_marks

KL_REDUCTIONS = ("sequence", "token")
LR_SCHEDULES = ("cosine", "linear", "constant")
# Fields that do not change what a run computes: --resume accepts new values for them.
NOT_IDENTITY = ("log_every", "ckpt_every", "keep_checkpoints", "compile", "eval_batch_size", "word_checkpoints")
# Fields added after runs were made: at these values they stay out of the identity, so older runs still resume.
LATER_DEFAULTS = {"lr_schedule": "cosine", "attention_dropout": 0.0}


@dataclass
class TrainConfig:
    """Everything that determines a run's result. `--resume` refuses a run dir whose config differs."""

    preset: str  # model preset: debug | tiny | 16m | 345m
    seed: int = 0  # weight init, data order and window offsets
    epochs: int | None = None  # passes over the training windows (default: the preset's)
    lr: float | None = None  # peak learning rate (default: the preset's)
    batch_size: int | None = None  # sequences per optimizer step (default: the preset's)
    grad_accum: int | None = None  # micro-batches per step; batch_size must divide evenly (default: preset's)
    warmup: int | None = None  # linear warm-up steps, then the lr_schedule's decay (default: the preset's)
    lr_schedule: str = "cosine"  # after warm-up: cosine (to 0) | linear (to 0) | constant
    weight_decay: float | None = None  # AdamW decay on matrices only (default: the preset's)
    max_steps: int | None = None  # stop after this many optimizer steps (the schedule spans them)
    seq_len: int = SEQ_LEN  # tokens per training window (inputs); windows hold seq_len + 1 tokens
    grad_clip: float = 1.0  # max global gradient norm (0 = off)
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW betas (HF Trainer defaults, as in the reference)
    eps: float = 1e-8  # AdamW epsilon
    attention_dropout: float = 0.0  # dropout on attention probabilities (HF Llama's only dropout; the sweep's)
    val_every: int | None = None  # optimizer steps between validations (default: only at each epoch's end)
    eval_batch_size: int = 64  # sequences per validation forward
    log_every: int = 10  # optimizer steps between log lines / metrics rows
    ckpt_every: int = 200  # optimizer steps between checkpoints (and one at every epoch end)
    keep_checkpoints: int = 2  # newest step checkpoints kept on disk
    compile: bool = False  # torch.compile the student
    word_checkpoints: str | None = None  # `babylm` or word counts `1M,2M,..`: HF model dirs as the run passes them
    # distillation (alpha = 1 and no target source = plain pretraining)
    alpha: float = 1.0  # weight of CE; (1 - alpha) * T^2 weighs the KL term
    temperature: float = 1.0  # distillation temperature T
    kl_reduction: str = "sequence"  # sequence: KL summed over positions, mean over sequences (reference); token: mean
    shuffle_buffer: int = 8192  # windows shuffled together (cache sources read shard-sized blocks)

    def __post_init__(self):
        require(isinstance(self.preset, str) and self.preset in PRESETS,
                f"unknown preset {self.preset!r}; choose one of {', '.join(PRESETS)}")
        d = TRAIN_DEFAULTS[self.preset]
        for name in ("epochs", "lr", "batch_size", "grad_accum", "warmup", "weight_decay"):
            if getattr(self, name) is None:
                setattr(self, name, getattr(d, name))
        if isinstance(self.word_checkpoints, (list, tuple)):  # a YAML list
            self.word_checkpoints = ",".join(str(m) for m in self.word_checkpoints)
        check_types(self)  # YAML gives any type: 2.5 steps or "yes" for a bool end here, with the field's name
        require(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        require(self.lr > 0, f"lr must be > 0, got {self.lr}")
        require(self.batch_size >= 1 and self.grad_accum >= 1, "batch_size and grad_accum must be >= 1")
        require(self.batch_size % self.grad_accum == 0,
                f"batch_size {self.batch_size} is not divisible by grad_accum {self.grad_accum}")
        require(self.warmup >= 0 and self.weight_decay >= 0, "warmup and weight_decay must be >= 0")
        require(self.max_steps is None or self.max_steps >= 1, f"max_steps must be >= 1, got {self.max_steps}")
        require(self.seq_len >= 2, f"seq_len must be >= 2, got {self.seq_len}")
        require(0.0 <= self.alpha <= 1.0, f"alpha must be in [0, 1], got {self.alpha}")
        require(self.temperature > 0, f"temperature must be > 0, got {self.temperature}")
        require(self.kl_reduction in KL_REDUCTIONS, f"kl_reduction must be one of {', '.join(KL_REDUCTIONS)}")
        require(self.log_every >= 1 and self.ckpt_every >= 1 and self.keep_checkpoints >= 1,
                "log_every, ckpt_every and keep_checkpoints must be >= 1")
        require(self.shuffle_buffer >= 1, "shuffle_buffer must be >= 1")
        require(self.lr_schedule in LR_SCHEDULES, f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, "
                f"got {self.lr_schedule!r}")
        require(0.0 <= self.attention_dropout < 1.0,
                f"attention_dropout must be in [0, 1), got {self.attention_dropout}")
        require(self.val_every is None or self.val_every >= 1, f"val_every must be >= 1, got {self.val_every}")
        require(self.eval_batch_size >= 1, f"eval_batch_size must be >= 1, got {self.eval_batch_size}")
        require(self.grad_clip >= 0, f"grad_clip must be >= 0 (0 = off), got {self.grad_clip}")
        require(self.eps > 0, f"eps must be > 0, got {self.eps}")
        require(all(0.0 <= b < 1.0 for b in self.betas), f"betas must each be in [0, 1), got {list(self.betas)}")
        parse_marks(self.word_checkpoints)  # a UserError now rather than after training started

    def to_dict(self) -> dict:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d

    def identity(self) -> dict:
        """The fields a resumed run must share with the run it continues."""
        return {k: v for k, v in self.to_dict().items()
                if k not in NOT_IDENTITY and not (k in LATER_DEFAULTS and v == LATER_DEFAULTS[k])}

    @classmethod
    def from_sources(cls, preset: str, file: Path | None, overrides: dict) -> TrainConfig:
        """Preset defaults, then a YAML file's values, then explicit command-line values (None = not given)."""
        values = load_yaml(file) if file else {}
        values.update({k: v for k, v in overrides.items() if v is not None})
        if preset is not None:  # the command line's --preset wins over the file's
            values["preset"] = preset
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        require(not unknown, f"unknown config keys: {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        try:
            return cls(**values)
        except TypeError as e:
            raise UserError(f"bad config: {e}") from None


def check_types(cfg) -> None:
    """Check (and normalise) every field against its annotation: ints are integers (not bools, not 2.5),
    floats are finite numbers (a string such as "3e-4", which YAML 1.1 does not read as a number, is
    converted), bools are booleans, pairs are two numbers. One-line UserError naming the field otherwise."""
    hints = typing.get_type_hints(type(cfg))
    for f in fields(cfg):
        setattr(cfg, f.name, _typed(f.name, getattr(cfg, f.name), hints[f.name]))


def _typed(name: str, value, hint):
    args = typing.get_args(hint)
    if type(None) in args:  # `X | None`
        if value is None:
            return None
        hint = next(a for a in args if a is not type(None))
    if typing.get_origin(hint) is tuple:
        require(isinstance(value, (list, tuple)) and len(value) == len(typing.get_args(hint)),
                f"{name} must be a list of {len(typing.get_args(hint))} numbers, got {value!r}")
        return tuple(_typed(name, v, t) for v, t in zip(value, typing.get_args(hint)))
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
