"""Per-source cleaning rules of the BabyLlama reference code (mrclean.py), chosen by the file's stem.

One deliberate change: where the reference deletes blank lines by gluing the paragraphs around them
(`re.sub('\\n\\n', '', text)`), we keep a single newline so that words of adjacent paragraphs never merge.
"""

import re

_SPACES = re.compile(r"[ \t\u00A0]+")
_SPACE_BEFORE_PUNCT = re.compile(r" ([.,;!?])")
_BLANK_LINES = re.compile(r"\n(?:[ \t]*\n)+")


def _collapse_spaces(text: str) -> str:
    return _SPACE_BEFORE_PUNCT.sub(r"\1", _SPACES.sub(" ", text))


def _drop_blank_lines(text: str) -> str:
    text = _BLANK_LINES.sub("\n", text)
    return text[1:] if text.startswith("\n") else text


def _drop_subtitle_lines(text: str) -> str:
    return "".join(line for line in text.splitlines(keepends=True) if "subtitle" not in line.lower())


def clean_childes(text: str) -> str:
    return _collapse_spaces(text)


def clean_bnc_spoken(text: str) -> str:
    return _drop_blank_lines(_collapse_spaces(text))


def clean_simple_wiki(text: str) -> str:
    return _drop_blank_lines(text)


def clean_open_subtitles(text: str) -> str:
    return _drop_subtitle_lines(text)


CLEANERS = {
    "childes": clean_childes,
    "bnc_spoken": clean_bnc_spoken,
    "simple_wiki": clean_simple_wiki,
    "open_subtitles": clean_open_subtitles,
}


def clean_text(stem: str, text: str) -> str:
    """Apply the cleaning rule of source `stem` (e.g. "childes"); unknown sources are returned unchanged."""
    cleaner = CLEANERS.get(stem)
    return cleaner(text) if cleaner else text
