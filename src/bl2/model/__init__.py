"""Models: named Llama presets, run dirs that are Hugging Face model dirs (weights + config + tokenizer), and
the teacher ensemble (`ensemble`: several model dirs as one, used by cache-logits, eval and online KD)."""
