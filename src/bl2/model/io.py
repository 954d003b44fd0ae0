"""Build, save and load model dirs. A model dir is what `save_pretrained` writes plus byte copies of the
tokenizer files, so `AutoModelForCausalLM.from_pretrained(dir)` and any HF tool load it directly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from bl2.errors import UserError, require

TOKENIZER_GLOBS = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def build_model(preset: str, vocab_size: int, seq_len: int, seed: int, attention_dropout: float = 0.0):
    """A freshly initialised LlamaForCausalLM of `preset`; the init is seeded (the reference's was not)."""
    import torch
    from transformers import LlamaForCausalLM

    from bl2.model.presets import llama_config

    torch.manual_seed(seed)
    config = llama_config(preset, vocab_size, seq_len, attention_dropout)
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
    state_tokenizer_config(out_dir, getattr(model.config, "max_position_embeddings", None))


def state_tokenizer_config(model_dir: Path, max_length: int | None, side: str = "right") -> None:
    """Make tokenizer_config.json portable: the class `PreTrainedTokenizerFast` (transformers 4.x, e.g. the BabyLM
    2025 pipeline's pinned 4.51.3, cannot build transformers 5's `TokenizersBackend`; both load this one from
    tokenizer.json), the model's context length as `model_max_length` (not the 1e30 "no limit" default), and the
    padding side: fine-tuning tools pad batches, and with Llama's positions counted from 0 regardless of the
    mask, right padding keeps every real token where it was trained. `add_prefix_space` restates tokenizer.json's
    own setting: transformers 4.x's PreTrainedTokenizerFast otherwise rewrites the pre-tokenizer without the
    prefix space, so the same text becomes other tokens than the model was trained on ("The" vs " The")."""
    path = Path(model_dir) / "tokenizer_config.json"
    if not path.is_file():
        return
    config = {k: v for k, v in json.loads(path.read_text()).items() if k != "backend"}  # a transformers-5-only key
    config |= {"tokenizer_class": "PreTrainedTokenizerFast", "padding_side": config.get("padding_side", side)}
    pre = json.loads((Path(model_dir) / "tokenizer.json").read_text()).get("pre_tokenizer") or {}
    if pre.get("type") == "ByteLevel":
        config["add_prefix_space"] = bool(pre.get("add_prefix_space"))
    if max_length:
        config["model_max_length"] = int(max_length)
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")


def check_model_dir(path: Path) -> Path:
    path = Path(path)
    require(path.is_dir(), f"model dir not found: {path}")
    require((path / "config.json").is_file(), f"{path} is not a model dir (no config.json)")
    return path


def read_config(path: Path) -> dict:
    """config.json of a model dir as a dict; garbled JSON is a one-line UserError."""
    file = check_model_dir(path) / "config.json"
    try:
        config = json.loads(file.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{file} is not valid JSON ({_first_line(e)})") from None
    require(isinstance(config, dict), f"{file} is not a JSON object")
    return config


def config_int(path: Path, key: str, default: int | None = None) -> int:
    """An integer entry of a model dir's config.json (vocab_size, max_position_embeddings, ...)."""
    value = read_config(path).get(key, default)
    require(isinstance(value, int) and not isinstance(value, bool),
            f"{Path(path) / 'config.json'}: {key} must be an integer, got {value!r}")
    return value


def load_model(path: Path, device: str = "cpu", dtype=None):
    """Load any HF causal LM dir in eval mode (fp32 unless a dtype is given). A dir whose weights or config
    cannot be loaded (random or truncated safetensors, a config transformers refuses) is a UserError."""
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    path = check_model_dir(path)
    read_config(path)
    hf_logging.disable_progress_bar()
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype or torch.float32)
    except Exception as e:  # SafetensorError, OSError, ValueError, KeyError...: the dir is the user's artefact
        raise UserError(f"cannot load model from {path}: {_first_line(e)}") from None
    return model.to(device).eval()


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def model_seq_limit(path: Path) -> int:
    """Longest input the model's position embeddings allow."""
    return config_int(path, "max_position_embeddings", 0)


def count_params(model) -> int:
    return sum(p.numel() for p in model.parameters())
