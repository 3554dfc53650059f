"""Pair precision and recall of story clustering on hand-labelled articles.

    python benchmarks/story_quality.py [--data tests/data/stories/labelled.yaml] [-v]
        [--orders 20]

Articles arrive one by one (in file order, then in ``--orders`` shuffled orders) and
each joins the story of its most similar earlier article, exactly as the daemon decides
(:func:`monitor.stories.best_story`), either against every earlier article ("exact") or
only against those sharing an index key ("index", what the daemon does). Every pair of
articles then counts: same labelled cluster and same story (true positive), same story
but different clusters (a false merge), same cluster but different stories (a miss).
Recall is also broken down by the kind of copy (near-copy, new-headline, trimmed,
paraphrase) against its cluster's original. -v lists the false merges and misses.
"""

from __future__ import annotations

import argparse
import random
from collections import Counter
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import yaml
from rule_quality import Score

from monitor.stories import Sketch, Vocabulary, best_story, shared_keys_needed, sketch

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "stories" / "labelled.yaml"


@dataclass
class Result(Score):
    """Pair counts (``false_alarms``: pairs merged across clusters; ``misses``: pairs of
    one cluster left apart), and recall by kind of copy."""

    #: kind -> [joined its original, pairs]
    by_kind: dict[str, list[int]] = field(default_factory=dict)


def load(path: Path = DATA) -> list[dict[str, Any]]:
    articles: list[dict[str, Any]] = yaml.safe_load(path.read_text(encoding="utf-8"))["articles"]
    return articles


def vocabulary_of(articles: list[dict[str, Any]], *, fresh: bool) -> Vocabulary:
    """``fresh``: none, as in a new database; else word rarity from one text per labelled
    cluster, as the daemon's refresh sees it (one article per recent story)."""
    if fresh:
        return Vocabulary()
    first: dict[str, str] = {}
    for a in articles:
        first.setdefault(a["cluster"], f"{a['title']}\n{a['text']}")
    return Vocabulary(list(first.values()), minimum=1)


def cluster(articles: list[dict[str, Any]], vocabulary: Vocabulary, *, lsh: bool) -> dict[str, int]:
    """article id -> story id, articles taken in the given order."""
    seen: list[tuple[int, Sketch]] = []
    story_of: dict[str, int] = {}
    for article in articles:
        new = sketch(article["title"], article["text"], vocabulary)
        keys = set(new.keys)
        need = shared_keys_needed(new)
        candidates = [(s, k) for s, k in seen if not lsh or len(keys.intersection(k.keys)) >= need]
        story = best_story(new, candidates, vocabulary)
        if story is None:
            story = len(story_of)
        story_of[article["id"]] = story
        seen.append((story, new))
    return story_of


def score(articles: list[dict[str, Any]], story_of: dict[str, int]) -> Result:
    result = Result()
    for a, b in combinations(articles, 2):
        same = a["cluster"] == b["cluster"]
        joined = story_of[a["id"]] == story_of[b["id"]]
        if same and joined:
            result.tp += 1
        elif joined:
            result.fp += 1
            result.false_alarms.append(f"{a['id']} ~ {b['id']}")
        elif same:
            result.fn += 1
            result.misses.append(f"{a['id']} ~ {b['id']}")
    originals = {a["cluster"]: a["id"] for a in articles if a["kind"] == "original"}
    for a in articles:
        original = originals.get(a["cluster"])
        if original and a["id"] != original:
            counts = result.by_kind.setdefault(a["kind"], [0, 0])
            counts[0] += story_of[a["id"]] == story_of[original]
            counts[1] += 1
    return result


def evaluate(
    path: Path = DATA, *, lsh: bool = True, fresh: bool = False, orders: int = 0, seed: int = 1
) -> tuple[Result, list[Result]]:
    """The result in file order, and in ``orders`` shuffled orders."""
    articles = load(path)
    vocabulary = vocabulary_of(articles, fresh=fresh)
    first = score(articles, cluster(articles, vocabulary, lsh=lsh))
    rnd = random.Random(seed)
    shuffled = []
    for _ in range(orders):
        order = list(articles)
        rnd.shuffle(order)
        shuffled.append(score(articles, cluster(order, vocabulary, lsh=lsh)))
    return first, shuffled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--orders", type=int, default=20, help="shuffled arrival orders")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    articles = load(args.data)
    clusters = Counter(a["cluster"] for a in articles)
    print(
        f"{len(articles)} articles, {len(clusters)} clusters "
        f"({sum(1 for n in clusters.values() if n > 1)} with more than one article), "
        f"{sum(n * (n - 1) // 2 for n in clusters.values())} same-story pairs"
    )
    by_id = {a["id"]: a for a in articles}
    for fresh, lsh in ((False, False), (False, True), (True, False), (True, True)):
        first, shuffled = evaluate(args.data, lsh=lsh, fresh=fresh, orders=args.orders)
        name = ("new database, " if fresh else "") + ("index" if lsh else "exact")
        print(
            f"{name} file order: precision {first.precision:.3f} recall {first.recall:.3f} "
            f"(tp {first.tp}, false merges {first.fp}, misses {first.fn})"
        )
        if shuffled:
            ps = [r.precision for r in shuffled]
            rs = [r.recall for r in shuffled]
            print(
                f"{name} {len(shuffled)} shuffled orders: precision mean {sum(ps) / len(ps):.3f} "
                f"min {min(ps):.3f}, recall mean {sum(rs) / len(rs):.3f} min {min(rs):.3f}"
            )
        kinds = ", ".join(f"{k} {v[0]}/{v[1]}" for k, v in sorted(first.by_kind.items()))
        print(f"{name} joined their original: {kinds}")
        if args.verbose:
            for label, pairs in (("false merge", first.false_alarms), ("miss", first.misses)):
                for pair in pairs:
                    x, y = pair.split(" ~ ")
                    print(
                        f"  {label}: {x} [{by_id[x]['kind']}] {by_id[x]['title'][:50]!r} ~ "
                        f"{y} [{by_id[y]['kind']}] {by_id[y]['title'][:50]!r}"
                    )


if __name__ == "__main__":
    main()
