"""The shipped rules on the shipped sample articles and on labelled headlines."""

import sys
from pathlib import Path

from monitor.match import Matcher, load_rules
from monitor.parse import parse_feed

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from rule_quality import evaluate  # noqa: E402


def test_sample_articles_fire_the_rules_the_client_expects() -> None:
    feed = (ROOT / "seeds" / "sample-feed.xml").read_bytes()
    articles = parse_feed("sample", "http://127.0.0.1/sample-feed.xml", feed, {})
    matcher = Matcher(load_rules(ROOT / "rules").rules)
    fired = {a.uid.rsplit(":", 1)[-1][:3]: {h.rule for h in matcher.match(a)} for a in articles}
    # Troops near the border: 000, 001, 002, 003, 004.
    for seed in ("000", "001", "002", "003", "004"):
        assert "troop-movements" in fired[seed], seed
    assert "military-exercises" in fired["000"]
    assert "sanctions" in fired["002"]  # Blinken threatens strong sanctions
    assert "diplomacy-talks" in fired["002"] and "diplomacy-talks" in fired["004"]
    assert "weapons-deliveries" in fired["003"]  # Javelins and Stingers for Ukraine
    assert "invasion-warnings" in fired["003"]


def test_precision_and_recall_on_labelled_headlines_stay_high() -> None:
    scores, total, count = evaluate(ROOT / "rules", ROOT / "tests/data/headlines.yaml")
    assert count >= 80
    # Floors under today's figures (1.000 / 1.000; the rules were tuned with this set in
    # view, so it flatters them): a rule edit that costs precision or recall fails here
    # and must be argued for.
    assert total.precision >= 0.97, [s.false_alarms for s in scores.values()]
    assert total.recall >= 0.9, [s.misses for s in scores.values()]
    for name, score in scores.items():
        assert score.precision >= 0.9, (name, score.false_alarms)
