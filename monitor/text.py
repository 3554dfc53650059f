"""Text normalisation shared by matching and de-duplication. Pure.

Matching works on *words*, never on raw characters. :func:`normalize` turns any text into
``" w1 w2 w3 "``: case-folded, accents removed, possessive ``'s`` dropped, and every
character that is not a letter or digit turned into a separator (hyphens and apostrophes
included: "anti-tank" is two words). It uses only C-level string operations, so it costs
little per article.

A rule term is compared word by word through a *key* function: :func:`word_key` folds
plural endings ("troops" -> "troop"), :func:`stem_key` also folds English inflections
("sanctioned" -> "sanction"). :func:`surface_forms` inverts a key into every word that
has it, which lets the matcher search for the words themselves with one automaton.
Whole-word matching falls out for free: "sanction" can never match inside "sanctimonious".
"""

from __future__ import annotations

import hashlib
import re
import string
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import product

from monitor.models import TermMode

_POSSESSIVE = re.compile(r"['’]s\b")
_NON_ASCII = re.compile(r"[^\x00-\x7f]+")
# Every ASCII character that is not a letter or digit separates words.
_SEPARATORS = str.maketrans(
    {c: " " for c in map(chr, range(128)) if c not in string.ascii_letters + string.digits}
)
#: Longest list of forms one phrase may expand to (each word's singular/plural forms).
MAX_FORMS = 512

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


def _fold_run(m: re.Match[str]) -> str:
    decomposed = unicodedata.normalize("NFKD", m.group())
    return "".join(c if c.isalnum() else " " for c in decomposed if not unicodedata.combining(c))


def fold(text: str) -> str:
    """Case-fold and strip accents, keeping every other character: 'Zélensky' -> 'zelensky'."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def normalize(text: str) -> str:
    """``" w1 w2 ... "``: the folded words of ``text`` between single spaces.

    Possessive 's is dropped; every non-alphanumeric character separates words.
    """
    folded = _POSSESSIVE.sub("", text.casefold())
    if not folded.isascii():
        folded = _NON_ASCII.sub(_fold_run, folded)
    return spaced(folded.translate(_SEPARATORS).split())


def spaced(folded: Iterable[str]) -> str:
    """Folded words as :func:`normalize` gives them: ``" w1 w2 ... "``."""
    return " " + " ".join(folded) + " "


def words(text: str) -> list[str]:
    """The folded words of ``text``, as :func:`normalize` separates them."""
    return normalize(text).split()


def word_key(word: str) -> str:
    """The matching key of one already-folded word: plural endings removed.

    A light "S-stemmer" (Harman 1991, with fixes for -xes/-ches/-shes): it folds number,
    never tense, so "sanctions" -> "sanction" but "sanctioned" stays itself.
    """
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


def stem_key(word: str) -> str:
    """The key of a word under inflection folding: number and tense.

    "sanctions", "sanctioned", "sanctioning" -> "sanction"; "moved", "moving", "moves" ->
    "mov"; "planned" -> "plan"; "denied" -> "deny". Only endings are removed, never
    derivations, so "wellness" stays "wellness" and never matches "well".
    """
    key = word_key(word)
    for suffix in ("ing", "ed"):
        if key.endswith(suffix) and len(key) - len(suffix) >= 3:
            stem = key[: -len(suffix)]
            if suffix == "ed" and stem.endswith("i"):
                stem = stem[:-1] + "y"
            elif len(stem) >= 4 and stem[-1] == stem[-2] and stem[-1] not in "lsz":
                stem = stem[:-1]
            return _strip_e(stem)
    return _strip_e(key)


def _strip_e(stem: str) -> str:
    return stem[:-1] if len(stem) > 3 and stem.endswith("e") else stem


def key_of(word: str, mode: TermMode) -> str:
    """A word's key under ``mode`` ("prefix" compares like "word" but for the last word)."""
    return stem_key(word) if mode == "stem" else word_key(word)


def _plural_forms(key: str) -> set[str]:
    """Every word whose :func:`word_key` is ``key``."""
    candidates = {key, key + "s", key + "es"}
    if key.endswith("y"):
        candidates.add(key[:-1] + "ies")
    return {c for c in candidates if word_key(c) == key}


