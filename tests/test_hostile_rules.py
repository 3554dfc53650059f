"""Rules written to hurt: catastrophic regexes, huge files, deep nesting."""

import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from monitor.match import Matcher, QueryError, load_rules, parse_query
from monitor.models import Article

REDOS = ["(a+)+$", "(a|a)*b", "(a|aa)+$", "(.*a){12}", "^(([a-z])+.)+[A-Z]([a-z])+$"]


def least_cpu_seconds(calls: dict[str, Callable[[], object]], rounds: int = 3) -> dict[str, float]:
    """The least CPU time of this thread each call took over ``rounds`` rounds, the calls
    taking turns: CPU time, not wall time, so other processes on the machine do not count,
    and taking turns so that a slow spell of the machine is shared."""
    least = dict.fromkeys(calls, float("inf"))
    for _ in range(rounds):
        for name, call in calls.items():
            started = time.thread_time()
            call()
            least[name] = min(least[name], time.thread_time() - started)
    return least


# The deadline: backtracking on these inputs would run for years (Python's re does, and is
# interrupted at the deadline); RE2 needs milliseconds.
@pytest.mark.timeout(60)
@pytest.mark.parametrize("pattern", REDOS)
def test_catastrophic_backtracking_patterns_run_in_linear_time(pattern: str) -> None:
    m = Matcher([parse_rule(f"/{pattern}/")])

    def matching(n: int) -> Callable[[], object]:
        article = Article(feed="f", uid="1", title="t", link="", content="a" * n + "!")
        return lambda: m.match(article)

    # The same answer as a backtracking engine, on an input short enough for one.
    short = "a" * 12 + "!"
    expected = any(re.search(pattern, text) for text in ("t", short))
    assert bool(matching(12)()) == expected
    # Linear time: 16 times the input takes about 16 times the CPU time (quadratic would
    # be 256 times). The factor 4 on top is room for noise, not for a steeper curve. This
    # tells linear from quadratic or worse, not from n log n.
    cpu = least_cpu_seconds({"small": matching(10_000), "large": matching(160_000)})
    assert cpu["large"] < 16 * 4 * cpu["small"], cpu


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
