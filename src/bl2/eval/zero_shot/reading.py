"""The reading task as the official 2025 pipeline scores it (`reading/run.py`, causal backend), fast.

Per row: the surprisal -log P(word | item) and of (prev_word | prev_item), where P is the official `get_p2`:
the next-token softmax after the tokenized context (special tokens as the tokenizer adds them) at the word's
first token; a word of several tokens multiplies in P(t_k | context + decoded t_<k), each t_k re-tokenized from
its decoded text as the official code does (with a prefix-space tokenizer that is not the token itself: kept,
for identical numbers). The contexts depend on text only, so all of them are known first and scored in packed
batches instead of one forward per word. Scores: OLS of each reading measure on the baseline predictors with
and without surprisal; the eye-tracking score is the mean over the four RT measures of the gain in R^2 as a share
of the unexplained variance (x100), the self-paced reading score the same with the spill-over predictors."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from bl2.errors import UserError, require

EYE = ("RTfirstfix", "RTfirstpass", "RTgopast", "RTrightbound")
MEASURES = (*EYE, "self_paced_reading_time", "ELAN", "LAN", "N400", "P600", "EPNP", "PNP")
BASE = ("Subtlex_log10", "length", "context_length")
SPILL = (*BASE, "prev_length", "prev_pred")
NEEDED = ("item", "word", "prev_item", "prev_word", *BASE, "prev_length", *MEASURES)
# pandas.read_csv's default missing-value strings: the official pipeline reads the CSV with pandas
NA = {"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A",
      "NA", "NULL", "NaN", "None", "n/a", "nan", "null"}


def read_rows(path: Path) -> list[dict]:
    """Rows with NA cells as None and numeric columns as floats (NaN when missing); item NA -> "None"."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise UserError(f"cannot read {path}: {e}") from None
    require(bool(rows), f"{path} has no rows")
    missing = [c for c in NEEDED if c not in rows[0]]
    require(not missing, f"{path} lacks the reading columns {', '.join(missing)}")
    out = []
    for n, row in enumerate(rows):
        rec = {k: (None if row[k] in NA else row[k]) for k in ("item", "word", "prev_item", "prev_word")}
        rec["item"] = rec["item"] if rec["item"] is not None else "None"  # the official fillna("None")
        require(rec["word"] is not None, f"{path}: row {n} has no word")
        try:
            rec |= {k: (math.nan if row[k] in NA else float(row[k])) for k in (*BASE, "prev_length", *MEASURES)}
        except ValueError as e:
            raise UserError(f"{path}: row {n}: {e}") from None
        out.append(rec)
    return out


# ------------------------------------------------------------------------------------------------ contexts
def word_requests(tok, context: str, word: str) -> list[tuple[str, int]]:
    """(context, token id) pairs whose probabilities multiply into the official P(word | context)."""
    target = tok(word, add_special_tokens=False)["input_ids"]
    require(len(target) >= 1, f"the tokenizer gives no token for the word {word!r}")
    requests = [(context, target[0])]
    context = context + tok.decode(target[0])
    for token in target[1:]:
        piece = tok.decode(token)
        requests.append((context, tok(piece, add_special_tokens=False)["input_ids"][0]))
        context = context + piece
    return requests


def next_token_probs(ensemble, tok, contexts: list[str], with_members: bool, batch_size: int, progress: bool,
                     packed: bool = True):
    """{context: [K, V] float32 softmax of the next token after it} for the distinct contexts."""
    import torch

    from bl2.eval.zero_shot.scoring import packed_logits, padded_logits, system_logits
    from bl2.progress import make_progress

    distinct = sorted(set(contexts))
    ids = [tuple(x) for x in tok(distinct)["input_ids"]]
    order = sorted(range(len(distinct)), key=lambda i: ids[i])
    out = {}
    bar = make_progress("contexts")
    bar.disable = not progress
    with bar, torch.inference_mode():
        task = bar.add_task("reading", total=len(distinct))
        for lo in range(0, len(order), batch_size):
            idx = order[lo : lo + batch_size]
            seqs = [(*ids[i], 0) for i in idx]  # a dummy last token: its target position is the context's end
            scored = [(len(ids[i]),) for i in idx]
            forward = packed_logits if packed else padded_logits
            z, _, owners = forward(ensemble, seqs, scored)
            rows = [torch.softmax(x.float(), dim=-1) for x in system_logits(z, with_members)]
            for n, i in enumerate(owners.tolist()):
                out[distinct[idx[i]]] = torch.stack([r[n] for r in rows]).cpu()
            bar.advance(task, len(idx))
    return out


