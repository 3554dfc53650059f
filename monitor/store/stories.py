"""The story index: which open story a new article joins.

Each stored article keeps a sketch (its content words and numbers, hashed) and is listed
under a few index keys (rare words); a new article is compared only with the newest
articles sharing enough keys with it (monitor.stories decides what is "the same")."""

from __future__ import annotations

import heapq
import sqlite3
import sys
from array import array
from bisect import bisect_left
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from datetime import datetime

from monitor.store.base import StoreBase, _database_error
from monitor.stories import (
    MIN_WORDS,
    Packed,
    Sketch,
    Vocabulary,
    best_story,
    keys_of,
    outlet,
    pack,
    shared_keys_needed,
    unpack,
)
from monitor.text import stamp

#: Word weights when the caller has no estimate: every word weighs 1.
_NO_VOCABULARY = Vocabulary()
#: Newest entries read under each index key of a new article, and the most stored
#: articles compared with it (those sharing the most keys).
PER_KEY = 200
MAX_CANDIDATES = 20
#: Most recent indexed articles whose keys are rebuilt when the common words change, and
#: how many a transaction.
REKEY_LIMIT = 20_000
REKEY_BATCH = 1000
#: Article ids whose sketches and keys one story-index pruning transaction forgets.
PRUNE_STORY_BATCH = 2000
#: Articles of one story compared with a new one, at most (the newest).
PER_STORY = 3


