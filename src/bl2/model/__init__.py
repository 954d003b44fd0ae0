"""Models: named Llama presets, and run dirs that are Hugging Face model dirs (weights + config + tokenizer)."""
