"""Build, save and load model dirs. A model dir is what `save_pretrained` writes plus byte copies of the
tokenizer files, so `AutoModelForCausalLM.from_pretrained(dir)` and any HF tool load it directly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from bl2.errors import UserError, require

TOKENIZER_GLOBS = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def build_model(preset: str, vocab_size: int, seq_len: int, seed: int):
    """A freshly initialised LlamaForCausalLM of `preset`; the init is seeded (the reference's was not)."""
    import torch
    from transformers import LlamaForCausalLM

    from bl2.model.presets import llama_config

    torch.manual_seed(seed)
    config = llama_config(preset, vocab_size, seq_len)
    config._attn_implementation = "sdpa"
    return LlamaForCausalLM(config)


def final_hidden(model, input_ids):
    """The final (normed) hidden states [B, L, H] of a causal LM, without its output layer (the fused training loss
    applies that layer chunk by chunk). The call goes through the model's own forward, so wrappers (DDP,
    torch.compile) see it; an empty `logits_to_keep` skips the [B, L, V] logits, and no KV cache is built
    (transformers builds one by default even in training)."""
    import torch

    none = torch.empty(0, dtype=torch.long, device=input_ids.device)
    out = model(input_ids=input_ids, use_cache=False, output_hidden_states=True, logits_to_keep=none)
    return out.hidden_states[-1]


def copy_tokenizer(src_dir: Path, dst_dir: Path) -> None:
    src_dir, dst_dir = Path(src_dir), Path(dst_dir)
    require((src_dir / "tokenizer.json").is_file(), f"{src_dir} has no tokenizer.json")
    dst_dir.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_GLOBS:
        if (src_dir / name).is_file():
            shutil.copyfile(src_dir / name, dst_dir / name)


def save_model_dir(model, out_dir: Path, tokenizer_dir: Path) -> None:
    """Weights (safetensors) + config.json + generation config + the tokenizer files, at the dir's root."""
    from transformers.utils import logging as hf_logging

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    hf_logging.disable_progress_bar()  # one bar per save is noise in training logs
    model.save_pretrained(str(out_dir), safe_serialization=True)
    copy_tokenizer(tokenizer_dir, out_dir)


def check_model_dir(path: Path) -> Path:
    path = Path(path)
    require(path.is_dir(), f"model dir not found: {path}")
    require((path / "config.json").is_file(), f"{path} is not a model dir (no config.json)")
    return path


def read_config(path: Path) -> dict:
    return json.loads((check_model_dir(path) / "config.json").read_text())


def load_model(path: Path, device: str = "cpu", dtype=None):
    """Load any HF causal LM dir in eval mode (fp32 unless a dtype is given)."""
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    path = check_model_dir(path)
    hf_logging.disable_progress_bar()
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype or torch.float32)
    except (OSError, ValueError) as e:
        raise UserError(f"cannot load model from {path}: {str(e).splitlines()[0]}") from None
    return model.to(device).eval()


def model_seq_limit(path: Path) -> int:
    """Longest input the model's position embeddings allow."""
    return int(read_config(path).get("max_position_embeddings", 0))


def count_params(model) -> int:
    return sum(p.numel() for p in model.parameters())