def _stem_forms(key: str) -> set[str]:
    """Every word whose :func:`stem_key` is ``key``."""
    bases = {key, key + "e"}
    keys = set(bases)
    for base in bases:
        stems = {base, base + base[-1]}
        if base.endswith("y"):
            stems.add(base[:-1] + "i")
        for stem in stems:
            keys.update((stem + "ing", stem + "ed"))
    forms = set().union(*(_plural_forms(k) | {k} for k in keys))
    return {f for f in forms if stem_key(f) == key}


def surface_forms(keys: tuple[str, ...], mode: TermMode) -> list[str]:
    """The word sequences (``"w1 w2"``) that match a term's keys, for the automaton.

    In "prefix" mode the last key is a bare prefix: the sequences end with it and the
    matcher lets the last word continue.
    """
    per_word: list[set[str]] = []
    for index, key in enumerate(keys):
        if mode == "prefix" and index == len(keys) - 1:
            per_word.append({key})
        elif mode == "stem":
            per_word.append(_stem_forms(key))
        else:
            per_word.append(_plural_forms(key))
    total = 1
    for forms in per_word:
        total *= len(forms)
    if total > MAX_FORMS:
        raise ValueError(f"phrase expands to {total} word forms (limit {MAX_FORMS}); shorten it")
    return sorted(" ".join(seq) for seq in product(*(sorted(f) for f in per_word)))


def term_keys(term: str, mode: TermMode = "word") -> tuple[str, ...]:
    """The keys a rule term must match word by word ('"anti-tank" x' -> anti, tank, x).

    In "prefix" mode the last word is kept as written (folded), since it is a prefix.
    """
    found = words(term)
    keys = [key_of(w, mode) for w in found]
    if mode == "prefix" and found:
        keys[-1] = found[-1]
    return tuple(keys)


def phrase_at(seq: list[str], index: int, keys: tuple[str, ...], mode: TermMode) -> bool:
    """Whether the words ``seq[index:]`` start with the term ``keys`` (reference check)."""
    if index + len(keys) > len(seq):
        return False
    for offset, key in enumerate(keys):
        word = seq[index + offset]
        if mode == "prefix" and offset == len(keys) - 1:
            if not word.startswith(key):
                return False
        elif key_of(word, mode) != key:
            return False
    return True


@dataclass(frozen=True)
class Tokens:
    """The words of a text, folded, with where each sits in the original text."""

    words: tuple[str, ...]
    #: (start, end) character offsets of each word in the original text.
    spans: tuple[tuple[int, int], ...]


_RAW_WORD = re.compile(r"[^\W_]+")


def tokenize(text: str) -> Tokens:
    """Split ``text`` like :func:`normalize` does, remembering each word's position.

    Used for snippets and highlighting, never on the matching hot path.
    """
    found: list[str] = []
    spans: list[tuple[int, int]] = []
    for m in _RAW_WORD.finditer(text):
        raw, start = m.group(), m.start()
        if (
            raw in ("s", "S")
            and start > 0
            and text[start - 1] in "'’"
            and (m.end() == len(text) or not text[m.end()].isalnum())
        ):
            continue  # possessive 's
        if raw.isascii():  # the common case: folding is lower-casing
            found.append(raw.lower())
            spans.append((start, m.end()))
            continue
        for word in words(raw):
            found.append(word)
            spans.append((start, m.end()))
    return Tokens(tuple(found), tuple(spans))


class _KeyCache(dict[str, str]):
    """word -> word_key(word), filled on first use. News vocabulary is small, so nearly
    every lookup hits, and ``map(cache.__getitem__, ...)`` runs at C speed."""

    def __missing__(self, word: str) -> str:
        if len(self) > 200_000:
            self.clear()  # a feed of random tokens must not grow it without bound
        key = self[word] = word_key(word)
        return key


_KEYS = _KeyCache()


def content_hash(*parts: str) -> str:
    """A short stable hash of normalised text: equal for copies that differ in case/spacing."""
    return words_hash([words(p) for p in parts])


def words_hash(parts: Iterable[list[str]]) -> str:
    """:func:`content_hash` of texts already split by :func:`words`."""
    lookup = _KEYS.__getitem__
    normal = " ".join(" ".join(map(lookup, p)) for p in parts)
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


