"""`--report-to tensorboard,wandb,mlflow`: the metrics rows of a run (bl2.runs.metrics: the record of truth stays
metrics.jsonl) shown to the tools users already watch. Training feeds a `Reporter` the same rows it writes to
metrics.jsonl (it is one of the loop's hooks, on rank 0 only); `bl2 eval ...` feeds it its results for the run
dirs it scored (`report_evals`). Each sink's package is imported only when that sink is asked for.

- every row: `train/<field>` (ce, kl, lr, tokens_per_s, tokens_seen, words_seen, epoch, elapsed_s) and
  `val/<field>` (val_ce, val_ppl, best_val_ce, epoch) at the row's optimizer step; the `done` event's numbers
  as `final/<field>`; other events (resume, stopped, diverged) as text (TensorBoard), tags (MLflow), summary
  keys (W&B); evaluations as `eval/<task>/<key>/<metric>` at the run's last step;
- hyperparameters: the resolved config (`config.<field>`) and the run's identity (content hashes, command);
- grouping: a sweep trial's run is grouped by its study (W&B group; an MLflow parent run per study; TensorBoard:
  `tensorboard --logdir STUDY/trials` shows every trial, with the hparams table).

Where: TensorBoard event files in RUN/tensorboard/; W&B in RUN/wandb/, offline unless WANDB_MODE says otherwise or
an API key is known (then W&B's own default, online); MLflow to MLFLOW_TRACKING_URI (else MLflow's default), in
the experiment MLFLOW_EXPERIMENT_NAME (else `bl2`). RUN/tracking.json records each sink's run (ids, URI) so that
`--resume` and `bl2 eval` continue the same run. A sink that fails (server gone, disk full) is one warning and
is dropped; training goes on.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

from bl2.errors import UserError
from bl2.runs import sink_backends

SINKS = ("tensorboard", "wandb", "mlflow")
# sink -> (module, requirement): the extra of the same name installs it (`report-to` installs all three)
PACKAGES = {"tensorboard": ("tensorboard", "tensorboard>=2,<3"), "wandb": ("wandb", "wandb>=0.19,<1"),
            "mlflow": ("mlflow", "mlflow>=3,<4")}
STATE = "tracking.json"


def parse(value: str | list | None) -> tuple[str, ...]:
    """`tensorboard,mlflow` -> ("tensorboard", "mlflow"); `none` or nothing -> (); an unknown name: UserError."""
    if isinstance(value, (list, tuple)):
        value = ",".join(map(str, value))
    names = [n.strip().lower() for n in str(value or "").split(",") if n.strip()]
    names = [n for n in dict.fromkeys(names) if n != "none"]
    unknown = [n for n in names if n not in SINKS]
    if unknown:
        raise UserError(f"--report-to: unknown sink {unknown[0]!r}; choose from none, {', '.join(SINKS)}")
    return tuple(names)


def _installed(module: str) -> bool:
    if module in sys.modules:  # None there: blocked (a test, or a user's shim)
        return sys.modules[module] is not None
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require_installed(value) -> tuple[str, ...]:
    """The sinks asked for, each one's package checked (not imported): one line naming the extra otherwise.
    Called before any data is loaded or training starts."""
    names = parse(value)
    for name in names:
        module, spec = PACKAGES[name]
        if not _installed(module):
            raise UserError(f"--report-to {name} needs the {module} package: pip install 'bl2[{name}]' ({spec})")
    return names


def flat(d: dict, prefix: str = "") -> dict:
    """Nested dicts as dotted keys; lists and None as text (what every sink's hyperparameters accept)."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out |= flat(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = v if isinstance(v, (bool, int, float, str)) else json.dumps(v)
    return out


def read_state(run_dir) -> dict:
    path = Path(run_dir) / STATE
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def write_state(run_dir, state: dict) -> None:
    from bl2.storage import write_text_atomic

    write_text_atomic(Path(run_dir) / STATE, json.dumps(state, indent=2) + "\n")


def warn(name: str, e: BaseException, what: str = "training goes on without it") -> None:
    from rich.markup import escape

    from bl2.progress import console

    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    console.print(f"[yellow]warning: --report-to {name} failed ({type(e).__name__}: {escape(first[:200])}); {what}")


class Reporter:
    """A training-loop hook (rank 0): every metrics row goes to every sink. `info`: run `name`, `group` (a
    sweep's study or None), `job_type` (the command), `params` (flat hyperparameters), `tags` (flat strings).
    A sink that raises is warned about once and dropped: a run never fails because of its sinks."""

    def __init__(self, run_dir, names, info: dict, resume: bool = False):
        self.run_dir, self.sinks = Path(run_dir), {}
        state = read_state(run_dir) if resume else {}
        for name in parse(names):
            try:
                self.sinks[name] = sink_backends.open_sink(name, self.run_dir, info, state.get(name))
                state[name] = self.sinks[name].state
            except Exception as e:  # noqa: BLE001  (a sink never stops a run)
                warn(name, e)
        if self.sinks:
            write_state(run_dir, state)

    def _each(self, method: str, *args) -> None:
        for name, sink in list(self.sinks.items()):
            try:
                getattr(sink, method)(*args)
            except Exception as e:  # noqa: BLE001
                warn(name, e)
                self.sinks.pop(name, None)
                try:
                    sink.close("FAILED")
                except Exception:  # noqa: BLE001  (its own failure was already said)
                    pass

    def __call__(self, row: dict) -> None:
        self._each("log_row", row)

    def close(self, status: str = "FINISHED") -> None:
        """status: FINISHED, FAILED (an exception) or KILLED (Ctrl-C)."""
        sinks, self.sinks = self.sinks, {}
        for name, sink in sinks.items():
            try:
                sink.close(status)
            except Exception as e:  # noqa: BLE001
                warn(name, e, "its last rows may be missing")


def run_info(run_dir, config: dict, identity: dict, extra: dict) -> dict:
    """What a Reporter shows of a run: its name, its study (sweeps), hyperparameters and tags."""
    sweep = extra.get("sweep") or {}
    study = sweep.get("study")
    tags = {"bl2_run_dir": str(Path(run_dir).resolve()), "bl2_command": str(identity.get("command", ""))}
    if study:
        tags |= {"bl2_study": str(study), "bl2_trial": str(sweep.get("trial"))}
    ident = {k: v for k, v in identity.items() if k != "config"}
    return {"name": Path(run_dir).resolve().name, "group": Path(study).name if study else None,
            "job_type": str(identity.get("command", "train")).split()[0] or "train",
            "params": flat(config, "config.") | flat(ident, "identity.") | flat(sweep.get("params") or {}, "trial."),
            "tags": tags, "study": study}


def report_evals(names, entries: list[tuple]) -> None:
    """`bl2 eval ... --report-to`: each (run_dir, task, key, entry) into the sink runs its run dir is known by
    (RUN/tracking.json; TensorBoard: RUN/tensorboard/ always), at the run's last step. A dir no sink knows is
    named and skipped."""
    from bl2.progress import console
    from bl2.runs import record

    by_dir: dict[str, dict] = {}
    for run_dir, task, key, entry in entries:
        values = {f"eval/{task}/{key}/{k.replace('.', '/')}": float(v) for k, v in flat(entry).items()
                  if isinstance(v, (int, float)) and not isinstance(v, bool)}
        by_dir.setdefault(str(run_dir), {}).update(values)
    for run_dir, values in by_dir.items():
        state = read_state(run_dir)
        step = int(((record.find(run_dir) or {}).get("summary") or {}).get("step") or 0)
        for name in parse(names):
            if name != "tensorboard" and name not in state:
                console.print(f"--report-to {name}: {run_dir} has no {name} run (trained without --report-to "
                              f"{name}): its results are not reported there", markup=False)
                continue
            try:
                sink_backends.log_eval(name, Path(run_dir), state.get(name), values, step)
                console.print(f"--report-to {name}: results of {run_dir} reported", markup=False)
            except Exception as e:  # noqa: BLE001  (the evaluation itself succeeded and is written)
                warn(name, e, "the results are in the JSON and the run dir only")


def export(paths, to) -> list[Path]:
    """`bl2 export-metrics`: replay the metrics.jsonl of run dirs (or of every run dir under a folder, e.g. a sweep
    study) into new sink runs, as --report-to would have shown them while they ran. A run dir that already reports
    to one of the sinks is refused (its rows are there already)."""
    from bl2.errors import require
    from bl2.progress import console
    from bl2.runs import metrics, record

    names = require_installed(to)
    require(names, "--to: name at least one of " + ", ".join(SINKS))
    dirs: list[Path] = []
    for p in map(Path, paths):
        if record.is_run_dir(p):
            dirs.append(p)
            continue
        require(p.is_dir(), f"{p} is neither a bl2 run dir nor a folder of them")
        found = sorted(q.parent for q in p.rglob(record.RUN_JSON) if record.is_run_dir(q.parent))
        require(found, f"{p} holds no bl2 run dir")
        dirs += found
    for d in dirs:
        state = read_state(d)
        has = [n for n in names if n in state or (n == "tensorboard" and (d / sink_backends.TB_DIR).exists())]
        require(not has, f"{d} already reports to {has[0] if has else ''} (its {STATE}): nothing to export there")
    for d in dirs:
        doc = record.read(d)
        rows = metrics.read(d / metrics.FILENAME)
        reporter = Reporter(d, names, run_info(d, doc.get("config") or {}, doc.get("identity") or {}, doc))
        for row in rows:
            reporter(row)
        done = list(reporter.sinks)
        reporter.close()
        console.print(f"{d}: {len(rows)} metrics rows -> {', '.join(done) or 'no sink (see the warnings)'}",
                      soft_wrap=True, markup=False)
    return dirs
