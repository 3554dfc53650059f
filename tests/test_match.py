from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.match import Matcher, evaluate
from monitor.models import AllOf, AnyOf, Article, Condition, Not, Rule, Term
from monitor.ruleset import load_rule_file
from monitor.text import term_keys, tokenize


def term(text: str) -> Term:
    return Term(text, term_keys(text))


def article(title: str, content: str = "", feed: str = "wire") -> Article:
    return Article(feed=feed, uid=title, title=title, link="http://example.org/", content=content)


def rule(name: str, condition: Condition, **kw: object) -> Rule:
    return Rule(name=name, condition=condition, **kw)  # type: ignore[arg-type]


def test_whole_words_only() -> None:
    m = Matcher([rule("sanctions", term("sanction"))])
    assert m.match(article("EU agrees new sanctions on Moscow"))
    assert not m.match(article("A sanctimonious speech"))
    assert not m.match(article("Unsanctioned rally"))


def test_phrases_match_consecutive_words_across_punctuation() -> None:
    m = Matcher([rule("javelin", term("anti-tank missiles"))])
    assert m.match(article("US weighs sending anti tank missiles"))
    assert m.match(article("Anti-tank missile arrives"))
    assert not m.match(article("anti aircraft and tank missiles"))


def test_phrase_never_spans_title_and_body() -> None:
    m = Matcher([rule("r", term("border troops"))])
    assert not m.match(article("Tension on the border", "Troops are calm"))
    assert m.match(article("x", "border troops moved"))


def test_any_all_none_semantics() -> None:
    cond = AllOf(
        (
            AnyOf((term("troops"), term("soldiers"))),
            AnyOf((term("border"), term("frontier"))),
            Not(AnyOf((term("border collie"),))),
        )
    )
    m = Matcher([rule("troops", cond)])
    assert m.match(article("Troops near the border"))
    assert m.match(article("Soldiers at frontier"))
    assert not m.match(article("Troops in the capital"))
    assert not m.match(article("Troops of fans cheer border collie at the border"))


def test_hit_reports_terms_in_rule_order_and_snippet_from_body() -> None:
    cond = AllOf((AnyOf((term("troops"), term("soldiers"))), term("border")))
    m = Matcher([rule("troops", cond, version="v1", severity="urgent")])
    body = (
        "Intro sentence. " * 20 + "Some 1,200 soldiers moved to the border this week. " + "x " * 80
    )
    [hit] = m.match(article("Troops seen", body))
    assert hit.terms == ("troops", "soldiers", "border")
    assert "soldiers moved to the border" in hit.snippet
    assert hit.rule_version == "v1" and hit.severity == "urgent"


def test_feed_scope_and_disabled_rules() -> None:
    m = Matcher(
        [
            rule("scoped", term("talks"), feeds=("reuters",)),
            rule("off", term("talks"), enabled=False),
        ]
    )
    assert [h.rule for h in m.match(article("Talks resume", feed="reuters"))] == ["scoped"]
    assert m.match(article("Talks resume", feed="tass")) == []


def test_rule_of_only_negations_is_evaluated_for_every_article() -> None:
    m = Matcher([rule("quiet", Not(term("war")))])
    assert m.match(article("Peaceful day"))
    assert not m.match(article("War continues"))


def test_loaded_rules_match_like_hand_built_ones(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(
        "rules:\n"
        "  - name: troops\n"
        "    any: [troops, soldiers]\n"
        "    all: [[border, frontier]]\n"
        "    none: [border collie]\n"
    )
    rules, errors = load_rule_file(path)
    assert errors == []
    m = Matcher(rules)
    assert m.match(article("Soldiers massing at the frontier"))
    assert not m.match(article("Soldiers on parade"))


# --- property: the automaton agrees with an obviously-correct evaluator ---------------------

WORDS = ["troop", "troops", "border", "sanction", "sanctions", "talk", "talks", "nato", "kyiv"]


def reference_present(keys: tuple[str, ...], texts: list[str]) -> bool:
    for text in texts:
        words = tokenize(text).keys
        for i in range(len(words) - len(keys) + 1):
            if tuple(words[i : i + len(keys)]) == keys:
                return True
    return False


def reference(cond: Condition, texts: list[str]) -> bool:
    if isinstance(cond, Term):
        return reference_present(cond.keys, texts)
    if isinstance(cond, AnyOf):
        return any(reference(c, texts) for c in cond.children)
    if isinstance(cond, AllOf):
        return all(reference(c, texts) for c in cond.children)
    return not reference(cond.child, texts)


terms = st.lists(st.sampled_from(WORDS), min_size=1, max_size=2).map(lambda w: term(" ".join(w)))
conditions = st.recursive(
    terms,
    lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=3).map(lambda c: AnyOf(tuple(c))),
        st.lists(inner, min_size=1, max_size=3).map(lambda c: AllOf(tuple(c))),
        inner.map(Not),
    ),
    max_leaves=6,
)
texts = st.lists(st.sampled_from([*WORDS, "the", "and", ",", "-"]), max_size=12).map(" ".join)


@settings(max_examples=300, deadline=None)
@given(st.lists(conditions, min_size=1, max_size=5), texts, texts)
def test_matcher_agrees_with_reference(conds: list[Condition], title: str, body: str) -> None:
    rules = [rule(f"r{i}", c) for i, c in enumerate(conds)]
    got = {h.rule for h in Matcher(rules).match(article(title, body))}
    want = {r.name for r in rules if reference(r.condition, [title, body])}
    assert got == want
    present = {
        t.keys
        for r in rules
        for t in _terms(r.condition)
        if reference_present(t.keys, [title, body])
    }
    assert {r.name for r in rules if evaluate(r.condition, present)} == want


def _terms(cond: Condition) -> list[Term]:
    if isinstance(cond, Term):
        return [cond]
    if isinstance(cond, Not):
        return _terms(cond.child)
    return [t for c in cond.children for t in _terms(c)]
