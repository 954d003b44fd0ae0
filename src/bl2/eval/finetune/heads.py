"""The classification heads `bl2 finetune --head` offers on a causal-LM dir.

- `hf`: Hugging Face's `AutoModelForSequenceClassification` (for Llama: one bias-free linear `score` layer on
  the last non-pad token's hidden state): what a transformers user gets.
- `babylm2025`: the official pipeline's `ModelForSequenceClassification` as `eval_finetuning.sh` runs it
  (evaluation_pipeline/finetune/classifier_model.py): the base model (`AutoModel`), its last hidden state at
  the FIRST position (neither --causal nor --take_final is passed), then LayerNorm (no affine) -> Linear -> GELU
  -> LayerNorm (no affine) -> Dropout(0.1) -> Linear. A causal decoder's first position sees only the first
  token, so this head classifies from the first word of the input: kept for comparability with official
  numbers, not as a recommendation.
- `babylm2025-last`: the official head on the last non-pad token (right padding), which sees the whole input.
"""

from __future__ import annotations

from types import SimpleNamespace

HEADS = ("hf", "babylm2025", "babylm2025-last")
HEAD_LABELS = {"hf": "hf (AutoModelForSequenceClassification, last non-pad token)",
               "babylm2025": "babylm2025 (official ClassifierHead, first token)",
               "babylm2025-last": "babylm2025-last (official ClassifierHead, last non-pad token)"}


def official_model(model_dir: str, num_labels: int, pool: str, dropout: float = 0.1, eps: float = 1e-5):
    """The official pipeline's classifier on `model_dir`'s base model; `pool` is "first" or "last"."""
    import torch
    from torch import nn
    from transformers import AutoModel

    class OfficialClassifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.transformer = AutoModel.from_pretrained(model_dir)
            h = self.transformer.config.hidden_size
            self.classifier = nn.Sequential(
                nn.LayerNorm(h, eps, elementwise_affine=False), nn.Linear(h, h), nn.GELU(),
                nn.LayerNorm(h, eps, elementwise_affine=False), nn.Dropout(dropout), nn.Linear(h, num_labels))
            self.config = self.transformer.config

        def forward(self, input_ids, attention_mask, labels=None):
            states = self.transformer(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            if pool == "first":
                pooled = states[:, 0]
            else:  # right padding: the last attended position of each row
                last = attention_mask.long().sum(-1) - 1
                pooled = states[torch.arange(states.shape[0], device=states.device), last]
            logits = self.classifier(pooled)
            loss = None if labels is None else nn.functional.cross_entropy(logits, labels)
            return SimpleNamespace(logits=logits, loss=loss)

    return OfficialClassifier()


def build(head: str, model_dir: str, num_labels: int):
    """The model of a head name (weights of the model dir; the head randomly initialised)."""
    from transformers import AutoModelForSequenceClassification

    if head == "hf":
        return AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=num_labels)
    return official_model(model_dir, num_labels, "first" if head == "babylm2025" else "last")
