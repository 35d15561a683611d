"""Metadata entries as text: cleaning them, which ones can never match, and
the segmenters that split raw text into words for counting."""

from __future__ import annotations

import functools
import importlib
import re
import string
import unicodedata
from collections.abc import Callable, Iterable
from pathlib import Path


from .errors import CurateError
from .storage import write_atomic
from .metadata import CJK_LIKE_CHARS, CJK_LIKE_RANGES

WRAPPED_MARKS = ",.;:?!`"  # the marks the spacing rule (docs/semantics.md section 2) surrounds with spaces
# Wikipedia language codes of scripts written without spaces between words
# (MetaCLIP 2's list): their bigram entries are written without a space.
NO_SPACE_LANGUAGES = frozenset({"bo", "dz", "ja", "km", "lo", "my", "ryu", "th", "zh", "zh_classical", "zh_yue"})

# A wrapped mark next to anything but a space (or the entry's end), or a
# TAB/LF/CR anywhere: the spaced text never contains that, under either padding rule.
NEVER_MATCH_PATTERN = r"[^ ][,.;:?!`]|[,.;:?!`][^ ]|[\t\n\r]"
_NEVER_MATCH = re.compile(NEVER_MATCH_PATTERN)

Segmenter = Callable[[str], Iterable[str]]


# -- cleaning -------------------------------------------------------------------
def clean_entry(entry: str) -> str:
    """Collapse whitespace runs to one space and strip the ends."""
    return " ".join(entry.split())


def is_punctuation(char: str) -> bool:
    return char in string.punctuation or unicodedata.category(char).startswith("P")


def is_pure_punctuation(token: str) -> bool:
    return bool(token) and all(is_punctuation(c) for c in token)


def can_never_match(entry: str) -> bool:
    """True when no spaced text can contain this entry (e.g. "St. Louis", "a.m.")."""
    return _NEVER_MATCH.search(entry) is not None


# -- segmenters ---------------------------------------------------------------------
_SPACE_MARKS = str.maketrans({c: f" {c} " for c in WRAPPED_MARKS})
_CJK_CLASS = "".join(f"{re.escape(chr(lo))}-{re.escape(chr(hi))}" for lo, hi in CJK_LIKE_RANGES) + re.escape(
    CJK_LIKE_CHARS
)
_CHAR_TOKENS = re.compile(f"[{_CJK_CLASS}]|[^\\s{_CJK_CLASS}]+")


def words(text: str) -> list[str]:
    """Tokens as the matcher sees them, so every counted word can match."""
    return text.translate(_SPACE_MARKS).split()


def chars(text: str) -> list[str]:
    """Each CJK-like character alone; other runs split on whitespace."""
    return _CHAR_TOKENS.findall(text)


BUILTIN_SEGMENTERS: dict[str, Segmenter] = {"words": words, "chars": chars}


def default_segmenter(lang: str | None) -> str:
    return "chars" if lang in NO_SPACE_LANGUAGES else "words"


def parse_segmenters(specs: Iterable[str]) -> dict[str | None, str]:
    """["jieba:lcut"] applies to every language; ["zh=jieba:lcut", "th=mymod:cut"] per language."""
    out: dict[str | None, str] = {}
    for spec in specs:
        lang, sep, name = spec.partition("=")
        out[lang if sep else None] = name if sep else spec
    return out


@functools.cache
def resolve_segmenter(spec: str) -> Segmenter:
    """A built-in name or an importable "module:function"."""
    if spec in BUILTIN_SEGMENTERS:
        return BUILTIN_SEGMENTERS[spec]
    module, _, attr = spec.partition(":")
    if not attr:
        raise CurateError(f"segmenter {spec!r}: use words, chars or module:function (e.g. jieba:lcut)")
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise CurateError(f"segmenter {spec!r} cannot be loaded ({e})") from None
    if not callable(fn):
        raise CurateError(f"segmenter {spec!r} is not callable")
    return fn


def write_lines_atomic(path: Path, chunks: Iterable[str]) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.writelines(chunks)

    write_atomic(path, write)
