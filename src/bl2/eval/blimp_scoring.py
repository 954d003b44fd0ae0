"""How `bl2 eval blimp` scores sentences: the summed log-probability of each sentence's tokens after one BOS token,
for every member of an ensemble and for their direct ensemble. Batches of sentences are packed into prefix tries
(each distinct prefix is one position of one forward; a 4D attention mask lets a node see only its ancestors);
plain right-padded batches are the fallback and the reference the packing is checked against."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bl2.progress import make_progress

ENSEMBLE_RULE = "logit_mean"  # the paper's direct ensemble: raw logits averaged, then log-softmax

ROW_NODES = 256  # trie nodes per packed row: attention over a row stays cheap next to the output layer


def member_systems(logits: list, pick, with_members: bool):
    """[K, B] scores from each member's raw logits: member rows (when asked, or when there is one model),
    then the direct ensemble's row. `pick` maps log-probs [.., V] to per-sentence sums [B]."""
    import torch

    from bl2.model.ensemble import combine

    rows = []
    if with_members or len(logits) == 1:
        # == combine([z]) (the mean of one tensor is itself) without its stack-and-mean copies
        rows = [pick(torch.log_softmax(z.float(), dim=-1)) for z in logits]
    if len(logits) > 1:
        rows.append(pick(combine(logits, ENSEMBLE_RULE)))
    return torch.stack(rows).cpu()


def padded_batch(seqs: list[list[int]], bos: int, pad: int):
    """inputs = BOS + tokens[:-1], targets = tokens, right-padded; mask marks real target positions."""
    import torch

    width = max(1, max(len(s) for s in seqs))
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    targets = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    ids[:, 0] = bos
    for row, s in enumerate(seqs):
        if s:
            ids[row, 1 : len(s)] = torch.tensor(s[:-1])
            targets[row, : len(s)] = torch.tensor(s)
            mask[row, : len(s)] = 1
    return ids, targets, mask


def score_padded(ensemble, seqs: list[list[int]], bos: int, pad: int, with_members: bool):
    """Plain batching (what lm-eval does): one right-padded row per sentence. Returns [K, B]."""
    ids, targets, mask = (t.to(ensemble.device) for t in padded_batch(seqs, bos, pad))
    attention = mask.clone()
    attention[:, 0] = 1  # BOS stays visible for a sentence with no tokens: no attention row is fully masked

    def pick(logprobs):
        picked = logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1).double()
        return picked.where(mask.bool(), 0.0).sum(-1)  # where, not *: a -inf at a padded position stays out

    return member_systems(ensemble.member_logits(ids, attention_mask=attention), pick, with_members)


@dataclass
class Packed:
    """A batch of sentences as prefix tries, one trie per row: node 0 is BOS, every other node is one
    distinct prefix (its last token as input, its depth as position). Target k, token `tokens[k]`, is
    scored by the logits of node `nodes[k]` of row `rows[k]` and belongs to sentence `owners[k]`."""

    ids: object  # [R, L] long
    positions: object  # [R, L] long
    parents: object  # [R, L] long (BOS and padding nodes are their own parents)
    rows: object  # [n_targets] long, and so are nodes, tokens, owners
    nodes: object
    tokens: object
    owners: object

    def attention_mask(self, dtype):
        """[R, 1, L, L] additive mask: a node sees exactly its ancestors and itself."""
        import torch

        n_rows, width = self.ids.shape
        seen = torch.zeros((n_rows, width, width), dtype=torch.bool)
        cur = torch.arange(width).expand(n_rows, width).clone()
        for _ in range(int(self.positions.max()) + 1):  # walk up one generation per step, depth+1 steps
            seen.scatter_(2, cur.unsqueeze(-1), True)
            cur = self.parents.gather(1, cur)
        mask = torch.zeros((n_rows, 1, width, width), dtype=dtype)
        return mask.masked_fill_(~seen.unsqueeze(1), torch.finfo(dtype).min)


def matched_prefix(roots: dict, kids: list[dict], seq: list[int]) -> int:
    """How many of seq's input prefixes (seq[:1], seq[:2], .. seq[:-1]) are already nodes of the forest."""
    table = roots
    for n, token in enumerate(seq[:-1]):
        node = table.get(token)
        if node is None:
            return n
        table = kids[node]
    return max(len(seq) - 1, 0)


