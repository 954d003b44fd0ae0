"""Where a training step's time goes, bl2's against the Hugging Face path, phase by phase, in one process.

Both sides train the same tiny LlamaForCausalLM (same seed, windows and batch) with the fused AdamW and gradient
clipping; steps alternate between them, so a noisy moment of a shared machine hits both alike:
- bl2: `bl2.distill.step.TrainStep`'s work, split into its phases: the model up to its final hidden states
  (`final_hidden`), the fused output layer + loss (`Objective`, forward), backward, clipping, the finiteness
  check, the optimizer;
- hf: what `Trainer` runs per step on a causal LM (`model(input_ids, labels=...)` = the model, the lm_head and
  `loss_function`), split the same way: the model, the head + `.float()` + cross-entropy, backward, clipping,
  the optimizer.
The fused loss's backward is folded into its forward (it computes both gradients there), so compare the sum of
"loss" and "backward" across the two, not each alone.

    python benchmarks/profile_step.py [--preset tiny] [--vocab 16000] [--batch-size 32] [--steps 8] \
        [--loss-chunk 0] [--out-json F]

Random token windows (the timings do not depend on the text). Prints the median seconds per phase and step.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

PHASES = ("model", "loss", "backward", "clip", "check", "optimizer")


class Clock:
    def __init__(self):
        self.t, self.laps = time.perf_counter(), {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = now - self.t
        self.t = now


def build(args):
    from bl2.distill.config import TrainConfig
    from bl2.distill.step import make_optimizer
    from bl2.model.io import build_model

    cfg = TrainConfig(preset=args.preset, batch_size=args.batch_size, loss_chunk=args.loss_chunk)
    model = build_model(cfg.preset, args.vocab, cfg.seq_len, 0)
    model.train()
    return cfg, model, make_optimizer(model, cfg)


def bl2_step(cfg, model, opt, objective, batch) -> dict:
    from bl2.model.io import final_hidden

    c = Clock()
    hidden = final_hidden(model, batch.input_ids[:, :-1])
    c.lap("model")
    part = objective(hidden, model.get_output_embeddings().weight, batch)
    c.lap("loss")
    part.total.backward()
    c.lap("backward")
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    c.lap("clip")
    bool(torch.isfinite(torch.stack([part.total.detach(), norm])).all())  # TrainStep's one sync per step
    c.lap("check")
    opt.step()
    opt.zero_grad(set_to_none=True)
    c.lap("optimizer")
    return c.laps


def hf_step(cfg, model, opt, batch) -> dict:
    """LlamaForCausalLM.forward(input_ids, labels) spelled out: the model, lm_head, loss_function."""
    ids = batch.input_ids[:, :-1]
    c = Clock()
    hidden = model.model(input_ids=ids, use_cache=False).last_hidden_state
    c.lap("model")
    logits = model.lm_head(hidden)
    loss = model.loss_function(logits=logits, labels=ids, vocab_size=model.config.vocab_size)
    c.lap("loss")
    loss.backward()
    c.lap("backward")
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    c.lap("clip")
    c.lap("check")
    opt.step()
    opt.zero_grad(set_to_none=True)
    c.lap("optimizer")
    return c.laps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="tiny")
    p.add_argument("--vocab", type=int, default=16000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=8, help="measured steps per side (after 2 warm-up steps)")
    p.add_argument("--loss-chunk", type=int, default=0, help="bl2's positions per chunk (0: measured, as the CLI)")
    p.add_argument("--out-json", type=Path)
    args = p.parse_args()
    from bl2.data.batch import Batch
    from bl2.distill import chunks
    from bl2.distill.objective import LossSpec, Objective
    from bl2.runtime import cpu_times, machine_info, tune_allocator

    tune_allocator()  # as the CLI
    start = cpu_times()  # the share stolen by other guests: the noise of a shared VM
    cfg, bl2_model, bl2_opt = build(args)
    _, hf_model, hf_opt = build(args)
    objective = Objective(LossSpec())
    chunk = chunks.choose(args.loss_chunk, bl2_model.config.hidden_size, args.vocab, args.batch_size * cfg.seq_len,
                          "cpu")
    objective.chunk_rows = chunk["rows"]
    g = torch.Generator().manual_seed(0)
    batches = [Batch(torch.randint(3, args.vocab, (args.batch_size, cfg.seq_len + 1), generator=g))
               for _ in range(4)]
    laps: dict[str, list[dict]] = {"bl2": [], "hf": []}
    for i in range(args.steps + 2):
        batch = batches[i % len(batches)]
        a, b = bl2_step(cfg, bl2_model, bl2_opt, objective, batch), hf_step(cfg, hf_model, hf_opt, batch)
        if i >= 2:
            laps["bl2"].append(a)
            laps["hf"].append(b)
    summary = {side: {ph: statistics.median(r[ph] for r in rows) for ph in PHASES} for side, rows in laps.items()}
    for side in summary:
        summary[side]["step"] = statistics.median(sum(r.values()) for r in laps[side])
    print(f"bl2 loss chunk: {chunk['rows']} positions ({chunk['how']})")
    print(f"{'phase':10s} {'bl2 s':>7s} {'hf s':>7s} {'bl2 - hf':>9s}")
    for ph in (*PHASES, "step"):
        a, b = summary["bl2"][ph], summary["hf"][ph]
        print(f"{ph:10s} {a:7.3f} {b:7.3f} {a - b:+9.3f}")
    machine = machine_info(since=start)
    print("machine: " + ", ".join(f"{k} {v}" for k, v in machine.items()))
    if args.out_json:
        args.out_json.write_text(json.dumps({"summary": summary, "laps": laps, "chunk": chunk, "machine": machine,
                                             "args": vars(args)}, indent=2, default=str))


if __name__ == "__main__":
    main()
