from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.match import Matcher, load_rule_file, parse_query
from monitor.models import AllOf, AnyOf, Article, Condition, Near, Not, Regex, Rule, Term
from monitor.text import normalize, phrase_at, term_keys


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


# --- the query language ---------------------------------------------------------------------


def q(text: str) -> Matcher:
    return Matcher([rule("q", parse_query(text))])


def fires(matcher: Matcher, title: str, body: str = "", **kw: object) -> bool:
    art = Article(
        feed=str(kw.get("feed", "wire")),
        uid="1",
        title=title,
        link=str(kw.get("link", "")),
        content=body,
        author=str(kw.get("author", "")),
        categories=tuple(kw.get("categories", ())),
    )  # type: ignore[arg-type]
    return bool(matcher.match(art))


def test_boolean_operators_and_precedence() -> None:
    m = q("(troops OR soldiers) border -collie")
    assert fires(m, "Soldiers at the border")
    assert not fires(m, "Soldiers at the border with a collie")
    m = q("a OR b AND c")  # AND binds tighter: a OR (b AND c)
    assert fires(m, "a") and fires(m, "b c") and not fires(m, "b")


def test_fields() -> None:
    m = q("title:troops")
    assert fires(m, "Troops move", "") and not fires(m, "News", "troops move")
    assert fires(q("content:troops"), "x", "troops move")
    assert fires(q("author:reuters"), "x", author="Reuters staff")
    assert fires(q("category:ukraine"), "x", categories=("World", "Ukraine"))
    assert fires(q("feed:tass"), "x", feed="tass")
    assert fires(q("link:kyivindependent"), "x", link="https://kyivindependent.com/a")
    assert not fires(q("troops"), "x", author="troops")  # bare terms: title and content only
    assert fires(q("title:(troops OR tanks) AND border"), "Tanks roll", "at the border")


def test_prefix_and_stem() -> None:
    assert fires(q("sanction*"), "Sanctioned oligarchs")
    assert not fires(q("sanction"), "Sanctioned oligarchs")
    stem = q("sanction~")
    for title in ("EU sanctions", "Sanctioned banks", "sanctioning again", "a sanction"):
        assert fires(stem, title), title
    assert not fires(stem, "Sanctimonious")
    assert not fires(q("well~"), "Wellness retreat")
    assert fires(q('"troop movement"~'), "Troops moving?") is False  # phrase stays a phrase
    assert fires(q('"troop move"~'), "troops moving east")


def test_near() -> None:
    m = q("troops NEAR/5 border")
    assert fires(m, "Troops massed near the Ukrainian border")
    assert fires(m, "The border saw troops")  # either order
    assert not fires(m, "Troops " + "x " * 10 + "border")
    assert not fires(m, "Troops", "border")  # the two must be in the same field
    assert fires(q('"armoured column" NEAR/3 border'), "An armoured column near the border")
    groups = q("(troops OR soldiers) NEAR/3 (border OR frontier)")
    assert fires(groups, "Soldiers at the frontier") and fires(groups, "troops by the border")
    assert not fires(groups, "Soldiers " + "x " * 5 + "frontier")
    assert not fires(q('"armoured column" NEAR/2 border'), "An armoured column near the border")


def test_regex_is_linear_time_and_scoped() -> None:
    m = q("/t-?(72|80|90)/i")
    assert fires(m, "New T-90 tanks") and fires(m, "t72 seen") and not fires(m, "T-34")
    assert fires(q("title:/^BREAKING/"), "BREAKING: x") and not fires(
        q("title:/^BREAKING/"), "x", "BREAKING"
    )
    evil = q("/(a+)+$/")
    assert not fires(evil, "a" * 50_000 + "!")  # RE2: linear, returns at once


def test_min_terms() -> None:
    r = Rule(name="m", condition=parse_query("troops OR tanks OR border"), min_terms=2)
    m = Matcher([r])
    assert not fires(m, "Troops")
    assert fires(m, "Troops and tanks")


