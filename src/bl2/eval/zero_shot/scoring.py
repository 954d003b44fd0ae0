"""Completion scores as the official BabyLM 2025 pipeline computes them for a causal model, fast.

The rule (its `sentence_zero_shot/dataset.py`, causal backend): the whole sentence is tokenized as the model's
tokenizer does by default (special tokens included: a BOS only where the tokenizer adds one); the model reads
tokens[:-1] and predicts tokens[1:]; the score of a sentence is the sum of the log-probabilities of the target
tokens whose character span ends after `len(sentence) - len(completion)` (the completion's first character),
with logits divided by the temperature before the log-softmax. The first token is never a target.

The speed: every distinct (sentence, completion) is scored once; sequences in lexicographic token order are
packed into prefix forests (blimp_scoring.pack_forest: each distinct prefix is one position of one forward, so
the shared context of EWoK's two targets or entity tracking's options is computed once); only the logits of
scored positions are turned into log-probs, once per temperature. A model that cannot run the packed form
(custom 4D masks and position ids) gets right-padded rows instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bl2.errors import UserError, require
from bl2.eval.blimp_scoring import ENSEMBLE_RULE, pack_forest
from bl2.progress import make_progress


@dataclass(frozen=True)
class Encoded:
    """A sentence as the model reads it, and the positions j >= 1 whose token seq[j] is scored."""

    tokens: tuple[int, ...]
    scored: tuple[int, ...]


def encode(tok, sentences: list[str], completions: list[str]) -> list[Encoded]:
    """Tokenize whole sentences with offsets and mark the completion's tokens (the official phrase mask)."""
    if not sentences:
        return []
    try:
        enc = tok(list(sentences), return_offsets_mapping=True)
    except Exception as e:  # a tokenizer that cannot take the text (or give offsets) is the model dir's defect
        raise UserError(f"the model's tokenizer cannot encode the evaluation data: {str(e).splitlines()[0]}") from None
    out = []
    for sentence, completion, ids, offsets in zip(sentences, completions, enc["input_ids"], enc["offset_mapping"]):
        start = len(sentence) - len(completion) + (offsets[0][0] if offsets else 0)
        out.append(Encoded(tuple(ids), tuple(j for j in range(1, len(ids)) if offsets[j][1] > start)))
    return out


def temperatures(low: float = 1.0, high: float | None = None, step: float = 0.05) -> list[float]:
    """The official sweep: torch.arange(low, high + step, step).clamp(min=1e-6), or [low] alone."""
    import torch

    require(low > 0, f"--min-temperature must be > 0, got {low}")
    if high is None:
        return [float(low)]
    require(high >= low and step > 0, "--max-temperature must be >= --min-temperature and the interval > 0")
    return torch.arange(low, high + step, step).clamp(min=1e-6).tolist()


# ------------------------------------------------------------------------------------------------ forwards
def packed_logits(ensemble, seqs: list[tuple[int, ...]], scored: list[tuple[int, ...]]):
    """Each member's raw logits at the scored positions [n_targets, V], their tokens and owners."""
    p = pack_forest([list(s) for s in seqs], scored)
    dev = ensemble.device
    mask = p.attention_mask(ensemble.models[0].dtype).to(dev)
    ids, positions = p.ids.to(dev), p.positions.to(dev)
    rows, nodes = p.rows.to(dev), p.nodes.to(dev)
    z = [m(input_ids=ids, position_ids=positions, attention_mask=mask).logits[rows, nodes] for m in ensemble.models]
    return z, p.tokens.to(dev), p.owners.to(dev)


