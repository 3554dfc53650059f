"""Rules written to hurt: catastrophic regexes, huge files, deep nesting."""

from pathlib import Path

import pytest

from monitor.match import Matcher, QueryError, load_rules, parse_query
from monitor.models import Article

REDOS = ["(a+)+$", "(a|a)*b", "(a|aa)+$", "(.*a){12}", "^(([a-z])+.)+[A-Z]([a-z])+$"]


@pytest.mark.parametrize("pattern", REDOS)
def test_catastrophic_backtracking_patterns_run_in_linear_time(pattern: str) -> None:
    # RE2 has no backtracking: these return at once on inputs that hang Python's re.
    m = Matcher([parse_rule(f"/{pattern}/")])
    hostile = "a" * 100_000 + "!"
    assert isinstance(
        m.match(Article(feed="f", uid="1", title="t", link="", content=hostile)), list
    )


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [(r"(a)\1", "backreferences"), ("(?<=a)b", "lookaround"), ("(?=a)", "lookaround")],
)
def test_patterns_re2_cannot_run_are_refused_with_the_reason(pattern: str, reason: str) -> None:
    with pytest.raises(QueryError) as info:
        parse_query(f"/{pattern}/")
    assert "regular expression refused" in info.value.message
    assert reason in info.value.message


def test_deep_nesting_is_bounded(tmp_path: Path) -> None:
    assert parse_query("(" * 50 + "troops" + ")" * 50)
    with pytest.raises(QueryError, match="nested deeper than 50"):
        parse_query("(" * 200 + "troops" + ")" * 200)
    with pytest.raises(QueryError, match="nested deeper than 50"):
        parse_query("NOT " * 60 + "troops")
    with pytest.raises(QueryError, match="unbalanced"):
        parse_query("(" * 10 + "troops" + ")" * 9)
    (tmp_path / "deep.yaml").write_text("rules: " + "[" * 5000 + "]" * 5000 + "\n")
    [error] = load_rules(tmp_path).errors
    assert "deep.yaml" in str(error) and "nested too deeply" in str(error)


def test_twenty_thousand_rules_in_one_file_load_and_match(tmp_path: Path) -> None:
    lines = ["rules:"]
    for i in range(20_000):
        lines += [f"  - name: r{i}", f"    any: [w{i}, 'w{i} x{i}']", f"    none: [z{i}]"]
    (tmp_path / "big.yaml").write_text("\n".join(lines) + "\n")
    ruleset = load_rules(tmp_path)
    assert ruleset.errors == ()
    assert len(ruleset.rules) == 20_000
    m = Matcher(ruleset.rules)
    art = Article(feed="f", uid="1", title="w17 and w19999 but z17", link="")
    assert [h.rule for h in m.match(art)] == ["r19999"]


def parse_rule(query: str):  # type: ignore[no-untyped-def]
    from monitor.models import Rule

    return Rule(name="r", condition=parse_query(query))
