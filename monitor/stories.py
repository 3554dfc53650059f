"""Same story, many outlets: near-duplicate detection across feeds. Pure.

An article is reduced to a :class:`Sketch`: the set of its content words (case, accent,
plural and tense folded, stop words left out; kept as 32-bit hashes), the numbers it
states, and a few *keys* for finding candidates without comparing it with every stored
article.

How alike two articles are: the share of the smaller one's content words that the other
has too (containment, so a trimmed copy counts as contained in the full text), with each
word weighted by how rare it is among recent articles (inverse document frequency). In a
corpus that is all about one crisis, "russia", "ukraine", "troops" and "sanctions" say
little; the names, places and numbers of one event say a lot. So:

* a near-copy, a new headline on the same body and a trimmed copy share nearly all their
  words: containment near 1;
* a paraphrase by another outlet rewrites the sentences but keeps the names, places and
  numbers, which carry most of the weight: typically 0.4-0.7;
* a different event on the same topic (the EU's 14th sanctions package and its 15th;
  talks in Geneva and in Istanbul) shares the topic words, which weigh little, and not
  the specifics: typically below 0.3;
* when both state numbers and no number is shared, they are different events (a 14th
  and a 15th package, 95 and 103 prisoners), whatever the words.

``SAME`` is the threshold; ``benchmarks/story_quality.py`` measures pair precision and
recall on the hand-labelled articles in ``tests/data/stories/labelled.yaml``.

Finding candidates: each article is indexed under a bottom-k MinHash of its *rare*
words (the ``KEYS`` smallest hashes among the words in at most ``RARE_SHARE`` of recent
stories). Two reports of one event share most of their rare words (names,
places, figures), so they share a key; common topic words are never keys, so no key's
list of articles grows long, and one indexed lookup finds the candidates whatever the
number of stored articles. An article with no rare word is not indexed (it joins
nothing). Word frequencies come from the newest article of each recent story
(:class:`Vocabulary`); with too few yet (a new database) every word counts as rare and
weighs the same.
"""

from __future__ import annotations

import math
import zlib
from array import array
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from monitor.text import stem_key, words

#: Weighted containment at or above which two articles are one story.
SAME = 0.5
#: Content words an article needs to be compared at all (a bare headline of three words
#: would otherwise join any story that uses them).
MIN_WORDS = 6
#: Rare words an article is indexed under.
KEYS = 12
#: A word in at most this share of recent stories (or in at most RARE_COUNT of them) is
#: rare: it may be a key.
RARE_SHARE = 0.002
RARE_COUNT = 2.5

# Function words, reporting verbs, days and the like: they say nothing about which event
# an article reports. Compared after folding (stem_key), so "said" and "says" are one.
_STOP_WORDS = frozenset(
    stem_key(w)
    for w in """
    a about above after again against all also am an and any are as at be because been
    before being below between both but by can could did do does doing down during each
    few for from further had has have having he her here hers herself him himself his how
    i if in into is it its itself just me more most my myself no nor not now of off on
    once only or other our ours ourselves out over own same she should so some such than
    that the their theirs them themselves then there these they this those through to too
    under until up very was we were what when where which while who whom why will with
    would you your yours yourself yourselves said says saying say told tell tells added
    according reported reports report statement thursday friday saturday sunday monday
    tuesday wednesday week weeks day days month months year years today yesterday
    tomorrow since still amid mr mrs ms per cent percent however meanwhile later earlier
    last next first
    """.split()
)


class _Keys(dict[str, int]):
    """word -> hash of its folded key, or -1 for a stop word; filled on first use."""

    def __missing__(self, word: str) -> int:
        if len(self) > 200_000:
            self.clear()  # a feed of random tokens must not grow it without bound
        key = stem_key(word)
        value = -1 if key in _STOP_WORDS or (len(key) < 2 and not key.isdigit()) else _hash(key)
        self[word] = value
        return value


_KEY_OF = _Keys()


def _hash(text: str) -> int:
    return zlib.crc32(text.encode())


@dataclass(frozen=True)
class Sketch:
    """What story clustering keeps of one article."""

    #: Hashes of its content words.
    words: frozenset[int]
    #: Hashes of the numbers it states ("14", "14th"; "1,200" is "1" and "200"), a
    #: subset of ``words``.
    numbers: frozenset[int]
    #: Its rarest words (hashes), to index it under.
    keys: tuple[int, ...] = ()


def content_words(text: str) -> frozenset[int]:
    """Hashes of the folded content words of ``text``."""
    lookup = _KEY_OF.__getitem__
    found = set(map(lookup, words(text)))
    found.discard(-1)
    return frozenset(found)


def fingerprint(seq: Iterable[str]) -> tuple[frozenset[int], frozenset[int]]:
    """(content words, numbers) of an article's words (as :func:`monitor.text.words`
    splits them; "1,200" is two numbers, the same in every copy). The parse workers
    compute it with the content hash, so the daemon's loop does not split the text
    again."""
    seq = list(seq)
    lookup = _KEY_OF.__getitem__
    found = set(map(lookup, seq))
    numbers = {lookup(w) for w in seq if not w.isalpha()}
    found.discard(-1)
    numbers.discard(-1)
    return frozenset(found), frozenset(numbers)


def sketch(
    title: str,
    text: str,
    vocabulary: Vocabulary | None = None,
    *,
    prints: tuple[frozenset[int], frozenset[int]] | None = None,
) -> Sketch:
    """The sketch of an article with this title and plain text (summary and body);
    ``prints``: its :func:`fingerprint`, if already known."""
    found, numbers = prints or fingerprint(words(title + "\n" + text))
    return Sketch(found, numbers, keys_of(found, vocabulary))