def test_yaml_groups_mean_the_same_as_the_query() -> None:
    cond = AllOf(
        (
            AnyOf((term("troops"), term("soldiers"))),
            AnyOf((term("border"),)),
            Not(AnyOf((term("border collie"),))),
        )
    )
    yaml_m = Matcher([rule("y", cond)])
    query_m = q('(troops OR soldiers) AND border AND NOT "border collie"')
    for title in ("Troops at border", "soldiers border collie", "border", "troops"):
        assert fires(yaml_m, title) == fires(query_m, title)


# --- property: the automaton agrees with an obviously-correct evaluator ---------------------

WORDS = [
    "troop",
    "troops",
    "border",
    "sanction",
    "sanctions",
    "sanctioned",
    "talk",
    "talks",
    "talking",
    "nato",
    "kyiv",
    "mass",
    "massing",
    "plan",
    "planned",
    "news",
    "new",
]


def reference_positions(term: Term, text: str) -> list[int]:
    seq = normalize(text).split()
    return [i for i in range(len(seq)) if phrase_at(seq, i, term.keys, term.mode)]


def reference(cond: Condition, fields: dict[str, str]) -> bool:
    if isinstance(cond, Term):
        names = [cond.field] if cond.field else ["title", "content"]
        return any(reference_positions(cond, fields[n]) for n in names)
    if isinstance(cond, Near):
        for n in ["title", "content"]:
            for a in reference_positions(cond.left, fields[n]):
                for b in reference_positions(cond.right, fields[n]):
                    lo, hi = (a, b) if a <= b else (b, a)
                    first_len = len(cond.left.keys) if a <= b else len(cond.right.keys)
                    if hi - (lo + first_len - 1) <= cond.distance:
                        return True
        return False
    if isinstance(cond, Regex):
        raise AssertionError("no regex in generated rules")
    if isinstance(cond, AnyOf):
        return any(reference(c, fields) for c in cond.children)
    if isinstance(cond, AllOf):
        return all(reference(c, fields) for c in cond.children)
    return not reference(cond.child, fields)


modes = st.sampled_from(["word", "word", "prefix", "stem"])
terms = st.builds(
    lambda ws, mode, field: Term(" ".join(ws), term_keys(" ".join(ws), mode), field, mode),
    st.lists(st.sampled_from(WORDS), min_size=1, max_size=2),
    modes,
    st.sampled_from([None, None, "title", "content"]),
)
unscoped = st.builds(
    lambda ws, mode: Term(" ".join(ws), term_keys(" ".join(ws), mode), None, mode),
    st.lists(st.sampled_from(WORDS), min_size=1, max_size=2),
    modes,
)
nears = st.builds(Near, unscoped, unscoped, st.integers(1, 4))
conditions = st.recursive(
    st.one_of(terms, terms, nears),
    lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=3).map(lambda c: AnyOf(tuple(c))),
        st.lists(inner, min_size=1, max_size=3).map(lambda c: AllOf(tuple(c))),
        inner.map(Not),
    ),
    max_leaves=6,
)
texts = st.lists(st.sampled_from([*WORDS, "the", "and", ",", "-", "'s"]), max_size=14).map(" ".join)


@settings(max_examples=400, deadline=None)
@given(st.lists(conditions, min_size=1, max_size=5), texts, texts)
def test_matcher_agrees_with_reference(conds: list[Condition], title: str, body: str) -> None:
    rules = [rule(f"r{i}", c) for i, c in enumerate(conds)]
    got = {h.rule for h in Matcher(rules).match(article(title, body))}
    fields = {"title": title, "content": body}
    want = {r.name for r in rules if reference(r.condition, fields)}
    assert got == want


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="abcdeilnorstyg", min_size=1, max_size=12))
def test_surface_forms_are_complete(word: str) -> None:
    """Any word is found by a term written as any other word with the same key."""
    for mode in ("word", "stem"):
        keys = term_keys(word, mode)  # type: ignore[arg-type]
        if keys:
            term_ = Term(word, keys, None, mode)  # type: ignore[arg-type]
            assert fires(Matcher([rule("r", term_)]), word), (word, mode, keys)


def test_snippet_finds_terms_spelled_with_accents() -> None:
    m = Matcher([rule("z", term("zelensky"))])
    body = "Intro. " * 40 + "President Zélensky met the envoys in Kyiv. " + "More. " * 40
    [hit] = m.match(article("Talks", body))
    assert "Zélensky met the envoys" in hit.snippet