def padded_logits(ensemble, seqs: list[tuple[int, ...]], scored: list[tuple[int, ...]]):
    """The same from plain right-padded rows (2D attention mask), for models without 4D-mask support."""
    import torch

    width = max(1, max(len(s) for s in seqs))
    ids = torch.zeros((len(seqs), width), dtype=torch.long)
    mask = torch.zeros_like(ids)
    rows, cols, tokens, owners = [], [], [], []
    for i, (s, wanted) in enumerate(zip(seqs, scored)):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : max(len(s), 1)] = 1
        for j in wanted:
            rows.append(i), cols.append(j - 1), tokens.append(s[j]), owners.append(i)
    dev = ensemble.device
    r, c = torch.tensor(rows, dtype=torch.long, device=dev), torch.tensor(cols, dtype=torch.long, device=dev)
    z = [m(input_ids=ids.to(dev), attention_mask=mask.to(dev)).logits[r, c] for m in ensemble.models]
    return z, torch.tensor(tokens, dtype=torch.long, device=dev), torch.tensor(owners, dtype=torch.long, device=dev)


def system_logits(z: list, with_members: bool) -> list:
    """Rows of systems: each member (when asked, or when alone), then the direct ensemble (mean raw logits)."""
    assert ENSEMBLE_RULE == "logit_mean"  # the temperature divides the ensemble's averaged logits
    import torch

    rows = list(z) if with_members or len(z) == 1 else []
    if len(z) > 1:
        rows.append(torch.stack([x.float() for x in z]).mean(0))
    return rows


def batch_scores(ensemble, seqs, scored, temps: list[float], with_members: bool, packed: bool):
    """[K, T, B] float64 sums of target log-probs for one batch of sequences."""
    import torch

    z, tokens, owners = (packed_logits if packed else padded_logits)(ensemble, seqs, scored)
    rows = system_logits(z, with_members)
    out = torch.zeros((len(rows), len(temps), len(seqs)), dtype=torch.float64)
    for k, logits in enumerate(rows):
        for t, temp in enumerate(temps):
            lp = torch.log_softmax(logits.float() / temp, dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
            sums = torch.zeros(len(seqs), dtype=torch.float64, device=lp.device)
            out[k, t] = sums.index_add_(0, owners, lp.double()).cpu()
    return out


def packing_agrees(ensemble, encoded: list[Encoded], n: int = 16) -> bool:
    """Prefix packing needs custom 4D attention masks and position ids (HF Llama, GPT-2, ... honour them):
    check it on the first sequences in token order against plain batching."""
    import torch

    probe = sorted(set(encoded), key=lambda e: e.tokens)[:n]
    probe = [e for e in probe if e.scored] or probe
    seqs, scored = [e.tokens for e in probe], [e.scored for e in probe]
    with torch.inference_mode():
        plain = batch_scores(ensemble, seqs, scored, [1.0], True, packed=False)
        try:
            packed = batch_scores(ensemble, seqs, scored, [1.0], True, packed=True)
        except Exception:  # any model that cannot run the packed form simply does not get it
            return False
    return bool(torch.isfinite(packed).all()) and torch.allclose(plain, packed, rtol=0.0, atol=1e-3)


def score_encoded(ensemble, encoded: list[Encoded], temps: list[float], batch_size: int = 64,
                  with_members: bool = True, packed: bool = True, label: str = "scoring",
                  progress: bool = True) -> np.ndarray:
    """[K, T, N] scores of N encoded sentences (K systems, T temperatures); duplicates scored once."""
    import torch

    distinct = sorted(set(encoded), key=lambda e: e.tokens)  # lexicographic: shared prefixes meet in a row
    where = {e: i for i, e in enumerate(distinct)}
    n_sys = len(ensemble.models) + 1 if with_members and len(ensemble.models) > 1 else 1
    scores = np.zeros((n_sys, len(temps), len(distinct)), dtype=np.float64)
    bar = make_progress("sentences")
    bar.disable = not progress
    with bar, torch.inference_mode():
        task = bar.add_task(label, total=len(distinct))
        for lo in range(0, len(distinct), batch_size):
            chunk = distinct[lo : lo + batch_size]
            scores[:, :, lo : lo + len(chunk)] = batch_scores(
                ensemble, [e.tokens for e in chunk], [e.scored for e in chunk], temps, with_members, packed).numpy()
            bar.advance(task, len(chunk))
    return scores[:, :, [where[e] for e in encoded]]