def surprisals(ensemble, tok, rows: list[dict], with_members: bool = True, batch_size: int = 64,
               progress: bool = True, packed: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """[K, n] surprisal of each row's word and of its previous word (NaN where there is no prev_item)."""
    for n, r in enumerate(rows):
        require(r["prev_item"] is None or r["prev_word"] is not None,
                f"reading row {n} has a prev_item but no prev_word")
    current = [word_requests(tok, r["item"], r["word"]) for r in rows]
    previous = [word_requests(tok, r["prev_item"], r["prev_word"]) if r["prev_item"] is not None else []
                for r in rows]
    probs = next_token_probs(ensemble, tok, [c for reqs in current + previous for c, _ in reqs], with_members,
                             batch_size, progress, packed)

    def surprisal(reqs):
        # float32 probabilities multiplied as Python floats, as np.prod of the official `.item()` values
        p = np.prod(np.array([probs[c][:, t].double().numpy() for c, t in reqs]), axis=0)
        return -np.log(p)

    k = next(iter(probs.values())).shape[0]
    pred = np.stack([surprisal(r) for r in current], axis=1)
    prev = np.stack([surprisal(r) if r else np.full(k, np.nan) for r in previous], axis=1)
    return pred, prev


# ------------------------------------------------------------------------------------------------ regressions
def design(cols: dict[str, np.ndarray], names: tuple[str, ...], extra: str | None) -> np.ndarray:
    """Intercept, main effects, all pairwise interactions of `names`, then `extra` (the formulas of run.py)."""
    parts = [np.ones(len(cols[names[0]]))] + [cols[n] for n in names]
    parts += [cols[a] * cols[b] for i, a in enumerate(names) for b in names[i + 1 :]]
    if extra:
        parts.append(cols[extra])
    return np.column_stack(parts)


def ols(y: np.ndarray, x: np.ndarray) -> dict:
    """R^2, AIC and the last coefficient's estimate, t and p, as statsmodels' OLS reports them."""
    from scipy import stats

    n, p = x.shape
    if n <= p:  # too few complete rows (e.g. --limit): no fit, not a perfect one
        return dict.fromkeys(("r2", "aic", "coef", "t", "p"), math.nan)
    beta, *_ = np.linalg.lstsq(x, y, rcond=None)
    resid = y - x @ beta
    ssr = float(resid @ resid)
    r2 = 1.0 - ssr / float(((y - y.mean()) ** 2).sum())
    llf = -n / 2 * (math.log(2 * math.pi) + math.log(ssr / n) + 1)
    se = np.sqrt(np.diag(ssr / (n - p) * np.linalg.pinv(x.T @ x)))
    t = float(beta[-1] / se[-1])
    return {"r2": r2, "aic": -2 * llf + 2 * p, "coef": float(beta[-1]), "t": t,
            "p": float(2 * stats.t.sf(abs(t), n - p))}


def fit(rows_cols: dict[str, np.ndarray], dv: str, names: tuple[str, ...]) -> dict:
    """The baseline fit and the fit with surprisal (`pred`), each on its own complete cases (dropna)."""
    def complete(keys):
        ok = np.all([~np.isnan(rows_cols[k]) for k in keys], axis=0)
        return {k: rows_cols[k][ok] for k in keys}

    base_cols = complete((dv, *names))
    model_cols = complete((dv, *names, "pred"))
    base = ols(base_cols[dv], design(base_cols, names, None))
    model = ols(model_cols[dv], design(model_cols, names, "pred"))
    gain = (model["r2"] - base["r2"]) / (1 - base["r2"]) if base["r2"] < 1 else math.nan
    return {"Predicted variable": dv, "Coefficient": model["coef"], "Number of standard deviations": model["t"],
            "P-value": model["p"], "R2": model["r2"], "Change in R2 from baseline": model["r2"] - base["r2"],
            "AIC": model["aic"], "Change in AIC from baseline": model["aic"] - base["aic"], "gain": gain}


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    ok = ~np.isnan(a) & ~np.isnan(b)
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


def regressions(rows: list[dict], pred: np.ndarray, prev: np.ndarray) -> dict:
    """One system's reading results: both scores (x100), the per-measure fits and the correlations."""
    cols = {k: np.array([r[k] for r in rows], dtype=np.float64) for k in (*BASE, "prev_length", *MEASURES)}
    cols |= {"pred": pred, "prev_pred": prev}
    plain = [fit(cols, dv, BASE) for dv in MEASURES]
    spill = [fit(cols, dv, SPILL) for dv in MEASURES]
    eye = 100 * float(np.mean([f["gain"] for f in plain if f["Predicted variable"] in EYE]))
    spr = 100 * next(f["gain"] for f in spill if f["Predicted variable"] == "self_paced_reading_time")
    strip = [{k: v for k, v in f.items() if k != "gain"} for f in plain]
    strip_spill = [{k: v for k, v in f.items() if k != "gain"} for f in spill]
    return {"eye_tracking": eye, "self_paced_reading": spr, "predictive_power": strip,
            "predictive_power_spillover": strip_spill,
            "correlations": {dv: pearson(pred, cols[dv]) for dv in MEASURES}}


def report_text(result: dict) -> str:
    return (f"EYE TRACKING SCORE: {result['eye_tracking']:.2f}\n"
            f"SELF-PACED READING SCORE: {result['self_paced_reading']:.2f}\n")
