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

Finding candidates: each article is indexed under a bottom-k MinHash of its words that
are not common: the ``KEYS`` smallest hashes among the words in at most
``COMMON_SHARE`` of recent stories (or in at most ``COMMON_COUNT`` of them). The store
keeps, for each key, the ids of the newest articles under it as one row (a posting
list), so a lookup reads one row per key. Two articles with Jaccard similarity J over those words
share about ``KEYS`` x J keys: a copy nearly all, a paraphrase several (names, places,
figures), an unrelated article at most one by chance. The store compares a new article
only with articles that share enough keys (:func:`shared_keys_needed`), among a
bounded number of entries per key, so a lookup costs the same whatever the number of
stored articles. Word frequencies (:class:`Vocabulary`) come from the newest article of
each recent story; with too few yet (a new database) no word is common and every word
weighs the same.
"""

from __future__ import annotations

import math
import zlib
from array import array
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from itertools import repeat
from typing import Protocol
from urllib.parse import urlsplit

from monitor.text import stem_key, words

#: How long a story stays open to new articles after its last one (stories.quiet).
DEFAULT_QUIET = timedelta(days=2)
#: Articles of a first poll's backlog put into their stories per step (one transaction
#: of Store.cluster_pending; about 0.8 ms each on a database of 50,000 articles).
CLUSTER_BATCH = 100
#: Weighted containment at or above which two articles are one story.
SAME = 0.5
#: Content words an article needs to be compared at all (a bare headline of three words
#: would otherwise join any story that uses them).
MIN_WORDS = 6
#: Index keys per article (bottom-k MinHash of its words that are not common).
KEYS = 16
#: A word in more than this share of recent stories (and in more than COMMON_COUNT of
#: them: a small sample proves little) is common: never an index key.
COMMON_SHARE = 0.002
COMMON_COUNT = 5
#: Share of the common words that must change at a refresh for stored keys to be rebuilt.
REKEY_CHANGE = 0.1

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
    #: Its index keys: the smallest of its word hashes (bottom-k MinHash).
    keys: tuple[int, ...] = ()


def content_words(text: str) -> frozenset[int]:
    """Hashes of the folded content words of ``text``."""
    return fingerprint(words(text))[0]


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
    found, numbers = fingerprint_of(title, text, prints)
    return Sketch(found, numbers, keys_of(found, vocabulary))


def fingerprint_of(
    title: str, text: str, prints: tuple[frozenset[int], frozenset[int]] | None = None
) -> tuple[frozenset[int], frozenset[int]]:
    """The :func:`fingerprint` of an article with this title and plain text: ``prints``
    if already known (the parse workers make it), else made as they make it."""
    return prints or fingerprint(words(title + "\n" + text))


def keys_of(found: Iterable[int], vocabulary: Vocabulary | None = None) -> tuple[int, ...]:
    """The index keys of a word set: a bottom-k MinHash (the ``KEYS`` smallest hashes) of
    its words that are not common (in more than ``COMMON_SHARE`` of recent stories).
    Two articles share about ``KEYS`` x J keys, J being the Jaccard similarity of those
    word sets. Names, places and figures are far below the threshold and topic words
    far above it, so the keys hardly change as word frequencies drift: an article stored
    days ago is found under the keys chosen today."""
    common = vocabulary.common if vocabulary is not None else frozenset()
    # frozenset.difference of a frozenset: 11 µs for 150 words, 17 µs for set(found) - common.
    rare = (found if isinstance(found, frozenset) else frozenset(found)).difference(common)
    return tuple(sorted(rare)[:KEYS])


def shared_keys_needed(new: Sketch) -> int:
    """Keys a stored article must share with ``new`` to be compared with it at all. On
    the labelled set every pair of reports of one event shares 3 keys or more, and 94% of
    the pairs of different events share fewer. An article with few keys (few rare
    words: a short item) needs fewer."""
    count = len(new.keys)
    return 3 if count >= KEYS // 2 else 2 if count >= 3 else 1


class Vocabulary:
    """How rare each word is among recent stories, which is what a word weighs when two
    articles are compared: log(1 / share); a word not in the sample weighs the most. With
    too small a sample (fewer than ``minimum`` texts) every word weighs 1."""

    #: Stories sampled, most articles stored between two refreshes (the daemon also
    #: refreshes hourly), and the fewest texts worth an estimate.
    SAMPLE = 2000
    REFRESH_EVERY = 5000
    FIRST_AFTER = 200

    def __init__(self, texts: Sequence[str] = (), *, minimum: int | None = None) -> None:
        self._minimum = self.FIRST_AFTER if minimum is None else minimum
        #: Texts the current estimate was taken from, and the words it found common.
        self.sampled = 0
        self.common: frozenset[int] = frozenset()
        self.refresh(texts)

    def stale(self, stored: int) -> bool:
        """Count ``stored`` new articles; True when the frequencies should be taken again
        from recent stories (a new database gets its first estimate early, so a first
        cycle of thousands of feeds is not clustered with every word weighing the
        same)."""
        self._stored += stored
        # While the sample is small, refresh whenever the articles stored since have
        # doubled it; then every REFRESH_EVERY articles.
        due = min(self.REFRESH_EVERY, max(self._minimum, 2 * self.sampled))
        return self._stored >= due

    def refresh(self, texts: Sequence[str]) -> bool:
        """Take the word frequencies of these texts: one per recent story, so that a
        story carried by many outlets does not make its own names look common. True if
        the common words changed enough for stored articles' keys to be rebuilt (the
        first estimates of a new database)."""
        return self.refresh_words(content_words(text) for text in texts)

    def refresh_words(self, word_sets: Iterable[Collection[int]]) -> bool:
        """:meth:`refresh` from the texts' :func:`content_words` (each word once, as
        story sketches store them), counted one at a time (2,000 word sets held at
        once are 16 MB)."""
        before = self.common
        warming = self.sampled < self.SAMPLE
        self._stored = 0
        counts: Counter[int] = Counter()
        total = 0
        for found in word_sets:
            counts.update(found)
            total += 1
        self.sampled = total
        weights: dict[int, float] = {}
        self._unseen = 1.0
        if total and total >= self._minimum:
            self.shares = {h: n / total for h, n in counts.items()}
            weights = {h: -math.log(s) for h, s in self.shares.items()}
            if warming:
                # Which words are common is settled once the sample is full, and kept for
                # the life of the process: keys chosen today must match last hour's.
                limit = max(COMMON_SHARE, COMMON_COUNT / total)
                self.common = frozenset(h for h, s in self.shares.items() if s > limit)
            self._unseen = math.log(2 * total)  # a word not in the sample weighs the most
        elif warming:
            self.shares = {}
            self.common = frozenset()
        else:
            self.shares = {}
        self._weights = weights
        moved = len(before ^ self.common) > REKEY_CHANGE * max(len(self.common), 1)
        return warming and moved

    def total(self, hashes: Iterable[int]) -> float:
        """The summed weight of these word hashes."""
        return sum(map(self._weights.get, hashes, repeat(self._unseen)))


class Stored(Protocol):
    """The words and numbers of a stored article, as :func:`unpack` reads them back (a
    :class:`Sketch` will do too)."""

    @property
    def words(self) -> Collection[int]: ...
    @property
    def numbers(self) -> Collection[int]: ...


def comparable(a: Sketch, b: Stored) -> bool:
    """Whether two sketches may be one story at all, whatever their words: both long
    enough, and not stating only different numbers."""
    if len(a.words) < MIN_WORDS or len(b.words) < MIN_WORDS:
        return False
    return not (a.numbers and b.numbers and a.numbers.isdisjoint(b.numbers))


def best_story(
    new: Sketch, candidates: Sequence[tuple[int, Stored]], vocabulary: Vocabulary
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
        score = total(new.words.intersection(other.words)) / smaller if smaller else 0.0
        if score >= SAME and (best is None or score > best[0]):
            best = (score, story_id)
    return best[1] if best else None


assert array("I").itemsize == 4, "word hashes are stored as 32-bit unsigned integers"


def pack(values: Iterable[int]) -> bytes:
    """Word hashes as bytes for storage."""
    return array("I", sorted(values)).tobytes()


@dataclass(frozen=True, slots=True)
class Packed:
    """A stored article's words and numbers read back as arrays: comparing with a new
    article needs no set of them (a set of 150 hashes costs 6 µs to build, 8 kB)."""

    words: array[int]
    numbers: array[int]


def unpack(blob: bytes) -> array[int]:
    """Word hashes stored by :func:`pack`, sorted."""
    values = array("I")
    values.frombytes(blob)
    return values


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
