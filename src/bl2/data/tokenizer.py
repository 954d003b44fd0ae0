"""The BPE tokenizer of the reference (NFKC, ByteLevel with prefix space, vocab 16000, min_frequency 2),
plus the full 256-byte initial alphabet so that no byte is ever dropped, and fast exact batch encoding.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from bl2.storage import file_sha256

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>"]  # ids 0, 1, 2
PAD, BOS, EOS = SPECIAL_TOKENS
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def new_tokenizer() -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    return tok


def train_tokenizer(texts: Iterable[str], vocab_size: int, min_frequency: int = 2) -> Tokenizer:
    """Train the BPE on an iterator of text pieces (lines or batches of lines)."""
    tok = new_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    for i, name in enumerate(SPECIAL_TOKENS):
        assert tok.token_to_id(name) == i, f"special token {name} must have id {i}"
    return tok


def save_hf_tokenizer(tok: Tokenizer, out_dir: Path) -> None:
    """Write tokenizer.json and the config files AutoTokenizer.from_pretrained needs."""
    from transformers import PreTrainedTokenizerFast

    # right padding: real tokens keep the positions they were trained at (Llama counts positions from 0
    # whatever the mask), and it is the BabyLM 2025 pipeline's fine-tuning default (--padding_side right)
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                 padding_side="right")
    hf.save_pretrained(str(out_dir))


def tokenizer_sha256(folder: Path) -> str:
    """Identity of a tokenizer: sha256 of its tokenizer.json bytes (run dirs hold byte copies)."""
    return file_sha256(Path(folder) / "tokenizer.json")


def vocab_size_of(folder: Path) -> int:
    return Tokenizer.from_file(str(Path(folder) / "tokenizer.json")).get_vocab_size()


def _without_prefix_space(tok: Tokenizer) -> Tokenizer:
    spec = json.loads(tok.to_str())
    spec["pre_tokenizer"]["add_prefix_space"] = False
    return Tokenizer.from_str(json.dumps(spec))


def _safe_cut(text: str, i: int) -> bool:
    """A cut after the newline at text[i] gives the same pre-tokens as the whole text when it has
    non-whitespace on both sides: the ByteLevel regex then makes that "\\n" a pre-token of its own."""
    return 0 < i < len(text) - 1 and not text[i - 1].isspace() and not text[i + 1].isspace()


def _pieces(text: str, target_chars: int) -> Iterator[str]:
    start = 0
    while len(text) - start > target_chars:
        i = text.find("\n", start + target_chars)
        while i != -1 and not _safe_cut(text, i):
            i = text.find("\n", i + 1)
        if i == -1:
            break
        yield text[start : i + 1]
        start = i + 1
    yield text[start:]


class FastEncoder:
    """Encodes a long text exactly as `tok.encode(text)` would, but in parallel: the text is cut at
    newlines where the cut cannot change the pre-tokenization; pieces after the first are encoded
    without the prefix space (the whole-text encode adds one only at the very start)."""

    def __init__(self, tok: Tokenizer, piece_chars: int = 1 << 16):
        self.first = tok
        self.rest = _without_prefix_space(tok)
        self.piece_chars = piece_chars

    def encode(self, text: str) -> list[int]:
        pieces = list(_pieces(text, self.piece_chars))
        ids = list(self.first.encode(pieces[0], add_special_tokens=False).ids)
        for enc in self.rest.encode_batch(pieces[1:], add_special_tokens=False):
            ids.extend(enc.ids)
        return ids
