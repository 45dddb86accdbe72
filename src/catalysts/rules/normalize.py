"""Text normalisation and tokenisation shared by rule terms and documents.

One function folds both sides (NFKC, then Unicode casefolding), one function splits the
folded text into tokens, so a term and a document agree on what a "word" is:

- a token is a run of letters, digits and combining marks (Unicode L, N, M); everything
  else (spaces, punctuation, apostrophes, hyphens, HTML leftovers) separates tokens, so
  `OpenAI's` is `openai` + `s` and `AI-powered` is `ai` + `powered`;
- scripts written without spaces between words (Han, Hiragana, Katakana, Thai, Lao,
  Khmer, Myanmar) give one token per character, so a CJK term is a phrase of characters;
- a rule term that contains punctuation, such as `S-1`, is therefore a phrase of its
  tokens (`s` `1`): it matches "S-1" and also "S 1" and "S.1". We accept that small
  looseness because the alternative (punctuation-exact terms) misses real headlines that
  write the same thing with a different dash or space.

Tokens carry offsets into the ORIGINAL string, even when folding changed lengths
(`ß` -> `ss`, `ﬁ` -> `fi`, a decomposed `é`), so evidence can be highlighted in place.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from itertools import islice

from catalysts.rules._marks import MARKS, MARKS_BMP

# Scripts written without spaces (Han, Hiragana, Katakana, Thai, Lao, Khmer, Myanmar):
# each character is its own word.
SPACELESS_BMP = (
    "\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u19e0-\u19ff\u2e80-\u2fdf\u3005\u3007"
    "\u3021-\u3029\u3038-\u303b\u3041-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
    "\ua9e0-\ua9ff\uaa60-\uaa7f\uf900-\ufaff\uff66-\uff9f"
)
SPACELESS = SPACELESS_BMP + "\U00020000-\U0003134f"
_ASCII_TOKEN = re.compile(r"[0-9a-z]+")
_ASCII_SEPARATORS = bytes(
    b if chr(b) in "0123456789abcdefghijklmnopqrstuvwxyz" else 32 for b in range(256)
)
# One spaceless character, or a run of letters/digits/marks outside those scripts. The BMP
# variant is the same for text without astral characters, and much faster (see _marks).
_TOKEN = re.compile(f"[{SPACELESS}]|(?:[^\\W_{SPACELESS}]|[{MARKS}])+")
_TOKEN_BMP = re.compile(f"[{SPACELESS_BMP}]|(?:[^\\W_{SPACELESS_BMP}]|[{MARKS_BMP}])+")
_SPACELESS_CHAR = re.compile(f"[{SPACELESS}]")
# A non-ASCII character that is, or folds into, part of a word. Text without any has only
# punctuation beyond ASCII (curly quotes, dashes, no-break spaces) whose NFKC + casefold
# never yields a word character (checked by a test): it folds as `lower()` does, and ASCII
# word rules are exact for it. (¨ ¯ ´ ¸ ‗ ‾ are left out: NFKC turns them into marks.)
WORDISH_NON_ASCII_CLASS = (
    "[^\x00-\x7f\u00a0-\u00a7\u00a9\u00ab-\u00ae\u00b0\u00b1\u00b6\u00b7\u00bb\u00bf"
    "\u00d7\u00f7\u2000-\u2016\u2018-\u203d\u203f-\u206f]"
)
_WORDISH_NON_ASCII = re.compile(WORDISH_NON_ASCII_CLASS)
# Hangul vowel/trailing jamo compose with the preceding jamo under NFKC but have combining
# class 0, so they must stay in the same normalisation chunk as the character before.
_JAMO_TAIL = "\u1161-\u11c2"
# One character and the marks (every character of non-zero combining class is a mark) and
# jamo tails attached to it: a piece NFKC never composes with its neighbours.
_CHUNK = re.compile(f"(?s).[{MARKS}{_JAMO_TAIL}]*")
_CHUNK_BMP = re.compile(f"(?s).[{MARKS_BMP}{_JAMO_TAIL}]*")  # 5x faster, see _marks
# The characters that can start a chunk (not a mark, not a jamo tail) whose NFKD starts with
# a mark or a jamo that composes with the character before: Hangul compatibility and
# halfwidth jamo, halfwidth (semi-)voiced sound marks (a superset, checked by a test).
# Text without them is normalised whole, in C: no chunk can then compose with, or reorder
# into, the one before, so that is the chunks' NFKC joined, without a call per chunk.
_JOINS_PREVIOUS = re.compile("[\u3131-\u318e\uff9e-\uffdc]")


@dataclass(frozen=True, slots=True)
class Tokens:
    """The tokens of one field: folded words and their spans in the original string."""

    words: tuple[str, ...]
    starts: tuple[int, ...]
    ends: tuple[int, ...]


def fold(text: str) -> str:
    """NFKC + casefold, the comparison form of terms and documents."""
    return fold_checked(text)[0]


def fold_checked(text: str) -> tuple[str, bool]:
    """`fold(text)`, and whether all its word characters are ASCII (`ascii_words_only`)."""
    if ascii_words_only(text):  # also true of `text` itself: its fold is `lower()`
        return text.lower(), True
    folded = _fold_general(text)
    return folded, ascii_words_only(folded)


def _fold_general(text: str) -> str:
    if unicodedata.is_normalized("NFKC", text):
        return text.casefold()
    if _JOINS_PREVIOUS.search(text) is None:
        return _fold_chunk(text)
    return "".join(_fold_chunk(chunk) for _, _, chunk in _chunks(text))


def _fold_chunk(chunk: str) -> str:
    return unicodedata.normalize("NFKC", chunk).casefold()


def _chunks(text: str) -> list[tuple[int, int, str]]:
    """Split into pieces that NFKC never composes across: a base char and its marks."""
    pattern = _CHUNK_BMP if max(text, default="") <= "\uffff" else _CHUNK
    return [(m.start(), m.end(), m.group()) for m in pattern.finditer(text)]


def fold_with_map(text: str) -> tuple[str, list[int] | None, list[int] | None]:
    """Fold `text` and say where each folded character came from.

    Returns the folded string and, per folded character, the start and end offset of the
    original character(s) it came from; both maps are None when folding kept offsets
    (ASCII text, or text whose casefold has the same length).
    """
    if ascii_words_only(text):
        return text.lower(), None, None
    if unicodedata.is_normalized("NFKC", text):
        folded = text.casefold()
        if len(folded) == len(text):
            return folded, None, None
        pieces = [(i, i + 1, c.casefold()) for i, c in enumerate(text)]
    else:
        pieces = [(s, e, _fold_chunk(chunk)) for s, e, chunk in _chunks(text)]
    starts: list[int] = []
    ends: list[int] = []
    for s, e, out in pieces:
        starts.extend([s] * len(out))
        ends.extend([e] * len(out))
    return "".join(out for _, _, out in pieces), starts, ends


def _split_folded(folded: str) -> list[tuple[str, int, int]]:
    """Tokens of an already folded string with spans in that string."""
    return [(m.group(), m.start(), m.end()) for m in _token_pattern(folded).finditer(folded)]


def words_of(folded: str) -> list[str]:
    """Just the tokens of an already folded string (the cheap form, for candidate search)."""
    if ascii_words_only(folded):
        return ascii_words_of(folded)  # (non-ASCII characters are parts of punctuation here)
    return _token_pattern(folded).findall(folded)


def ascii_words_of(folded: str) -> list[str]:
    """The `_ASCII_TOKEN` runs of a folded string: its tokens if `ascii_words_only`, else
    every ASCII token and pieces of the others ("caf" of "café"), which is enough to look
    for ASCII words."""
    # Split in C, every other byte becoming a space: a few times faster than `findall`.
    return folded.encode().translate(_ASCII_SEPARATORS).decode("ascii").split()


def ascii_words_only(folded: str) -> bool:
    """True when every word character of a folded text is ASCII (other characters being
    punctuation such as curly quotes and dashes), so ASCII word rules are exact for it."""
    return folded.isascii() or _WORDISH_NON_ASCII.search(folded) is None


def _token_pattern(folded: str) -> re.Pattern[str]:
    if ascii_words_only(folded):
        return _ASCII_TOKEN
    return _TOKEN_BMP if max(folded) <= "\uffff" else _TOKEN


def tokenize(text: str) -> Tokens:
    """Tokens of a document field, with spans into `text` itself."""
    folded, starts, ends = fold_with_map(text)
    if starts is None or ends is None:
        words = words_of(folded)
        starts_in_place: list[int] = []
        ends_in_place: list[int] = []
        extend_spans(folded, words, starts_in_place, ends_in_place)
        return Tokens(tuple(words), tuple(starts_in_place), tuple(ends_in_place))
    parts = _split_folded(folded)
    words = tuple(p[0] for p in parts)
    return Tokens(words, tuple(starts[p[1]] for p in parts), tuple(ends[p[2] - 1] for p in parts))


def extend_spans(
    folded: str, words: list[str], starts: list[int], ends: list[int], stop: int | None = None
) -> None:
    """Append to `starts`/`ends` the spans of `words[len(starts):stop]`, where `words` are
    the tokens of `folded` and the lists hold the spans of the tokens before them.

    Exact because only non-word characters lie between two tokens, so the first occurrence
    of a token's text after the previous token's end is the token itself; several times
    faster than a match object per token, and callers can stop at the token they need.
    """
    find, pos = folded.find, ends[-1] if ends else 0
    for word in islice(words, len(starts), stop):
        pos = find(word, pos)
        starts.append(pos)
        pos += len(word)
        ends.append(pos)


@lru_cache(maxsize=8192)
def term_words(text: str) -> tuple[str, ...]:
    """The folded tokens of a rule term; several tokens make the term a phrase."""
    if text.isascii() and text.isalnum():  # most terms: one plain word, folded by lower()
        return (text.lower(),)
    return tuple(words_of(fold(text)))


@lru_cache(maxsize=8192)
def ends_with_word(text: str) -> bool:
    """True when the last character of `text` is part of a token (a `*` may follow it)."""
    folded = fold(text)
    parts = _split_folded(folded)
    return bool(parts) and parts[-1][2] == len(folded)


def is_spaceless(word: str) -> bool:
    """True for a single-character token of a script written without spaces."""
    return len(word) == 1 and _SPACELESS_CHAR.match(word) is not None
