"""Several model dirs used as one model: the direct ensemble of the paper (raw logits averaged) or a
probability mixture. Shared by `eval loss`, `eval blimp`, the teacher side of `cache-logits` and online
distillation (it sits with the models so that cache, eval and distill all reach it downward)."""

from __future__ import annotations

import math
from pathlib import Path

from bl2.errors import require

RULES = ("logit_mean", "prob_mean")


def tokenizer_identity(model_dir: Path) -> str | None:
    """sha256 of the dir's tokenizer.json (None when the dir has none)."""
    from bl2.storage import file_sha256

    path = Path(model_dir) / "tokenizer.json"
    return file_sha256(path) if path.is_file() else None


def check_compatible(dirs: list[Path]) -> tuple[int, str | None]:
    """All members must share vocab size and tokenizer; returns (vocab_size, tokenizer sha256)."""
    from bl2.model.io import config_int

    require(len(dirs) >= 1, "no model dirs given")
    vocabs = {str(d): config_int(d, "vocab_size") for d in dirs}
    require(len(set(vocabs.values())) == 1, f"ensemble members have different vocab sizes: {vocabs}")
    shas = {str(d): tokenizer_identity(d) for d in dirs}
    require(len(set(shas.values())) == 1, "ensemble members have different tokenizers: "
            + ", ".join(f"{d} ({(s or 'none')[:12]})" for d, s in shas.items()))
    return next(iter(vocabs.values())), next(iter(shas.values()))


def combine(logits: list, rule: str = "logit_mean"):
    """Ensemble log-probabilities [.., V] in fp32 from each member's raw logits.
    logit_mean: log_softmax of the averaged raw logits (the paper's rule: a renormalised geometric mean);
    prob_mean: log of the mean of the members' probabilities (an arithmetic mixture)."""
    import torch

    require(rule in RULES, f"unknown ensemble rule {rule!r}; choose one of {', '.join(RULES)}")
    if rule == "logit_mean":
        mean = torch.stack([z.float() for z in logits]).mean(0)
        return torch.log_softmax(mean, dim=-1)
    lps = torch.stack([torch.log_softmax(z.float(), dim=-1) for z in logits])
    return torch.logsumexp(lps, dim=0) - math.log(len(logits))


class Ensemble:
    """One or more causal LMs loaded in eval mode; `logprobs` gives the combined next-token log-probs."""

    def __init__(self, dirs: list[Path | str], device: str = "cpu", rule: str = "logit_mean"):
        from bl2.model.io import load_model

        self.dirs = [Path(d) for d in dirs]
        self.vocab_size, self.tokenizer_sha256 = check_compatible(self.dirs)
        require(rule in RULES, f"unknown ensemble rule {rule!r}; choose one of {', '.join(RULES)}")
        self.rule = rule
        self.device = device
        self.models = [load_model(d, device) for d in self.dirs]

    @property
    def max_positions(self) -> int:
        return min(int(m.config.max_position_embeddings) for m in self.models)

    def member_logits(self, input_ids, attention_mask=None) -> list:
        """Each member's raw logits, output layer in fp32 (models are loaded in fp32)."""
        import torch

        with torch.no_grad():
            return [m(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits for m in self.models]

    def logprobs(self, input_ids, attention_mask=None):
        return combine(self.member_logits(input_ids, attention_mask), self.rule)
