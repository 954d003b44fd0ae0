"""`bl2 finetune`: one task's fine-tuning run as the BabyLM 2025 protocol runs it (AdamW, linear warm-up over a
proportion of the steps then cosine decay to min_factor x lr, shuffled batches, inputs truncated to max_length,
evaluation on the valid file after every epoch), with Hugging Face's `AutoModelForSequenceClassification` on
the model dir (a decoder pools its last non-pad token; right padding) or the official pipeline's head
(`head`, see heads.py). metrics.jsonl's train rows carry each epoch's training seconds (validation excluded:
what benchmarks/bench_finetune.py compares with the official trainer's per-epoch time).

Model selection: the official pipeline keeps the epoch with the best score on the same valid file it then
reports, which selects on the test data; `select="last"` (bl2's default) reports the last epoch, `"best"` the
official choice (labelled as such in results.json)."""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from bl2.errors import UserError, require
from bl2.eval.finetune.heads import HEAD_LABELS
from bl2.eval.finetune.tasks import FORMATS, metrics, read_split
from bl2.runs import record
from bl2.runtime import provenance
from bl2.storage import write_text_atomic


@dataclass
class Hyper:
    lr: float
    batch_size: int
    epochs: int
    weight_decay: float
    warmup_proportion: float
    min_factor: float
    schedule: str
    seed: int
    max_length: int
    source: str = ""

    def __post_init__(self):
        require(self.lr > 0 and self.batch_size >= 1 and self.epochs >= 1 and self.max_length >= 2,
                "--lr must be > 0, --batch-size and --epochs >= 1, --max-length >= 2")
        require(0 <= self.warmup_proportion < 1 and self.seed >= 0 and self.schedule in ("cosine", "none"),
                "--warmup-proportion must be in [0, 1), --seed >= 0, --schedule cosine|none")
        require(0 <= self.weight_decay and 0 <= self.min_factor <= 1, "weight decay must be >= 0, min_factor in "
                "[0, 1]")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Hyper:
        return cls(**d)