#: Where an authority starts: after ``scheme://``, or a scheme-relative ``//``.
_AUTHORITY = re.compile(r"(?:\b[a-zA-Z][a-zA-Z0-9+.-]*:)?//")
#: Where it ends, as RFC 3986 and HTTP clients read it.
_AUTHORITY_END = re.compile(r"[/?#\n]")
#: A host without a port; a host with one, when the host is a name with a dot or an IP.
_PLAIN_HOST = re.compile(r"\[[^\]/\s]*\]|[^:/?#\s@\[\]]*")
_HOST_PORT = re.compile(r"[^:/?#\s@\[\]]*:[0-9]*")
_REAL_HOST_PORT = re.compile(r"(?:\[[^\]/\s]*\]|[^:/?#\s@\[\]]*\.[^:/?#\s@\[\]]*):[0-9]*")
_BLANK = re.compile(r"\s")
_NEWLINE = re.compile(r"\n")


class _LastAt:
    """``last(start)``: the last "@" from ``start`` to the next match of ``boundary`` in
    ``text`` (or its end), or -1. Asked for growing positions, it searches each region
    once, which keeps :func:`mask_url` linear."""

    def __init__(self, text: str, boundary: re.Pattern[str]) -> None:
        self._text = text
        self._boundary = boundary
        self._end = self._at = -1  # the region last searched, and its last "@"

    def __call__(self, start: int) -> int:
        if start >= self._end:
            found = self._boundary.search(self._text, start)
            self._end = found.start() if found else len(self._text)
            self._at = self._text.rfind("@", start, self._end)
        return self._at if self._at >= start else -1


def mask_url(url: str) -> str:
    """The URL (or text with URLs in it) with any user:password@ part replaced, safe
    to log. Linear in the length of the text.

    * An ``@`` before the end of the authority (the first ``/ ? #``): the userinfo runs
      to the last ``@`` of the URL (up to a blank), so a password with ``@`` and then
      ``/ ? #`` in it (``admin:P@ss/word@host``) is masked whole; so is one with a
      space (``user:12 34@host``). A credentialed URL's ``@`` in the path is masked too.
    * No ``@`` there, but a port after a name without a dot (``user:`` or ``user:2024``
      of ``user:/ss@host``): masked to the last ``@`` before a blank; an authority that
      is no host at all (``user:pa`` of ``user:pa?ss@host``): to the last ``@`` of the
      line.
    * Otherwise (``https://medium.com/feed/@x``, ``https://social.example:8443/@x``)
      nothing is masked.

    Text that merely has an ``@`` later on the same line may be masked too: hiding too
    much is the safe side (and ``news-monitor check`` refuses feed URLs whose userinfo
    a client would read otherwise)."""
    if "//" not in url:
        return url
    out: list[str] = []
    done = 0
    last_at = _LastAt(url, _BLANK)  # to the next blank
    last_on_line = _LastAt(url, _NEWLINE)  # to the end of the line

    for m in _AUTHORITY.finditer(url):
        start = m.end()
        if start <= done:
            continue  # inside what was masked already
        stop = _AUTHORITY_END.search(url, start)
        end = stop.start() if stop else len(url)
        at = url.rfind("@", start, end)
        if at != -1:
            at = max(at, last_at(end))
        elif _HOST_PORT.fullmatch(url, start, end) and not _REAL_HOST_PORT.fullmatch(
            url, start, end
        ):
            at = last_at(start)  # "user:" or "user:2024", a / in the password
        elif not (
            _PLAIN_HOST.fullmatch(url, start, end) or _REAL_HOST_PORT.fullmatch(url, start, end)
        ):
            at = last_on_line(start)  # no host at all: the URL is broken, mask widely
        if at != -1:
            out += (url[done:start], "***")
            done = at
    return "".join(out) + url[done:] if out else url


def word_frequencies(texts: Iterable[str]) -> dict[str, float]:
    """The share of ``texts`` each word key (:func:`word_key`) occurs in: a rarity
    estimate for the matcher, taken from recent articles."""
    counts: Counter[str] = Counter()
    total = 0
    for text in texts:
        total += 1
        counts.update({word_key(w) for w in normalize(text).split()})
    return {word: n / total for word, n in counts.items()} if total else {}


def stamp(moment: datetime) -> str:
    """ISO 8601 UTC text, as stored in the database: ``2026-11-24T07:21:13Z`` (sorts)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def stamp_or_none(moment: datetime | None) -> str | None:
    """:func:`stamp`, or None for no moment (a report's empty field)."""
    return stamp(moment) if moment is not None else None


def unstamp(text: str | None) -> datetime | None:
    """The datetime of a stored stamp (None for none)."""
    return stamped(text) if text else None


def stamped(text: str) -> datetime:
    """The datetime of a stored stamp that is always there (a NOT NULL column)."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