def pack_forest(seqs: list[list[int]], scored: list, row_nodes: int = ROW_NODES) -> Packed:
    """Pack whole token sequences (as the model reads them) into per-row prefix forests: each distinct input
    prefix is one node; a sequence's first token is a root (its own parent, position 0). Target j of
    sequence i (token seqs[i][j], j >= 1, for j in scored[i]) is read from the node of prefix seqs[i][:j].
    Sequences are best given in lexicographic order, so shared prefixes meet."""
    import torch

    rows: list[tuple[list, list, list]] = []  # (tokens, parents, depths) per row
    roots: dict = {}
    kids: list[dict] = []
    targets: list[tuple[int, int, int, int]] = []
    for owner, (seq, wanted) in enumerate(zip(seqs, scored)):
        need = max(len(seq) - 1, 0) - (matched_prefix(roots, kids, seq) if rows else 0)
        if not rows or (len(rows[-1][0]) + need > row_nodes and len(rows[-1][0]) > 0):
            rows.append(([], [], []))
            roots, kids = {}, []
        tokens, parents, depths = rows[-1]
        wanted, node, table = set(wanted), None, roots
        for j, token in enumerate(seq[:-1]):
            child = table.get(token)
            if child is None:
                child = table[token] = len(tokens)
                kids.append({})
                tokens.append(token)
                parents.append(child if node is None else node)
                depths.append(0 if node is None else depths[node] + 1)
            node, table = child, kids[child]
            if j + 1 in wanted:
                targets.append((len(rows) - 1, node, seq[j + 1], owner))
    width = max(1, max(len(r[0]) for r in rows))
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    positions = torch.zeros_like(ids)
    parents_t = torch.arange(width).repeat(len(rows), 1)  # padding nodes are their own parents
    for r, (tokens, parents, depths) in enumerate(rows):
        if tokens:
            ids[r, : len(tokens)] = torch.tensor(tokens)
            positions[r, : len(tokens)] = torch.tensor(depths)
            parents_t[r, : len(tokens)] = torch.tensor(parents)
    cols = torch.tensor(targets, dtype=torch.long).reshape(-1, 4).T
    return Packed(ids, positions, parents_t, *cols)


def pack_tries(seqs: list[list[int]], bos: int, row_nodes: int = ROW_NODES) -> Packed:
    """BLiMP's form: every sentence after one BOS token, all of its tokens scored (one trie per row)."""
    return pack_forest([[bos, *s] for s in seqs], [range(1, len(s) + 1) for s in seqs], row_nodes)


def score_packed(ensemble, seqs: list[list[int]], bos: int, pad: int, with_members: bool):
    """Prefix-sharing batching: every distinct prefix of the batch is computed once. Returns [K, B]."""
    import torch

    p = pack_tries(seqs, bos)
    dev = ensemble.device
    ids, positions = p.ids.to(dev), p.positions.to(dev)
    rows, nodes, tokens, owners = (t.to(dev) for t in (p.rows, p.nodes, p.tokens, p.owners))
    mask = p.attention_mask(ensemble.models[0].dtype).to(dev)
    logits = [m(input_ids=ids, position_ids=positions, attention_mask=mask).logits for m in ensemble.models]

    def pick(logprobs):
        picked = logprobs[rows, nodes, tokens].double()
        return torch.zeros(len(seqs), dtype=torch.float64, device=dev).index_add_(0, owners, picked)

    return member_systems(logits, pick, with_members)


def packing_agrees(ensemble, token_lists: list[list[int]], bos: int, pad: int, n: int = 24) -> bool:
    """Prefix packing needs a model that honours custom 4D attention masks and position ids (HF Llama,
    Mistral, Qwen2, GPT-2 do); check it on the first sentences in lexicographic order (they share prefixes)
    against plain batching, and fall back to plain batching when it does not agree."""
    import torch

    seqs = sorted(token_lists)[:n]
    with torch.inference_mode():
        plain = score_padded(ensemble, seqs, bos, pad, True)
        try:
            packed = score_packed(ensemble, seqs, bos, pad, True)
        except Exception:  # any model that cannot run the packed form simply does not get it
            return False
    return bool(torch.isfinite(packed).all()) and torch.allclose(plain, packed, rtol=0.0, atol=1e-3)


def batches(token_lists: list[list[int]], batch_size: int, packed: bool) -> list[list[int]]:
    """Sentence indices per forward: lexicographic order for packing (shared prefixes meet), else by length
    (padding stays small), longest first (an out-of-memory batch, if any, comes first)."""
    if packed:
        order = sorted(range(len(token_lists)), key=token_lists.__getitem__)
    else:
        order = sorted(range(len(token_lists)), key=lambda i: -len(token_lists[i]))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def score_sentences(ensemble, token_lists: list[list[int]], bos: int, pad: int, batch_size: int = 64,
                    with_members: bool = True, progress: bool = True, packed: bool = True) -> np.ndarray:
    """[K, N] float64 sentence scores; K = members + ensemble (or 1 for a single model)."""
    import torch

    n_rows = len(ensemble.models) + 1 if with_members and len(ensemble.models) > 1 else 1
    scores = np.zeros((n_rows, len(token_lists)), dtype=np.float64)
    score_batch = score_packed if packed else score_padded
    bar = make_progress("sentences")
    bar.disable = not progress
    with bar, torch.inference_mode():
        task = bar.add_task("BLiMP", total=len(token_lists))
        for idx in batches(token_lists, batch_size, packed):
            scores[:, idx] = score_batch(ensemble, [token_lists[i] for i in idx], bos, pad, with_members).numpy()
            bar.advance(task, len(idx))
    return scores


