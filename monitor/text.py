"""Text normalisation shared by matching and de-duplication.

Matching works on *word keys*, not raw characters: the text is split into words
(letters and digits; everything else separates words), each word is case- and
accent-folded and its plural ending removed. A rule term goes through the same
function, so "Troops" in an article and "troop" in a rule both become ``troop``, and
whole-word matching falls out for free: "sanction" can never match inside
"sanctimonious" because that is a different word.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass

# Letters and digits, with inner apostrophes kept so "Russia's" is one word (then trimmed).
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
_POSSESSIVE = re.compile(r"['’]s$")

# Words ending in "s" that are not plurals (or whose singular would collide with another
# word). Checked after folding. Short words (<= 3 letters) are never changed.
_NOT_PLURAL = frozenset(
    """
    news series species always perhaps whereas besides thus yes this its his hers ours
    yours theirs was has does is as us chaos crisis analysis basis thesis diagnosis
    emphasis oasis axis genesis process access address progress congress business
    boss loss moss glass class grass pass mass less unless across gas bus plus minus
    bonus campus census virus status consensus corpus focus bias atlas alias canvas
    lens kansas texas paris athens brussels wales hemorrhoids physics politics economics
    mathematics tactics logistics ethics statistics mumps measles aids isis hamas
    """.split()
)


def fold(text: str) -> str:
    """Lower-case and strip accents: 'Zélensky' -> 'zelensky'."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def word_key(word: str) -> str:
    """The matching key of one already-folded word: plural endings removed.

    A light "S-stemmer" (Harman 1991, with fixes for -xes/-ches/-shes): it folds number,
    never tense, so "sanctions" -> "sanction" but "sanctioned" stays itself.
    """
    word = _POSSESSIVE.sub("", word).replace("’", "'")
    if len(word) <= 3 or not word.endswith("s") or word in _NOT_PLURAL:
        return word
    if word.endswith("ies") and not word.endswith(("eies", "aies")) and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith("es") and not word.endswith(("aes", "ees", "oes")):
        stem = word[:-2]
        if stem.endswith(("x", "ch", "sh", "ss", "zz")):
            return stem
        return stem + "e"
    if word.endswith(("us", "ss", "is")):
        return word
    return word[:-1]


@dataclass(frozen=True)
class Tokens:
    """The words of a text: their keys and where each word sits in the original text."""

    keys: tuple[str, ...]
    #: (start, end) character offsets of each word in the original text.
    spans: tuple[tuple[int, int], ...]


def tokenize(text: str) -> Tokens:
    """Split ``text`` into word keys, remembering each word's position."""
    keys: list[str] = []
    spans: list[tuple[int, int]] = []
    for m in _WORD.finditer(text):
        keys.append(word_key(fold(m.group())))
        spans.append((m.start(), m.end()))
    return Tokens(tuple(keys), tuple(spans))


def term_keys(term: str) -> tuple[str, ...]:
    """The word keys a rule term must match consecutively ('"anti-tank" x' -> anti, tank, x)."""
    return tuple(word_key(fold(m.group())) for m in _WORD.finditer(term))


def content_hash(*parts: str) -> str:
    """A short stable hash of normalised text: equal for copies that differ in case/spacing."""
    normal = " ".join(" ".join(tokenize(p).keys) for p in parts)
    return hashlib.sha256(normal.encode()).hexdigest()[:32]


_SPACE = re.compile(r"\s+")


def snippet(text: str, start: int, end: int, width: int = 160) -> str:
    """About ``width`` characters of ``text`` around [start, end), cut at word edges."""
    pad = max(0, (width - (end - start)) // 2)
    lo = max(0, start - pad)
    hi = min(len(text), end + pad)
    if lo > 0:
        space = text.find(" ", lo, start)
        lo = space + 1 if space != -1 else lo
    if hi < len(text):
        space = text.rfind(" ", end, hi)
        hi = space if space != -1 else hi
    body = _SPACE.sub(" ", text[lo:hi]).strip()
    return ("…" if lo > 0 else "") + body + ("…" if hi < len(text) else "")


_USERINFO = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]*@")


def mask_url(url: str) -> str:
    """The URL with any user:password@ part replaced, safe to log."""
    return _USERINFO.sub(r"\1***@", url)
