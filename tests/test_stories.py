"""Stories: near-duplicates across outlets, stored in real SQLite, and the alert policies
that use them (once per story, min_sources, follow-ups). Hand-labelled articles from
tests/data/stories/labelled.yaml."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from conftest import Clock, write_project

from monitor.cli import main
from monitor.deliver import render
from monitor.match import load_rules
from monitor.models import AlertPolicy, Article, Hit
from monitor.policy import StoryStep, story_steps
from monitor.store import MAX_CANDIDATES, PER_KEY, Store
from monitor.store.migrations import migrations
from monitor.stories import (
    Vocabulary,
    best_story,
    content_words,
    outlet,
    sketch,
    unpack,
)
from monitor.text import words

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from story_quality import evaluate, load, vocabulary_of  # noqa: E402

LABELLED = {a["id"]: a for a in load()}
VOCABULARY = vocabulary_of(list(LABELLED.values()), fresh=False)


def article(key: str, *, outlet: str | None = None) -> Article:
    item = LABELLED[key]
    host = re.sub(r"[^a-z0-9]+", "-", (outlet or item["feed"]).lower()).strip("-")
    return Article(
        feed=host,
        uid=key,
        title=item["title"],
        link=f"https://www.{host}.example/news/{key}",
        summary=item["text"],
        content_hash=key,
    )


def hit(rule: str = "sanctions") -> Hit:
    return Hit(
        rule=rule,
        rule_version="v1",
        severity="normal",
        terms=("sanctions",),
        snippet="…",
        channels=("chat",),
    )


def save(
    store: Store, clock: Clock, keys: Sequence[str], policy: AlertPolicy | None = None, **kw: Any
) -> list[int]:
    policies = {"sanctions": policy} if policy else None
    ids = []
    for key in keys:
        ids += store.save(
            [(article(key, **kw), [hit()])], clock(), policies=policies, vocabulary=VOCABULARY
        )
        clock.advance(minutes=5)
    return ids


def stories(store: Store) -> list[tuple[int, int]]:
    return [(r.articles, r.sources) for r in store.stories(limit=10_000)]


def test_clustering_quality_on_the_labelled_articles_stays_high() -> None:
    first, shuffled = evaluate(orders=10)
    # Floors under today's figures (file order 1.000 / 0.946; the thresholds were chosen
    # on this set, so it flatters them): a change that costs more fails here.
    assert first.precision >= 0.97, first.false_alarms
    assert first.recall >= 0.9, first.misses
    assert min(r.precision for r in shuffled) >= 0.95
    assert sum(r.recall for r in shuffled) / len(shuffled) >= 0.88
    # Every kind of copy is found, paraphrases too.
    for kind in ("near-copy", "new-headline", "trimmed"):
        joined, pairs = first.by_kind[kind]
        assert joined == pairs, kind
    joined, pairs = first.by_kind["paraphrase"]
    assert joined >= 0.8 * pairs
    # A new database (no word frequencies yet) merges a little more: 0.970 / 1.000.
    fresh, _ = evaluate(fresh=True)
    assert fresh.precision >= 0.95 and fresh.recall >= 0.95, fresh.false_alarms


def test_different_packages_and_rounds_of_talks_stay_apart() -> None:
    eu14 = [k for k, a in LABELLED.items() if a["cluster"] == "eu-sanctions-14"]
    eu15 = [k for k, a in LABELLED.items() if a["cluster"] == "eu-sanctions-15"]
    assert eu14 and eu15
    for a in eu14:
        for b in eu15:
            left = sketch(LABELLED[a]["title"], LABELLED[a]["text"])
            right = sketch(LABELLED[b]["title"], LABELLED[b]["text"])
            assert best_story(left, [(1, right)], VOCABULARY) is None, (a, b)


def test_copies_from_other_outlets_join_one_story_and_alert_once(
    store: Store, clock: Clock
) -> None:
    cluster = [k for k, a in LABELLED.items() if a["cluster"] == "eu-sanctions-14"]
    assert len(cluster) >= 4
    deliveries = save(store, clock, cluster)
    assert len(deliveries) == 1  # the first outlet's hit; the copies are stored, not sent
    assert stories(store) == [(len(cluster), len(cluster))]
    assert store.db.execute("SELECT count(*) FROM hits").fetchone()[0] == len(cluster)
    # Another event on the same topic is a story of its own, and alerts.
    other = next(k for k, a in LABELLED.items() if a["cluster"] == "eu-sanctions-15")
    assert len(save(store, clock, [other])) == 1
    assert sorted(stories(store)) == sorted([(len(cluster), len(cluster)), (1, 1)])


def test_min_sources_holds_the_alert_until_a_second_outlet_carries_it(
    store: Store, clock: Clock
) -> None:
    policy = AlertPolicy(min_sources=2)
    first, copy, third = "a01", "a02", "a03"
    assert save(store, clock, [first], policy) == []
    # The same outlet again (another feed of the same site) does not corroborate.
    other_feed = Article(**{**article(copy, outlet="Reuters").__dict__, "feed": "reuters-2"})
    assert store.save([(other_feed, [hit()])], clock(), policies={"sanctions": policy}) == []
    [delivery_id] = save(store, clock, [third], policy)
    [pending] = store.due_deliveries(clock())
    assert pending.id == delivery_id
    assert pending.title == LABELLED[first]["title"]  # the story's first hit is the alert
    assert pending.sources == 2 and len(pending.outlets) == 2
    message = render(pending)
    assert f"Story:     #{pending.story_id}, 2 sources (reuters.example" in message.body
    assert save(store, clock, ["a04"], policy) == []  # once per story


def test_follow_ups_say_when_more_outlets_carry_the_story(store: Store, clock: Clock) -> None:
    policy = AlertPolicy(follow_up=(3, 4))
    cluster = ["a01", "a02", "a03", "a04"]
    steps = []
    for key in cluster:
        save(store, clock, [key], policy)
        steps.append(sorted(r[0] for r in store.db.execute("SELECT step FROM deliveries")))
    assert steps == [[0], [0], [0, 3], [0, 3, 4]]
    follow = [d for d in store.due_deliveries(clock()) if d.step == 3]
    assert render(follow[0]).title.startswith("[sanctions] now 3 sources: ")


def test_every_copy_alerts_when_once_per_story_is_off(store: Store, clock: Clock) -> None:
    policy = AlertPolicy(once_per_story=False, min_sources=2)
    assert save(store, clock, ["a01"], policy) == []
    assert len(save(store, clock, ["a02"], policy)) == 2  # the held first hit, and this one
    assert len(save(store, clock, ["a03"], policy)) == 1


def test_a_quiet_story_closes_and_its_index_is_pruned(store: Store, clock: Clock) -> None:
    save(store, clock, ["a01"])
    clock.advance(days=3)  # more than the default two quiet days
    save(store, clock, ["a02"])
    assert stories(store) == [(1, 1), (1, 1)]
    assert store.prune_story_index(clock() - timedelta(days=2)) == 1
    assert store.db.execute("SELECT count(*) FROM story_sketches").fetchone()[0] == 1
    kept = store.db.execute("SELECT min(id) >> 5 FROM story_keys").fetchone()[0]
    assert kept == store.db.execute("SELECT max(id) FROM articles").fetchone()[0]


def postings(store: Store) -> dict[int, list[int]]:
    rows = store.db.execute("SELECT key, articles FROM story_postings")
    return {key: list(unpack(blob)) for key, blob in rows}


def expected_postings(store: Store) -> dict[int, list[int]]:
    """What the postings hold after saves and pruning: the newest PER_KEY articles of each
    key in story_keys (a rekey that takes articles out of a full key leaves it short)."""
    by_key: dict[int, list[int]] = {}
    for entry, key in store.db.execute("SELECT id, key FROM story_keys ORDER BY id"):
        by_key.setdefault(key, []).append(entry >> 5)
    return {key: ids[-PER_KEY:] for key, ids in by_key.items()}


def filler(i: int, word: str) -> Article:
    return Article(
        feed="filler",
        uid=f"filler-{i}",
        title=f"Council notice {i}",
        link=f"https://filler{i}.example/{i}",
        summary=f"{word} municipal bakery opens new branch number {i} downtown street",
    )


def test_postings_follow_saves_rekeys_and_pruning(store: Store, clock: Clock) -> None:
    keys = sorted(LABELLED)
    save(store, clock, keys[:40])
    assert postings(store) == expected_postings(store) and postings(store)
    # New common words: the keys of stored articles change, and their postings with them.
    common = Vocabulary()
    common.common = frozenset(content_words(" ".join(LABELLED[k]["text"] for k in keys[:10])))
    assert store.rekey_stories(common, limit=30, batch=7) > 0  # the newest 30, 7 at a time
    assert postings(store) == expected_postings(store)
    assert store.rekey_stories(common, limit=30) == 0  # the same words again: no change
    assert store.rekey_stories(common, batch=7) > 0  # the 10 oldest were not rekeyed yet
    assert postings(store) == expected_postings(store)
    clock.advance(days=3)
    save(store, clock, keys[40:50])
    assert store.prune_story_index(clock() - timedelta(days=2)) == 40
    assert postings(store) == expected_postings(store)
    kept = {a for ids in postings(store).values() for a in ids}
    assert kept and min(kept) > 40
    clock.advance(days=3)
    store.prune_story_index(clock() - timedelta(days=2))
    assert postings(store) == {}  # nothing seen within the quiet period: all forgotten
    assert store.db.execute("SELECT count(*) FROM story_keys").fetchone()[0] == 0


def test_a_crowded_key_keeps_its_newest_articles(store: Store, clock: Clock) -> None:
    word = "bakeryowner"
    for i in range(PER_KEY + 30):
        store.save([(filler(i, word), [])], clock())
    (crowded,) = content_words(word)
    held = postings(store)[crowded]
    assert len(held) == PER_KEY and held == sorted(held)
    assert held == expected_postings(store)[crowded]
    assert held[0] == 31  # the first 30 fell out: only the newest are read
    # The word becomes common: the 5 newest articles are rekeyed and leave its postings;
    # the older entries that fell out are not brought back (documented).
    common = Vocabulary()
    common.common = frozenset({crowded})
    assert store.rekey_stories(common, limit=5) == 5
    assert postings(store)[crowded] == held[:-5]


def test_candidates_are_ranked_as_the_index_query_ranked_them(store: Store, clock: Clock) -> None:
    """The posting lists give what the SQL over story_keys' index gave before them: the
    articles sharing at least `needed` keys among the newest PER_KEY of each, most
    shared first, newest first among equals, at most MAX_CANDIDATES."""
    for i in range(PER_KEY + 40):
        store.save([(filler(i, "bakeryowner" if i % 2 else "ovenmaker"), [])], clock())
    save(store, clock, sorted(LABELLED)[:30])
    per_key = " UNION ALL ".join(
        ["SELECT * FROM (SELECT id FROM story_keys WHERE key = ? ORDER BY id DESC LIMIT ?)"] * 16
    )
    checked = 0
    for key in [*sorted(LABELLED)[:30], "filler-1", "filler-2"]:
        item = LABELLED.get(key)
        text = item["title"] + " " + item["text"] if item else filler(1, "bakeryowner").summary
        keys = sketch("", text or "", VOCABULARY).keys
        for needed in (1, 2, 3):
            marks = list(keys) + [None] * (16 - len(keys))
            old = store.db.execute(
                f"""SELECT count(*) AS shared, id >> 5 AS article FROM ({per_key})
                    GROUP BY article HAVING shared >= ?
                    ORDER BY shared DESC, article DESC LIMIT ?""",
                [*(v for k in marks for v in (k, PER_KEY)), needed, MAX_CANDIDATES],
            ).fetchall()
            found, _ = store._candidates(keys, needed)
            assert found == [tuple(r) for r in old]
            checked += bool(old)
    assert checked > 30


def test_pruning_the_story_index_step_by_step_keeps_it_whole(store: Store, clock: Clock) -> None:
    keys = sorted(LABELLED)
    save(store, clock, keys[:40])
    clock.advance(days=3)
    save(store, clock, keys[40:45])
    steps = store.prune_story_index_steps(clock() - timedelta(days=2), batch=9)
    assert next(steps) > 0  # one step taken, then the prune is interrupted
    steps.close()
    assert postings(store) == expected_postings(store)
    left = store.db.execute("SELECT count(*) FROM story_sketches WHERE article_id <= 40")
    assert 0 < left.fetchone()[0] < 40
    assert store.prune_story_index(clock() - timedelta(days=2)) > 0  # the rest, next time
    assert postings(store) == expected_postings(store)
    assert store.db.execute("SELECT min(article_id) FROM story_sketches").fetchone()[0] > 40


def test_the_postings_migration_keeps_the_newest_entries_of_each_key(tmp_path: Path) -> None:
    import sqlite_utils

    path = tmp_path / "news.db"
    db = sqlite_utils.Database(path)
    migrations.apply(db, stop_before="0010_story_postings")
    rows = [
        ((article + 1) * 32 + band, key)
        for article in range(1500)  # 1,500 keys of one article each: past a batch of 1,000
        for band, key in enumerate((7, 1000 + article % 5, 2000 + article))
    ]
    db.conn.executemany("INSERT INTO story_keys (id, key) VALUES (?, ?)", rows)
    db.conn.commit()
    db.conn.close()
    store = Store(path)
    assert postings(store) == expected_postings(store)
    assert postings(store)[7] == list(range(1301, 1501))  # the newest PER_KEY of 1,500
    assert postings(store)[2005] == [6]
    indexes = [r[0] for r in store.db.execute("SELECT name FROM pragma_index_list('story_keys')")]
    assert indexes == []  # the lookups no longer need one on the key
    store.close()


def test_story_steps_decide_first_alert_follow_ups_and_skipped_thresholds() -> None:
    S = StoryStep  # (hit, step, send): a step not sent is recorded as taken
    once = AlertPolicy(follow_up=(3, 5))
    assert story_steps(once, 1, [10], 10, set()) == [S(10, 0, True)]
    assert story_steps(once, 2, [11], 11, {0}) == []  # a copy: stored, not alerted
    assert story_steps(once, 3, [12], 12, {0}) == [S(12, 3, True)]
    assert story_steps(once, 5, [], 12, {0, 3}) == [S(12, 5, True)]  # grew by an article not hit
    assert story_steps(once, 6, [13], 13, {0, 3, 5}) == []
    # Held until 4 sources; then the first hit goes out and 3 is recorded, not followed up.
    held = AlertPolicy(min_sources=4, follow_up=(3, 5))
    assert story_steps(held, 3, [10, 11], 11, set()) == []
    assert story_steps(held, 4, [10, 11, 12], 12, set()) == [S(10, 0, True), S(12, 3, False)]
    # Two thresholds passed at once (a restart, say): only the higher one is sent.
    assert story_steps(once, 5, [], 12, {0}) == [S(12, 3, False), S(12, 5, True)]
    # Every copy alerted; the copy that reaches a threshold is not alerted twice.
    every = AlertPolicy(once_per_story=False, follow_up=(2,))
    assert story_steps(every, 1, [1], 1, set()) == [S(1, 0, True)]
    assert story_steps(every, 2, [2], 2, {0}) == [S(2, 0, True), S(2, 2, False)]
    assert story_steps(every, 3, [3], 3, {0, 2}) == [S(3, 0, True)]


def test_changing_a_rules_policy_does_not_resend_old_copies(store: Store, clock: Clock) -> None:
    assert len(save(store, clock, ["a01", "a02", "a03"])) == 1
    # Every copy alerted from now on: the copies already decided are not sent now.
    assert len(save(store, clock, ["a04"], AlertPolicy(once_per_story=False))) == 1


def test_held_hits_of_a_removed_rule_stay_held(store: Store, clock: Clock) -> None:
    assert save(store, clock, ["a01"], AlertPolicy(min_sources=2)) == []
    # The rule is gone when a second outlet carries the story: nothing goes out for it.
    assert store.save([(article("a02"), [])], clock(), policies={}) == []
    assert store.db.execute("SELECT count(*) FROM hits WHERE held = 1").fetchone()[0] == 1


def test_a_crowded_key_does_not_hide_the_original(store: Store, clock: Clock) -> None:
    save(store, clock, ["a01"])
    # Many newer articles share one of its index keys (a word) and nothing else.
    original = LABELLED["a01"]
    keys = sketch(original["title"], original["text"]).keys
    word = next(w for w in words(original["text"]) if content_words(w) & set(keys))
    for i in range(120):
        filler = Article(
            feed="filler",
            uid=f"filler-{i}",
            title=f"Council notice {i}",
            link=f"https://filler{i}.example/{i}",
            summary=f"{word} municipal bakery opens new branch number {i} downtown street",
        )
        store.save([(filler, [])], clock())
    copy = store.save([(article("a02"), [hit()])], clock(), vocabulary=VOCABULARY)
    assert copy == []  # joined the original's story (already alerted), not a new one
    assert (2, 2) in stories(store)


def test_story_policy_keys_are_validated_with_their_location(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(
        "rules:\n"
        "  - name: good\n"
        "    match: sanctions\n"
        "    min_sources: 2\n"
        "    follow_up: [3, 5]\n"
        "    once_per_story: false\n"
        "  - name: bad\n"
        "    match: sanctions\n"
        "    min_sources: 0\n"
        "    follow_up: [5, 3]\n"
        "    once_per_story: maybe\n",
        encoding="utf-8",
    )
    loaded = load_rules(tmp_path)
    [good] = loaded.rules
    assert good.policy == AlertPolicy(once_per_story=False, min_sources=2, follow_up=(3, 5))
    messages = [str(e) for e in loaded.errors]
    assert any(":9:" in m and "`min_sources` must be a whole number" in m for m in messages)
    assert any(":10:" in m and "`follow_up` must be a list" in m for m in messages)
    assert any(":11:" in m and "`once_per_story` must be true or false" in m for m in messages)
    assert all("(rule 'bad')" in m for m in messages)


def test_stories_command_lists_stories_and_shows_one(tmp_path: Path, clock: Clock) -> None:
    project = write_project(tmp_path)
    store = Store(project.database)
    save(store, clock, ["a01", "a02", "a03"])
    save(store, clock, ["c01"])
    store.close()

    listing = CliRunner().invoke(main, ["stories", "-c", str(project.config)])
    assert listing.exit_code == 0, listing.output
    assert "3 sources" in listing.output and LABELLED["a01"]["title"] in listing.output
    wide = CliRunner().invoke(
        main, ["stories", "-c", str(project.config), "--min-sources", "2", "--json"]
    )
    [story] = json.loads(wide.output)
    assert story["sources"] == 3 and story["hits"] == 3
    one = CliRunner().invoke(main, ["stories", "-c", str(project.config), str(story["id"])])
    assert one.exit_code == 0
    assert LABELLED["a02"]["title"] in one.output and "hits: sanctions" in one.output
    missing = CliRunner().invoke(main, ["stories", "-c", str(project.config), "999"])
    assert missing.exit_code == 1 and "no story #999" in missing.output
    hits = CliRunner().invoke(main, ["hits", "-c", str(project.config)])
    assert f"story:   #{story['id']} (3 sources)" in hits.output
    assert hits.output.count("sent: - (its story was already alerted)") == 2


def test_outlets_are_registered_domains() -> None:
    assert outlet("https://uk.reuters.com/world/x", "f") == "reuters.com"
    assert outlet("https://www.reuters.com/world/x", "f") == "reuters.com"
    assert outlet("https://www.bbc.co.uk/news/1", "f") == "bbc.co.uk"
    assert outlet("", "wire") == "wire"
    assert outlet("http://[::1", "wire") == "wire"  # unparseable


def test_a_few_stored_texts_give_no_estimate_and_every_word_weighs_the_same() -> None:
    original, copy = LABELLED["a01"], LABELLED["a02"]
    few = Vocabulary([f"{original['title']}\n{original['text']}"] * 5)
    assert few.shares == {}  # too few for an estimate
    new = sketch(copy["title"], copy["text"])
    old = sketch(original["title"], original["text"])
    assert len(set(new.keys) & set(old.keys)) >= 8  # a copy shares most of its keys
    assert best_story(new, [(7, old)], few) == 7
    assert few.total(new.words) == len(new.words)


def test_an_article_of_only_common_words_is_a_story_of_its_own(store: Store, clock: Clock) -> None:
    texts = [f"{a['title']}\n{a['text']}" for a in LABELLED.values()]
    common = Vocabulary(texts * 3, minimum=1)
    plain = Article(
        feed="wire",
        uid="plain",
        title="Russia Ukraine said",
        link="https://wire.example/plain",
        summary="Russia and Ukraine said the war in Ukraine and Russia would go on, they said.",
    )
    assert not sketch(plain.title, plain.summary, common).keys
    for uid in ("plain", "plain-again"):
        copy = Article(**{**plain.__dict__, "uid": uid})
        store.save([(copy, [hit()])], clock(), vocabulary=common)
    assert stories(store) == [(1, 1), (1, 1)]
