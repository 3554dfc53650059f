"""What story clustering costs when an article is added against many stored ones.

    python benchmarks/story_bench.py [--stored 100000] [--added 1000] [--brute 50]

Fills a real SQLite store (``Store.save``, with word rarity refreshed as the daemon does)
with ``--stored`` recent articles: everyday news from poll_bench's corpus (each about an
event of its own), 5% of them copies of one of 2,000 syndicated wire stories. Then adds
``--added`` articles one ``Store.save`` call each, like a poll that finds one new item:
half are copies of wire stories already stored, from a new outlet (they must join their story),
half are new events (they must not join anything). Reports the time of each call
(median, p90, p99; the target is a median under 5 ms), how many copies joined and how
many new events joined by mistake, and, side by side on the first ``--brute`` added
articles, the same decision made by comparing with every stored article (no index).
"""

from __future__ import annotations

import argparse
import random
import resource
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from poll_bench import _story

from monitor.backlog import refresh_vocabulary
from monitor.models import Article
from monitor.store import Store
from monitor.stories import Packed, Sketch, Vocabulary, best_story, sketch, unpack

WIRE_STORIES = 2000
TARGET_MS = 5.0


def article(rnd: random.Random, index: int, wire: int | None, outlet: int) -> Article:
    if wire is None:
        title, paragraphs = _story(rnd, rnd.random() < 0.1)
    else:
        title, paragraphs = _story(random.Random(f"wire-{wire}"), wire % 10 == 0)
        if len(paragraphs) > 2:
            paragraphs.pop(rnd.randrange(1, len(paragraphs)))
    return Article(
        feed=f"feed-{outlet}",
        uid=f"{index}",
        title=title,
        link=f"https://outlet{outlet}.example.org/story/{index}",
        summary="\n".join(paragraphs),
    )


def fill(
    store: Store, count: int, now: datetime, rnd: random.Random
) -> tuple[Vocabulary, float, list[int]]:
    """Store ``count`` articles; the vocabulary, the seconds it took, the wire stories
    stored."""
    vocabulary = Vocabulary()
    wires: set[int] = set()
    began = time.perf_counter()
    batch = []
    for index in range(count):
        wire = rnd.randrange(WIRE_STORIES) if rnd.random() < 0.05 else None
        if wire is not None:
            wires.add(wire)
        batch.append((article(rnd, index, wire, rnd.randrange(500)), []))
        if len(batch) == 50:
            store.save(batch, now, vocabulary=vocabulary)
            if vocabulary.stale(len(batch)):
                refresh_vocabulary(store, vocabulary)
            batch = []
            if index % 10_000 < 50:
                print(f"  stored {index + 1:,}", file=sys.stderr)
    if batch:
        store.save(batch, now, vocabulary=vocabulary)
    refresh_vocabulary(store, vocabulary)
    return vocabulary, time.perf_counter() - began, sorted(wires)


def brute(store: Store, new: Sketch, vocabulary: Vocabulary, own: int) -> int | None:
    """The same decision against every other stored sketch: no index."""
    candidates = [
        (r[0], Packed(unpack(r[1]), unpack(r[2])))
        for r in store.db.execute(
            "SELECT story_id, words, numbers FROM story_sketches WHERE article_id != ?", [own]
        )
    ]
    return best_story(new, candidates, vocabulary)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stored", type=int, default=100_000)
    parser.add_argument("--added", type=int, default=1000)
    parser.add_argument("--brute", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rnd = random.Random(args.seed)
    now = datetime(2026, 3, 2, 9, tzinfo=UTC)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "stories.db")
        print(f"filling {args.stored:,} articles...", file=sys.stderr)
        vocabulary, filled, wires = fill(store, args.stored, now, rnd)
        stored_stories = store.db.execute("SELECT count(*) FROM stories").fetchone()[0]
        index_rows = store.db.execute("SELECT count(*) FROM story_keys").fetchone()[0]
        times: list[float] = []
        joined_copies = copies = false_joins = events = 0
        brute_times: list[float] = []
        agree = 0
        for i in range(args.added):
            copy = i % 2 == 0
            wire = rnd.choice(wires) if copy else None
            new = article(rnd, args.stored + i, wire, 500 + i)
            before = store.db.execute("SELECT count(*) FROM stories").fetchone()[0]
            now += timedelta(seconds=30)
            began = time.perf_counter()
            store.save([(new, [])], now, vocabulary=vocabulary)
            times.append(time.perf_counter() - began)
            started_one = store.db.execute("SELECT count(*) FROM stories").fetchone()[0] > before
            if copy:
                copies += 1
                joined_copies += not started_one
            else:
                events += 1
                false_joins += not started_one
            if i < args.brute:
                text = new.summary
                own, decided = store.db.execute(
                    "SELECT id, story_id FROM articles WHERE feed = ? AND uid = ?",
                    [new.feed, new.uid],
                ).fetchone()
                began = time.perf_counter()
                found = brute(store, sketch(new.title, text, vocabulary), vocabulary, own)
                brute_times.append(time.perf_counter() - began)
                agree += found == decided if not started_one else found is None
        store.close()
    ms = sorted(t * 1000 for t in times)
    median = statistics.median(ms)
    p90, p99 = ms[int(0.9 * len(ms))], ms[min(len(ms) - 1, int(0.99 * len(ms)))]
    brute_median = statistics.median(brute_times) * 1000 if brute_times else 0.0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"\n{args.stored:,} stored articles ({stored_stories:,} stories, {index_rows:,} index "
        f"rows), filled in {filled:.0f} s ({filled / args.stored * 1e6:.0f} us an article, "
        "batches of 50)"
    )
    print(
        f"adding one article (Store.save, story included), {len(ms)} times: median "
        f"{median:.2f} ms, p90 {p90:.2f} ms, p99 {p99:.2f} ms, max {ms[-1]:.2f} ms"
    )
    print(
        f"copies of stored wire stories that joined their story: {joined_copies}/{copies}; "
        f"new events that joined a story by mistake: {false_joins}/{events}"
    )
    if brute_times:
        print(
            f"brute force (every stored sketch compared, no index), first {len(brute_times)}: "
            f"median {brute_median:.0f} ms, {brute_median / median:.0f}x the indexed save; "
            f"same decision {agree}/{len(brute_times)}"
        )
    print(f"peak RSS of this process (corpus generator included) {rss:.0f} MiB")
    verdict = "met" if median < TARGET_MS else "NOT met"
    print(f"target: median under {TARGET_MS:g} ms: {verdict}")


if __name__ == "__main__":
    main()
