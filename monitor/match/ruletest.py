"""Try rules on stored articles without alerting: `news-monitor test-rule`. Pure.

Runs a candidate version of each rule and the version the daemon runs now over the same
articles, and reports what would fire, what the edit loses and what it gains.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from monitor.match.matcher import Matcher, positive_terms
from monitor.models import Article, Hit, Near, Rule, Term
from monitor.text import phrase_at, tokenize


@dataclass(frozen=True)
class Example:
    """One article a rule version fired on."""

    article_id: int
    article: Article
    hit: Hit
    #: (start, end) of each matched term inside ``hit.snippet``, for highlighting.
    marks: tuple[tuple[int, int], ...] = ()


@dataclass
class RuleReport:
    rule: Rule
    #: The version the daemon runs, or None for a rule it does not have yet.
    active: Rule | None
    articles: int = 0
    fired: list[Example] = field(default_factory=list)
    active_fired: int = 0
    lost: list[Example] = field(default_factory=list)
    gained: list[Example] = field(default_factory=list)

    @property
    def unchanged(self) -> bool:
        return self.active is not None and self.active.version == self.rule.version


def marks(text: str, rule: Rule) -> tuple[tuple[int, int], ...]:
    """Where the rule's positive word/phrase terms occur in ``text``."""
    tokens = tokenize(text)
    seq = list(tokens.words)
    terms: list[Term] = []
    for reason in positive_terms(rule.condition):
        if isinstance(reason, Term):
            terms.append(reason)
        elif isinstance(reason, Near):
            terms.extend((reason.left, reason.right))
    spans: list[tuple[int, int]] = []
    for i in range(len(seq)):
        for term in terms:
            if phrase_at(seq, i, term.keys, term.mode):
                spans.append((tokens.spans[i][0], tokens.spans[i + len(term.keys) - 1][1]))
                break
    return tuple(spans)


def compare(
    candidates: Sequence[Rule],
    active: Mapping[str, Rule],
    articles: Iterable[tuple[int, Article]],
) -> list[RuleReport]:
    """Run ``candidates`` and their active versions over ``articles``."""
    # A disabled rule is still tried: that is how a new rule is tested before it goes live.
    enabled = [replace(r, enabled=True) for r in candidates]
    reports = {r.name: RuleReport(r, active.get(r.name)) for r in enabled}
    new = Matcher(enabled)
    old = Matcher([r for r in active.values() if r.name in reports])
    count = 0
    for article_id, article in articles:
        count += 1
        now_hits = {h.rule: h for h in new.match(article)}
        was_hits = {h.rule: h for h in old.match(article)}
        for name, report in reports.items():
            hit, was = now_hits.get(name), was_hits.get(name)
            if hit:
                report.fired.append(
                    Example(article_id, article, hit, marks(hit.snippet, report.rule))
                )
            if was:
                report.active_fired += 1
            if hit and not was and report.active is not None:
                report.gained.append(report.fired[-1])
            if was and not hit:
                assert report.active is not None
                report.lost.append(
                    Example(article_id, article, was, marks(was.snippet, report.active))
                )
    for report in reports.values():
        report.articles = count
    return list(reports.values())