def keys_of(found: Iterable[int], vocabulary: Vocabulary | None) -> tuple[int, ...]:
    """The index keys of a word set: a bottom-k MinHash of its rare words (the ``KEYS``
    smallest hashes among the words that are rare, see :class:`Vocabulary`). Two
    articles share a key with a probability that grows with the overlap of their rare
    words, and the common topic words never make the lists long."""
    if vocabulary is None or not vocabulary.shares:
        return tuple(sorted(found)[:KEYS])
    return tuple(sorted(set(found) - vocabulary.common)[:KEYS])


class _Weights(dict[int, float]):
    """word hash -> weight; a word not in the table weighs ``unseen``."""

    unseen = 1.0

    def __missing__(self, key: int) -> float:
        return self.unseen


class Vocabulary:
    """How rare each word is among recent stories: the index keys and the weights are
    taken from it. A word is *rare* when it is in at most ``RARE_SHARE`` of the sampled
    stories (and always when in at most ``RARE_COUNT`` of them: a small sample must not
    make every word common). Weight = log(1 / share); a word not in the sample weighs
    the most. With too small a sample (fewer than ``minimum`` texts) there is no
    estimate: every word is rare and weighs 1."""

    #: Stories sampled, articles stored between two refreshes (the daemon also refreshes
    #: hourly), and the fewest texts worth an estimate.
    SAMPLE = 2000
    REFRESH_EVERY = 10_000
    FIRST_AFTER = 200

    def __init__(self, texts: Sequence[str] = (), *, minimum: int | None = None) -> None:
        self._minimum = self.FIRST_AFTER if minimum is None else minimum
        self.refresh(texts)

    def stale(self, stored: int) -> bool:
        """Count ``stored`` new articles; True when the frequencies should be taken again
        from recent stories (a new database gets its first estimate early, so a first
        cycle of thousands of feeds is not clustered with every word counted rare)."""
        self._stored += stored
        return self._stored >= self.REFRESH_EVERY or (
            not self.shares and self._stored >= self._minimum
        )

    def refresh(self, texts: Sequence[str]) -> None:
        """Take the word frequencies of these texts: one per recent story, so that a
        story carried by many outlets does not make its own names look common."""
        self._stored = 0
        counts: Counter[int] = Counter()
        for text in texts:
            counts.update(content_words(text))
        total = len(texts)
        weights = _Weights()
        if total and total >= self._minimum:
            self.shares = {h: n / total for h, n in counts.items()}
            self.rare_below = max(RARE_SHARE, RARE_COUNT / total)
            self.common = frozenset(h for h, s in self.shares.items() if s > self.rare_below)
            weights.update({h: -math.log(s) for h, s in self.shares.items()})
            weights.unseen = math.log(2 * total)
        else:
            self.shares = {}
            self.rare_below = 1.0
            self.common = frozenset()
        self._weights = weights

    def total(self, hashes: Iterable[int]) -> float:
        """The summed weight of these word hashes."""
        return sum(map(self._weights.__getitem__, hashes))


def similarity(a: Sketch, b: Sketch, vocabulary: Vocabulary) -> float:
    """Weighted containment of the smaller sketch in the larger one (0..1)."""
    if not a.words or not b.words:
        return 0.0
    shared = vocabulary.total(a.words & b.words)
    smaller = min(vocabulary.total(a.words), vocabulary.total(b.words))
    return shared / smaller if smaller else 0.0


def comparable(a: Sketch, b: Sketch) -> bool:
    """Whether two sketches may be one story at all, whatever their words: both long
    enough, and not stating only different numbers."""
    if len(a.words) < MIN_WORDS or len(b.words) < MIN_WORDS:
        return False
    return not (a.numbers and b.numbers and not a.numbers & b.numbers)


def best_story(
    new: Sketch, candidates: Sequence[tuple[int, Sketch]], vocabulary: Vocabulary
) -> int | None:
    """The story (id) of the most similar candidate that is the same story, if any.
    ``candidates`` are (story id, sketch of one of its articles)."""
    if len(new.words) < MIN_WORDS:
        return None
    total = vocabulary.total
    own = total(new.words)
    best: tuple[float, int] | None = None
    for story_id, other in candidates:
        if not comparable(new, other):
            continue
        smaller = min(own, total(other.words))
        score = total(new.words & other.words) / smaller if smaller else 0.0
        if score >= SAME and (best is None or score > best[0]):
            best = (score, story_id)
    return best[1] if best else None


assert array("I").itemsize == 4, "word hashes are stored as 32-bit unsigned integers"


def pack(values: Iterable[int]) -> bytes:
    """Word hashes as bytes for storage."""
    return array("I", sorted(values)).tobytes()


def unpack(blob: bytes) -> frozenset[int]:
    values = array("I")
    values.frombytes(blob)
    return frozenset(values)


#: Second-level labels under which country domains register names (bbc.co.uk, abc.net.au).
_SECOND_LEVEL = frozenset("co com net org gov ac edu or ne go".split())


def outlet(link: str, feed: str) -> str:
    """Who published an article, for counting distinct sources: the registered domain of
    its link (``uk.reuters.com`` and ``www.reuters.com`` are both ``reuters.com``; a
    country domain keeps its second level: ``bbc.co.uk``), else the feed's name."""
    try:
        host = (urlsplit(link).hostname or "").lower().rstrip(".")
    except ValueError:
        host = ""
    if not host:
        return feed
    labels = host.split(".")
    if len(labels) > 2 and not host.replace(".", "").isdigit():
        keep = 3 if len(labels[-1]) == 2 and labels[-2] in _SECOND_LEVEL else 2
        host = ".".join(labels[-keep:])
    return host
