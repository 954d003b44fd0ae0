"""Data preparation: cleaning, line splits, the BPE tokenizer, the token store, window arithmetic
(`windows`: shared by the cache, training and evaluation), the built-in sample corpus."""