class StoryIndexMixin(StoreBase):
    def _story_of(
        self, new: Sketch, cutoff: str, vocabulary: Vocabulary | None
    ) -> tuple[int | None, dict[int, bytes] | None]:
        """The open story an article of this sketch belongs to (None: a new one), and the
        postings of its keys if they were read (for :meth:`_index_keys`)."""
        if not new.keys or len(new.words) < MIN_WORDS:
            return None, None  # nothing to look it up by: a story of its own
        # Stored articles sharing enough index keys with it (shared_keys_needed), ranked
        # by how many they share. Only the newest entries of each key are kept: a key
        # that thousands of articles have (a common word) costs no more than a rare one,
        # and cannot crowd out the one old article that shares ten keys.
        found, postings = self._candidates(new.keys, shared_keys_needed(new))
        if not found:
            return None, postings
        # An article sharing a third as many keys as the closest one is not closer.
        floor = found[0][0] // 3
        ranked = [article for count, article in found if count >= floor]
        marks = ",".join("?" * len(ranked))
        rows = {
            r[0]: r[1:]
            for r in self.db.execute(
                f"""SELECT s.article_id, s.story_id, s.words, s.numbers
                    FROM story_sketches s JOIN stories st ON st.id = s.story_id
                    WHERE s.article_id IN ({marks}) AND st.last_seen >= ?""",
                [*ranked, cutoff],
            )
        }
        # The closest few articles of each story are enough to compare with: a story of
        # hundreds of copies costs no more than one of three.
        per_story: Counter[int] = Counter()
        candidates: list[tuple[int, Packed]] = []
        for candidate in ranked:
            if candidate in rows:
                story, words, numbers = rows[candidate]
                per_story[story] += 1
                if per_story[story] <= PER_STORY:
                    candidates.append((story, Packed(unpack(words), unpack(numbers))))
        return best_story(new, candidates, vocabulary or _NO_VOCABULARY), postings

    def _candidates(
        self, keys: Collection[int], needed: int
    ) -> tuple[list[tuple[int, int]], dict[int, bytes]]:
        """(keys shared, article id) of the stored articles under at least ``needed`` of
        ``keys`` (among the newest PER_KEY of each), most shared first and newest first
        among equals, at most MAX_CANDIDATES; and the postings read."""
        postings = self._postings(keys)
        shared: Counter[int] = Counter()
        for blob in postings.values():
            shared.update(unpack(blob))
        found = heapq.nlargest(
            MAX_CANDIDATES,
            ((count, article) for article, count in shared.items() if count >= needed),
        )
        return found, postings

    def _postings(self, keys: Collection[int]) -> dict[int, bytes]:
        """key -> the ids of the newest (at most PER_KEY) articles under it, packed."""
        marks = ",".join("?" * len(keys))
        return dict(
            self.db.execute(
                f"SELECT key, articles FROM story_postings WHERE key IN ({marks})", list(keys)
            ).fetchall()
        )

    def _write_postings(self, rows: Iterable[tuple[int, bytes]]) -> None:
        """Store these (key, packed article ids) posting rows."""
        self.db.conn.executemany(
            """INSERT INTO story_postings (key, articles) VALUES (?, ?)
               ON CONFLICT (key) DO UPDATE SET articles = excluded.articles""",
            rows,
        )

    def _mend_postings(
        self, keys: Sequence[int], mend: Callable[[int, array[int]], Sequence[int] | None]
    ) -> None:
        """Rewrite the postings of ``keys``, 500 at a time: ``mend(key, ids)`` gets a key's
        article ids (sorted; none if it has no row) and returns its new ones (sorted; the
        newest PER_KEY are kept, and a key left with none is deleted), or None to leave
        it as it is."""
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            postings = self._postings(chunk)
            mended = {key: mend(key, unpack(postings.get(key, b""))) for key in chunk}
            changed = {key: ids for key, ids in mended.items() if ids is not None}
            self._write_postings((key, pack(ids[-PER_KEY:])) for key, ids in changed.items() if ids)
            self.db.conn.executemany(
                "DELETE FROM story_postings WHERE key = ?",
                [(key,) for key, ids in changed.items() if not ids],
            )

    def _record_keys(self, article_id: int, keys: Sequence[int]) -> None:
        """An article's index keys in ``story_keys``: ``id`` is article_id * 32 + band."""
        self.db.conn.executemany(
            "INSERT INTO story_keys (id, key) VALUES (?, ?)",
            [(article_id * 32 + band, key) for band, key in enumerate(keys)],
        )

    def _choose_story(
        self,
        new: Sketch,
        title: str,
        link: str,
        feed: str,
        seen: str,
        cutoff: str,
        vocabulary: Vocabulary | None,
    ) -> tuple[int, str, bool, bool, dict[int, bytes] | None]:
        """The story of an article with this sketch, seen at ``seen``: the open one it
        belongs to, or a new one made for it. (story id, the article's source, whether
        the story is new, whether it gains a source, the postings read)."""
        story_id, postings = self._story_of(new, cutoff, vocabulary)
        source = outlet(link, feed)
        if story_id is None:
            return self._new_story(title, seen), source, True, False, postings
        return story_id, source, False, self._new_source(story_id, source), postings

    def _place(
        self,
        article_id: int,
        story_id: int,
        seen: str,
        new: Sketch,
        postings: Mapping[int, bytes] | None,
        grew: bool,
        started: bool,
    ) -> None:
        """The stored article counted in its story (unless it started it) and indexed."""
        if not started:
            self._grow_story(story_id, seen, grew)
        self._index_sketch(article_id, story_id, new, postings)

    def _new_story(self, title: str, seen: str) -> int:
        cursor = self.db.execute(
            """INSERT INTO stories (title, first_seen, last_seen, articles, sources)
               VALUES (?, ?, ?, 1, 1)""",
            [title, seen, seen],
        )
        return int(cursor.lastrowid or 0)

    def _new_source(self, story_id: int, source: str) -> bool:
        """Whether no article of the story is from ``source`` yet."""
        return (
            self.db.execute(
                "SELECT 1 FROM articles WHERE story_id = ? AND source = ? LIMIT 1",
                [story_id, source],
            ).fetchone()
            is None
        )

    def _grow_story(self, story_id: int, seen: str, grew: bool) -> None:
        """One more article in the story (seen at ``seen``, earlier than its last one if
        it waited for its story; ``grew``: from a new source)."""
        self.db.execute(
            """UPDATE stories SET first_seen = min(first_seen, ?), last_seen = max(last_seen, ?),
               articles = articles + 1, sources = sources + ? WHERE id = ?""",
            [seen, seen, int(grew), story_id],
        )

    def _index_sketch(
        self,
        article_id: int,
        story_id: int,
        new: Sketch,
        postings: Mapping[int, bytes] | None,
    ) -> None:
        """Keep the article's sketch, and index it under its keys, for later articles."""
        if new.keys:
            self.db.execute(
                "INSERT INTO story_sketches (article_id, story_id, words, numbers) "
                "VALUES (?, ?, ?, ?)",
                [article_id, story_id, pack(new.words), pack(new.numbers)],
            )
            self._index_keys(article_id, new.keys, postings)

    def _index_keys(
        self, article_id: int, keys: Sequence[int], postings: Mapping[int, bytes] | None = None
    ) -> None:
        """Index a new article (the newest one stored) under its keys: ``story_keys``
        (``id`` is article_id * 32 + band) and each key's postings (``postings``: as
        :meth:`_postings` read them in this transaction, if it did)."""
        if not keys:
            return
        self._record_keys(article_id, keys)
        if postings is None:
            postings = self._postings(keys)
        # Appended: ids only grow (retention keeps the newest article), so each blob stays
        # sorted, oldest first. The 4 bytes an id takes (pack) are what the slice keeps
        # PER_KEY - 1 of. Should an id ever come out lower, it is merged in its place.
        entry = pack((article_id,))
        keep = 4 * (PER_KEY - 1)
        rows = []
        for key in keys:
            blob = postings.get(key, b"")
            if blob and int.from_bytes(blob[-4:], sys.byteorder) >= article_id:
                rows.append((key, pack(sorted({*unpack(blob), article_id})[-PER_KEY:])))
            else:
                rows.append((key, blob[-keep:] + entry if keep else entry))
        self._write_postings(rows)

    def rekey_stories(
        self, vocabulary: Vocabulary, limit: int = REKEY_LIMIT, batch: int = REKEY_BATCH
    ) -> int:
        """Rebuild the index keys of the ``limit`` newest indexed articles under the
        vocabulary's common words (called when they changed a lot: a new database's
        first estimates, and each start's), newest first, ``batch`` articles a
        transaction. Returns how many articles' keys changed."""
        changed = done = 0
        below = 1 << 62
        try:
            while done < limit:
                with self._atomic():
                    rows = self.db.execute(
                        """SELECT article_id, words FROM story_sketches WHERE article_id < ?
                           ORDER BY article_id DESC LIMIT ?""",
                        [below, min(batch, limit - done)],
                    ).fetchall()
                    if not rows:
                        break
                    changed += self._rekey(rows, vocabulary)
                done += len(rows)
                below = rows[-1][0]
        except sqlite3.Error as exc:
            raise _database_error(self.path, "rebuild the story index", exc) from exc
        return changed

    def _rekey(self, rows: Sequence[tuple[int, bytes]], vocabulary: Vocabulary) -> int:
        """New keys for these (article id, words) rows, newest first; their postings
        mended. Returns how many articles' keys changed."""
        before: dict[int, list[int]] = defaultdict(list)
        for entry, key in self.db.execute(
            "SELECT id, key FROM story_keys WHERE id >= ? AND id < ? ORDER BY id",
            [rows[-1][0] * 32, (rows[0][0] + 1) * 32],
        ):
            before[entry >> 5].append(key)
        gone: dict[int, set[int]] = defaultdict(set)  # key -> articles leaving it
        added: dict[int, set[int]] = defaultdict(set)  # key -> articles joining it
        changed = 0
        for article_id, words in rows:
            keys = keys_of(unpack(words), vocabulary)
            old = before.get(article_id, [])
            if tuple(old) == keys:
                continue  # a start's first estimate: mostly the same common words
            changed += 1
            for key in old:
                gone[key].add(article_id)
            for key in keys:
                added[key].add(article_id)
            self.db.execute(
                "DELETE FROM story_keys WHERE id >= ? AND id < ?",
                [article_id * 32, article_id * 32 + 32],
            )
            self._record_keys(article_id, keys)

        def mend(key: int, ids: array[int]) -> list[int]:
            leaving = gone.get(key, set())
            return sorted({a for a in ids if a not in leaving} | added.get(key, set()))

        self._mend_postings(sorted(gone.keys() | added.keys()), mend)
        return changed

    def prune_story_index(self, before: datetime) -> int:
        """:meth:`prune_story_index_steps` all at once; the articles forgotten."""
        return sum(self.prune_story_index_steps(before))

    def prune_story_index_steps(
        self, before: datetime, batch: int = PRUNE_STORY_BATCH
    ) -> Iterator[int]:
        """Forget the sketches and index keys of articles seen before ``before`` (the
        story quiet period): new articles are compared with recent ones only. Oldest
        first, ``batch`` article ids a transaction, each taking its articles out of the
        postings of their keys; yields the sketches each step forgot (the caller may do
        other work between steps; a step not taken is taken next time)."""
        try:
            row = self.db.execute(
                "SELECT min(id) FROM articles WHERE seen_at >= ?", [stamp(before)]
            ).fetchone()
            first_kept = row[0] if row[0] is not None else 1 << 40
            while True:
                with self._atomic():
                    low = self.db.execute(
                        """SELECT min(low) FROM (
                               SELECT min(id) >> 5 AS low FROM story_keys WHERE id < ?
                               UNION ALL
                               SELECT min(article_id) FROM story_sketches
                               WHERE article_id < ?)""",
                        [first_kept * 32, first_kept],
                    ).fetchone()[0]
                    if low is None:
                        return
                    high = min(low + batch, first_kept)
                    keys = [
                        r[0]
                        for r in self.db.execute(
                            "SELECT DISTINCT key FROM story_keys WHERE id >= ? AND id < ?",
                            [low * 32, high * 32],
                        )
                    ]

                    def forget(_: int, ids: array[int], high: int = high) -> array[int] | None:
                        # Sorted, oldest first: ids below `high` are a prefix (and all
                        # of them are forgotten: those below `low` already were).
                        cut = bisect_left(ids, high)
                        return ids[cut:] if cut else None

                    self._mend_postings(keys, forget)
                    self.db.execute(
                        "DELETE FROM story_keys WHERE id >= ? AND id < ?", [low * 32, high * 32]
                    )
                    forgotten = self.db.execute(
                        "DELETE FROM story_sketches WHERE article_id >= ? AND article_id < ?",
                        [low, high],
                    ).rowcount
                yield int(forgotten)
        except sqlite3.Error as exc:
            raise _database_error(self.path, "prune the story index", exc) from exc

    def recent_story_words(self, limit: int = 2000) -> Iterator[Collection[int]]:
        """The content words (hashes, as stored in its sketch) of the newest article of
        each of the ``limit`` most recently active stories among the last ``25 x limit``
        sketched articles (word rarity for story clustering; bounded so a large database
        costs the same, and read from the stored sketches rather than the text, which
        would have to be split and folded again), one at a time."""
        for row in self.db.execute(
            """SELECT words FROM story_sketches WHERE article_id IN
                   (SELECT max(article_id) FROM story_sketches
                    WHERE article_id >
                          (SELECT coalesce(max(article_id), 0) FROM story_sketches) - ?
                    GROUP BY story_id ORDER BY max(article_id) DESC LIMIT ?)""",
            [limit * 25, limit],
        ):
            yield unpack(row[0])