def lr_factor(step: int, warmup: int, total: int, min_factor: float, schedule: str) -> float:
    """The official cosine_schedule_with_warmup (finetune/utils.py), or constant after warm-up."""
    if step < warmup:
        return step / max(1, warmup)
    if schedule == "none":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    return max(min_factor, min_factor + (1 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def load(model_dir: Path, num_labels: int, device: str, head: str = "hf"):
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    from bl2.eval.finetune.heads import build

    hf_logging.set_verbosity_error()  # "some weights are newly initialized": the head, by design
    try:
        tok = AutoTokenizer.from_pretrained(str(model_dir))
        model = build(head, str(model_dir), num_labels)
    except Exception as e:  # a dir without tokenizer files or weights is the user's artefact
        raise UserError(f"cannot load {model_dir} for sequence classification: "
                        f"{str(e).strip().splitlines()[0].strip()}") from None
    require(tok.pad_token_id is not None, f"the tokenizer of {model_dir} has no pad token")
    model.config.pad_token_id = tok.pad_token_id
    tok.padding_side = "right"
    return tok, model.to(device)


def batches(tok, texts, labels, size: int, max_length: int, order):
    import torch

    for lo in range(0, len(order), size):
        idx = order[lo : lo + size]
        enc = tok([texts[i] for i in idx], padding=True, truncation=True, max_length=max_length,
                  return_tensors="pt")
        yield enc["input_ids"], enc["attention_mask"], torch.tensor([labels[i] for i in idx])


def predict(model, tok, texts, max_length: int, device: str, batch_size: int = 64) -> list[int]:
    import torch

    preds = []
    model.eval()
    with torch.inference_mode():
        for ids, mask, _ in batches(tok, texts, [0] * len(texts), batch_size, max_length, list(range(len(texts)))):
            preds += model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.argmax(-1).tolist()
    return preds


def finetune_task(model_dir: Path, data_dir: Path, task: str, hp: Hyper, out: Path, device: str = "cpu",
                  select: str = "last", max_train: int | None = None, progress: bool = True,
                  head: str = "hf", hooks=()) -> dict:
    """Fine-tune on DATA/task.train.jsonl, evaluate on DATA/task.valid.jsonl after each epoch; writes OUT/
    {run.json (kind finetune: the task, model, head and hyperparameters, then its summary), results.json,
    metrics.jsonl (kind train/val per epoch), predictions.json} and returns the results. `hooks`: called with
    every epoch's val row; a hook that returns a reason (e.g. "pruned") ends the run after that epoch (a sweep's
    pruner), recorded as `stopped`."""
    import random

    import torch

    from bl2.progress import make_progress

    train = read_split(Path(data_dir) / f"{task}.train.jsonl", task, max_train)
    valid = read_split(Path(data_dir) / f"{task}.valid.jsonl", task)
    random.seed(hp.seed)
    torch.manual_seed(hp.seed)
    tok, model = load(model_dir, FORMATS[task].num_labels, device, head)
    out.mkdir(parents=True, exist_ok=True)
    record.create(out, {"kind": "finetune", "task": task, "model": str(model_dir), "head": head, "select": select,
                        "hyper": asdict(hp), "n_train": len(train.texts), "n_valid": len(valid.texts),
                        "provenance": provenance(device)})
    max_length = min(hp.max_length, int(getattr(model.config, "max_position_embeddings", hp.max_length)))
    opt = torch.optim.AdamW(model.parameters(), lr=hp.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=hp.weight_decay)
    steps_per_epoch = math.ceil(len(train.texts) / hp.batch_size)
    total, warmup = hp.epochs * steps_per_epoch, int(hp.warmup_proportion * hp.epochs * steps_per_epoch)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, warmup, total, hp.min_factor, hp.schedule))
    key = FORMATS[task].metrics[0]
    rows, best, preds, step, t0, stopped = [], -math.inf, None, 0, time.perf_counter(), None
    gen = torch.Generator().manual_seed(hp.seed)
    bar = make_progress("steps")
    bar.disable = not progress
    with bar:
        job = bar.add_task(f"finetune {task}", total=total)
        for epoch in range(1, hp.epochs + 1):
            model.train()
            order = torch.randperm(len(train.texts), generator=gen).tolist()
            losses, t_epoch = [], time.perf_counter()
            for ids, mask, labels in batches(tok, train.texts, train.labels, hp.batch_size, max_length, order):
                loss = model(input_ids=ids.to(device), attention_mask=mask.to(device), labels=labels.to(device)).loss
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                losses.append(loss.item())
                step += 1
                bar.advance(job)
            seconds = round(time.perf_counter() - t_epoch, 3)  # the epoch's training steps, not its validation
            epoch_preds = predict(model, tok, valid.texts, max_length, device)
            scores = metrics(valid.labels, epoch_preds)
            rows += [{"kind": "train", "epoch": epoch, "step": step, "loss": sum(losses) / len(losses),
                      "lr": sched.get_last_lr()[0], "seconds": seconds},
                     {"kind": "val", "epoch": epoch, "step": step, **scores}]
            if select == "last" or scores[key] > best:  # the reported predictions: no second pass, no weight copy
                best, preds = scores[key], epoch_preds
            stopped = next((r for r in (hook(rows[-1]) for hook in hooks) if r), None)
            if stopped:
                break
    final = metrics(valid.labels, preds)
    result = {"task": task, "model": str(model_dir), "metric": key, "score": final[key], "metrics": final,
              "select": select, "selected_epoch": _selected(rows, select, key), "hyper": asdict(hp),
              "stopped": stopped, "epochs_run": rows[-1]["epoch"],
              "max_length_used": max_length, "n_train": len(train.texts), "n_valid": len(valid.texts),
              "head": HEAD_LABELS[head], "head_name": head, "max_train": max_train,
              "seconds": round(time.perf_counter() - t0, 2),
              "majority_baseline": max(valid.labels.count(c) for c in set(valid.labels)) / len(valid.labels)}
    record.update(out, summary={k: result[k] for k in ("metric", "score", "metrics", "selected_epoch", "seconds")})
    write_text_atomic(out / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    write_text_atomic(out / "results.json", json.dumps(result, indent=2) + "\n")
    write_text_atomic(out / "predictions.json", json.dumps(official_predictions(task, preds)))
    return result


def _selected(rows: list[dict], select: str, key: str) -> int:
    val = [r for r in rows if r["kind"] == "val"]
    return val[-1]["epoch"] if select == "last" else max(val, key=lambda r: r[key])["epoch"]


def official_predictions(task: str, preds: list[int]) -> dict:
    """finetune/run.py's predictions.json: {task: {"predictions": [{"id": "task_i", "pred": int}]}}."""
    return {task: {"predictions": [{"id": f"{task}_{i}", "pred": int(p)} for i, p in enumerate(preds)]}}
