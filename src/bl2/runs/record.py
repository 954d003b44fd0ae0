"""run.json: the record of a run dir, read and written only here (one reader, one error policy).

A run dir is what `bl2 pretrain` / `bl2 distill` (and the commands built on them) write: the final Hugging Face
model dir plus run.json, metrics.jsonl, checkpoints/ and the other entries of `BL2_ENTRIES`. run.json carries
`bl2_run` (the record's format version): a key only bl2 writes, so that a folder holding some other `run.json`
is never mistaken for a run dir (and never deleted by `--overwrite`). Run dirs written before the key existed
are recognised by their identity (`identity.command` of a bl2 training command) and provenance (`bl2_version`).

Error policy: `read` raises a one-line UserError naming the file when it is missing, garbled or not bl2's;
`find` returns None when there is no run.json at all (a teacher dir may be any Hugging Face model) and raises
like `read` otherwise; commands that read many runs call `read_many`, which skips the bad ones and names each.
Torch-free: `bl2 budget`, `bl2 report` and `bl2 sweep status` start fast.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from bl2.errors import UserError, require

RUN_JSON = "run.json"
FORMAT = 1  # run.json's `bl2_run`
COMMANDS = ("pretrain", "distill", "distill-online")  # identity.command of bl2's training runs
# What bl2 writes into a run dir: --overwrite deletes a run dir only when it holds nothing else.
BL2_ENTRIES = {RUN_JSON, "metrics.jsonl", "checkpoints", "word-checkpoints", "config.json", "generation_config.json",
               "model.safetensors", "model.safetensors.index.json", "README.md", "evals.json", "tokenizer.json",
               "tokenizer_config.json", "special_tokens_map.json", "tensorboard", "wandb", "tracking.json"}
SHARDED_WEIGHTS = re.compile(r"model-\d{5}-of-\d{5}\.safetensors")


def path_of(run_dir: str | Path) -> Path:
    return Path(run_dir) / RUN_JSON


def is_bl2_record(doc) -> bool:
    """True for a run.json bl2 wrote (its `bl2_run` key, or the identity and provenance of an older bl2)."""
    if not isinstance(doc, dict):
        return False
    if doc.get("bl2_run") is not None:
        return True
    ident, prov = doc.get("identity"), doc.get("provenance")
    return (isinstance(ident, dict) and ident.get("command") in COMMANDS and isinstance(prov, dict)
            and "bl2_version" in prov)


def find(run_dir: str | Path) -> dict | None:
    """The run's record; None when the folder has no run.json (it is not a bl2 run dir); a one-line UserError
    naming the file when run.json exists but is unreadable or was not written by bl2."""
    path = path_of(run_dir)
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise UserError(f"{path} is unreadable ({_first_line(e)})") from None
    require(is_bl2_record(doc), f"{path} was not written by bl2 (no bl2_run record): not a bl2 run dir")
    return doc


def read(run_dir: str | Path) -> dict:
    """The run's record; a one-line UserError naming the file when it is missing, garbled or not bl2's."""
    doc = find(run_dir)
    require(doc is not None, f"{Path(run_dir)} is not a bl2 run dir (no {RUN_JSON})")
    return doc


def is_run_dir(path: str | Path) -> bool:
    """A folder holding a run.json that bl2 wrote."""
    try:
        return find(path) is not None
    except UserError:
        return False


def read_many(run_dirs, warn=None) -> list[tuple[Path, dict]]:
    """(dir, record) of each readable run dir; each bad one is skipped and named through `warn(message)`
    (default: a warning line on the console)."""
    from bl2.progress import console

    warn = warn or (lambda m: console.print(f"[yellow]warning:[/] skipped: {m}", markup=True, soft_wrap=True))
    out = []
    for d in run_dirs:
        try:
            out.append((Path(d), read(d)))
        except UserError as e:
            warn(str(e))
    return out


def create(run_dir: str | Path, doc: dict) -> None:
    """Write a new run's record (once, when it starts), marked as bl2's."""
    from bl2.storage import write_text_atomic

    write_text_atomic(path_of(run_dir), json.dumps({"bl2_run": FORMAT} | doc, indent=2, default=str))


def update(run_dir: str | Path, **sections) -> dict:
    """Replace (or add) top-level sections of an existing record, e.g. `summary` when a run ends."""
    from bl2.storage import write_text_atomic

    doc = read(run_dir) | sections
    write_text_atomic(path_of(run_dir), json.dumps(doc, indent=2, default=str))
    return doc


def foreign_entries(run_dir: str | Path) -> list[str]:
    """Names in a run dir that bl2 did not write there (a user's file that --overwrite must not delete)."""
    return sorted(p.name for p in Path(run_dir).iterdir()
                  if p.name not in BL2_ENTRIES and not SHARDED_WEIGHTS.fullmatch(p.name))


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
