"""Data preparation: cleaning, line splits, the BPE tokenizer, the token store, the built-in sample corpus."""
