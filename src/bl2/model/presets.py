"""Named model presets (DESIGN §4) and the training defaults that go with each."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from bl2.errors import require

SEQ_LEN = 128


@dataclass(frozen=True)
class ModelPreset:
    """Architecture of a Llama preset; the vocabulary comes from the tokenizer."""

    hidden: int  # hidden size
    intermediate: int  # MLP inner size
    layers: int  # transformer blocks
    heads: int  # attention heads
    kv_heads: int  # key/value heads (grouped-query attention when < heads)
    tie_embeddings: bool = False  # reference models are all untied (16M: 8.39M blocks + 2 x 4.10M embeddings)


@dataclass(frozen=True)
class TrainDefaults:
    """Optimisation defaults of a preset (the paper's table 2 for 345m, the reference 16M config for 16m)."""

    lr: float
    epochs: int
    batch_size: int  # sequences per optimizer step (before gradient accumulation splits it)
    warmup_steps: int  # linear warm-up steps
    weight_decay: float  # on matrices only (not norms, not biases)
    grad_accum: int = 1


PRESETS: dict[str, ModelPreset] = {
    "debug": ModelPreset(hidden=32, intermediate=64, layers=2, heads=2, kv_heads=1),
    "tiny": ModelPreset(hidden=128, intermediate=512, layers=4, heads=4, kv_heads=2),
    "16m": ModelPreset(hidden=256, intermediate=1024, layers=8, heads=8, kv_heads=8),
    "345m": ModelPreset(hidden=960, intermediate=2560, layers=32, heads=15, kv_heads=5),
}

TRAIN_DEFAULTS: dict[str, TrainDefaults] = {
    "debug": TrainDefaults(lr=3e-3, epochs=1, batch_size=8, warmup_steps=2, weight_decay=0.0),
    "tiny": TrainDefaults(lr=2e-3, epochs=2, batch_size=32, warmup_steps=50, weight_decay=0.0),
    "16m": TrainDefaults(lr=3e-4, epochs=4, batch_size=128, warmup_steps=300, weight_decay=0.0),
    "345m": TrainDefaults(lr=7e-4, epochs=8, batch_size=128, warmup_steps=600, weight_decay=5.0, grad_accum=4),
}


def get_preset(name: str) -> ModelPreset:
    require(name in PRESETS, f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


def llama_config(preset: str, vocab_size: int, seq_len: int = SEQ_LEN, attention_dropout: float = 0.0):
    """The transformers LlamaConfig of a preset: max_position_embeddings = 2 * seq_len, specials 0/1/2;
    `attention_dropout` (training only) is HF Llama's one dropout."""
    from transformers import LlamaConfig

    p = get_preset(preset)
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=p.hidden,
        intermediate_size=p.intermediate,
        num_hidden_layers=p.layers,
        num_attention_heads=p.heads,
        num_key_value_heads=p.kv_heads,
        max_position_embeddings=2 * seq_len,
        tie_word_embeddings=p.tie_embeddings,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        rms_norm_eps=1e-6,
        initializer_range=0.02,
        attention_dropout=attention_dropout,
    )


def preset_summary(name: str) -> dict:
    return asdict(get_preset(name)) | {"train_defaults": asdict(TRAIN_DEFAULTS[name])}
