"""The three sinks of `--report-to` (bl2.runs.sinks says what each receives and where): TensorBoard event files written
with tensorboard's own writer (no torch, no TensorFlow), a W&B run, an MLflow run through `MlflowClient`. Each
package is imported only here, only when its sink is opened. `state` is the sink's entry in RUN/tracking.json:
None for a new run; a resumed run (or `bl2 eval`) continues the run it names."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

TB_DIR = "tensorboard"
SKIP = ("kind", "step", "time", "event")  # row fields that are not values


def open_sink(name: str, run_dir: Path, info: dict, state: dict | None):
    return {"tensorboard": TensorBoard, "wandb": Wandb, "mlflow": Mlflow}[name](run_dir, info, state)


def log_eval(name: str, run_dir: Path, state: dict | None, values: dict, step: int) -> None:
    """Evaluation results into the sink run of a finished run dir."""
    sink = open_sink(name, run_dir, {"name": run_dir.resolve().name, "group": None, "job_type": "eval",
                                     "params": {}, "tags": {}, "study": None}, state or {"eval_only": True})
    try:
        sink.log_values(values, step)
    finally:
        sink.close("FINISHED")


def scalars(row: dict) -> dict[str, float]:
    """The numbers of a metrics row under their sink names (train/ce, val/val_ce, final/best_val_ce)."""
    group = {"train": "train", "val": "val"}.get(row.get("kind"), "final")
    return {f"{group}/{k}": float(v) for k, v in row.items()
            if k not in SKIP and isinstance(v, (int, float)) and not isinstance(v, bool)}


def _event_row(row: dict) -> bool:
    return row.get("kind") == "event" and row.get("event") != "done"


# ------------------------------------------------------------------------------------------------- TensorBoard
class TensorBoard:
    """RUN/tensorboard/events.out.tfevents.*: scalars, the config as text, the hparams plugin's session. A resumed
    run writes a SessionLog START at the step after its checkpoint: TensorBoard then drops the older files' events
    from that step on (the steps the killed run logged after its checkpoint), so steps never appear twice."""

    def __init__(self, run_dir: Path, info: dict, state: dict | None):
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        self.writer = EventFileWriter(str(run_dir / TB_DIR), flush_secs=5)
        self.state = {"dir": TB_DIR}
        if state is None:  # a new run: its hyperparameters, once
            self._hparams(info)

    def _add(self, step: int, values: list, wall_time: float | None = None, **fields) -> None:
        from tensorboard.compat.proto import event_pb2, summary_pb2

        event = event_pb2.Event(wall_time=wall_time or time.time(), step=step, **fields)
        if values:
            event.summary.CopyFrom(summary_pb2.Summary(value=values))
        self.writer.add_event(event)

    @staticmethod
    def _scalar(tag: str, value: float):
        from tensorboard.compat.proto import summary_pb2

        return summary_pb2.Summary.Value(tag=tag, simple_value=value)

    @staticmethod
    def _text(tag: str, text: str):
        from tensorboard.compat.proto import summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2

        meta = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="text"))
        tensor = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=[text.encode()],
                                        tensor_shape=tensor_shape_pb2.TensorShapeProto(
                                            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=1)]))
        return summary_pb2.Summary.Value(tag=tag, metadata=meta, tensor=tensor)

    def _hparams(self, info: dict) -> None:
        from google.protobuf import struct_pb2
        from tensorboard.compat.proto import summary_pb2
        from tensorboard.plugins.hparams import plugin_data_pb2

        hparams = {}
        for k, v in info["params"].items():
            hparams[k] = (struct_pb2.Value(bool_value=v) if isinstance(v, bool) else
                          struct_pb2.Value(number_value=v) if isinstance(v, (int, float)) else
                          struct_pb2.Value(string_value=str(v)))
        start = plugin_data_pb2.SessionStartInfo(hparams=hparams, group_name=info.get("group") or "",
                                         start_time_secs=time.time())
        content = plugin_data_pb2.HParamsPluginData(version=0, session_start_info=start).SerializeToString()
        meta = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(
            plugin_name="hparams", content=content))
        table = "\n".join(["| key | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in info["params"].items()])
        self._add(0, [summary_pb2.Summary.Value(tag="_hparams_/session_start_info", metadata=meta),
                      self._text("config", table)])

    def log_row(self, row: dict) -> None:
        from tensorboard.compat.proto import event_pb2

        step = int(row.get("step") or 0)
        if row.get("event") == "resume":
            self._add(step + 1, [], session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START))
        if _event_row(row):
            self._add(step, [self._text("events", json.dumps(row))], row.get("time"))
        else:
            self.log_values(scalars(row), step, row.get("time"))

    def log_values(self, values: dict, step: int, wall_time: float | None = None) -> None:
        self._add(step, [self._scalar(k, v) for k, v in values.items()], wall_time)

    def close(self, status: str) -> None:
        self.writer.close()


# --------------------------------------------------------------------------------------------------------- W&B
def _wandb_key_known() -> bool:
    """An API key in the environment or in ~/.netrc (where `wandb login` puts it): read locally, no network."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    import netrc
    from urllib.parse import urlparse

    host = urlparse(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname
    try:
        return bool(netrc.netrc().authenticators(host))
    except (OSError, netrc.NetrcParseError):
        return False


class Wandb:
    """A W&B run in RUN/wandb/ (project WANDB_PROJECT, else `bl2`; group: the sweep's study). WANDB_MODE decides
    as W&B documents; unset and no API key known: offline (`wandb sync RUN/wandb/offline-run-*` uploads later).
    A resumed run continues the same run id."""

    def __init__(self, run_dir: Path, info: dict, state: dict | None):
        import wandb

        from bl2.progress import console

        mode = os.environ.get("WANDB_MODE") or (state or {}).get("mode")
        if not mode and not _wandb_key_known():
            mode = "offline"
            console.print("W&B: offline (no API key: set WANDB_API_KEY or run `wandb login` to go online); "
                          f"`wandb sync {run_dir / 'wandb'}/offline-run-*` uploads the run later")
        run_id = (state or {}).get("id")
        settings = wandb.Settings(console="off", silent=True, x_disable_stats=True, disable_git=True,
                                  save_code=False, x_save_requirements=False)
        self.run = wandb.init(project=(state or {}).get("project") or os.environ.get("WANDB_PROJECT") or "bl2",
                              dir=str(run_dir), name=info["name"], group=info.get("group"),
                              job_type=info.get("job_type"), config=info["params"] | info["tags"] or None,
                              id=run_id, resume="allow" if run_id else None, mode=mode, settings=settings)
        self.state = {"id": self.run.id, "project": self.run.project, "mode": mode or "online"}

    def log_row(self, row: dict) -> None:
        if _event_row(row):
            self.run.summary[f"event/{row['event']}"] = json.dumps(row)
        elif row.get("kind") == "event":  # done: the run's final numbers
            self.run.summary.update(scalars(row))
        else:
            self.run.log(scalars(row), step=int(row["step"]))

    def log_values(self, values: dict, step: int) -> None:
        self.run.summary.update(values)

    def close(self, status: str) -> None:
        self.run.finish(exit_code=0 if status == "FINISHED" else 1)


# ------------------------------------------------------------------------------------------------------ MLflow
class Mlflow:
    """An MLflow run (--mlflow-uri, else MLFLOW_TRACKING_URI, else MLflow's default; experiment
    MLFLOW_EXPERIMENT_NAME, else `bl2`) with the config and identity as params. A sweep trial's run is a child of
    its study's parent run. A resumed run continues its run; the steps the killed run logged after its checkpoint
    are kept, not logged twice (on CPU the resumed run recomputes them bit for bit)."""

    def __init__(self, run_dir: Path, info: dict, state: dict | None):
        import logging

        import mlflow
        from mlflow.tracking import MlflowClient

        logging.getLogger("mlflow").setLevel(logging.WARNING)  # its INFO lines (database set-up) are noise here

        uri = (state or {}).get("tracking_uri") or info.get("mlflow_uri") or mlflow.get_tracking_uri()
        self.client, self.logged_upto = MlflowClient(tracking_uri=uri), -1
        if state and state.get("run_id"):
            self.run_id = state["run_id"]
            history = self.client.get_metric_history(self.run_id, "train/ce")
            self.logged_upto = max((m.step for m in history), default=-1)
            self.client.update_run(self.run_id, status="RUNNING")
        elif state and state.get("eval_only"):
            raise RuntimeError("no MLflow run recorded")
        else:
            self.run_id = self._create(info)
        self.state = {"tracking_uri": uri, "run_id": self.run_id}
        if state is None:
            from bl2.progress import console

            console.print(f"MLflow: run {self.run_id} in {uri}")

    def _experiment(self) -> str:
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or "bl2"
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        try:
            return self.client.create_experiment(name)
        except Exception:  # another worker of the same sweep made it first
            return self.client.get_experiment_by_name(name).experiment_id

    def _create(self, info: dict) -> str:
        from mlflow.entities import Param

        experiment = self._experiment()
        tags = dict(info["tags"])
        if info.get("study"):
            tags["mlflow.parentRunId"] = self._study_run(experiment, info)
        run_id = self.client.create_run(experiment, run_name=info["name"], tags=tags).info.run_id
        params = [Param(k, str(v)[:6000]) for k, v in info["params"].items()]
        for i in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(run_id, params=params[i : i + 100])
        return run_id

    def _study_run(self, experiment: str, info: dict) -> str:
        """The parent run of a sweep's study, made by its first trial (two workers racing keep the older)."""
        study = str(info["study"]).replace("'", "\\'")
        query = f"tags.bl2_role = 'study' and tags.bl2_study = '{study}'"

        def oldest():
            runs = self.client.search_runs([experiment], query, order_by=["attributes.start_time ASC"],
                                           max_results=1)
            return runs[0].info.run_id if runs else None

        if (found := oldest()) is not None:
            return found
        mine = self.client.create_run(experiment, run_name=f"study {info['group']}",
                                      tags={"bl2_role": "study", "bl2_study": str(info["study"])}).info.run_id
        self.client.set_terminated(mine, "FINISHED")  # a container of trials, never running itself
        winner = oldest()
        if winner != mine:
            self.client.delete_run(mine)
        return winner

    def log_row(self, row: dict) -> None:
        step = int(row.get("step") or 0)
        if _event_row(row):
            self.client.set_tag(self.run_id, f"bl2_event_{row['event']}", json.dumps(row)[:5000])
        elif row.get("kind") == "event" or step > self.logged_upto:
            self.log_values(scalars(row), step, row.get("time"))

    def log_values(self, values: dict, step: int, wall_time: float | None = None) -> None:
        from mlflow.entities import Metric

        ms = int((wall_time or time.time()) * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, ms, step) for k, v in values.items()])

    def close(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status)
