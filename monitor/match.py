"""Compile rules into one automaton and match articles against it. Pure: no I/O.

All terms of all rules go into a single Aho-Corasick automaton over *word keys*
(see :mod:`monitor.text`), so one pass over an article finds every term of every rule,
whatever the number of rules. Only the rules whose terms occurred are then evaluated.

Word boundaries come from the representation: the article becomes ``" k1 k2 k3 "``
(keys separated by single spaces) and a term becomes ``" k1 k2 "``, so a term can only
match whole, consecutive words.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import ahocorasick

from monitor.models import AllOf, AnyOf, Article, Condition, Hit, Not, Rule, Term
from monitor.text import Tokens, snippet, tokenize

SNIPPET_WIDTH = 200


@dataclass(frozen=True)
class _Field:
    text: str
    tokens: Tokens
    #: Offset of the field's first key inside the joined article string.
    base: int
    #: Offset of each key inside the joined article string, for bisecting.
    starts: tuple[int, ...]


def _join(fields: Iterable[str]) -> tuple[str, list[_Field]]:
    """Join the fields' keys as " k1 k2 \\n k3 k4 " so no phrase crosses fields."""
    parts: list[str] = []
    out: list[_Field] = []
    pos = 0
    for text in fields:
        tokens = tokenize(text)
        starts: list[int] = []
        at = pos + 1  # after the leading space
        for key in tokens.keys:
            starts.append(at)
            at += len(key) + 1
        chunk = " " + " ".join(tokens.keys) + " \n"
        out.append(_Field(text, tokens, pos, tuple(starts)))
        parts.append(chunk)
        pos += len(chunk)
    return "".join(parts), out


def _needs_term(cond: Condition) -> bool:
    """Whether ``cond`` can only be true when at least one of its terms occurs."""
    if isinstance(cond, Term):
        return True
    if isinstance(cond, AnyOf):
        return all(_needs_term(c) for c in cond.children)
    if isinstance(cond, AllOf):
        return any(_needs_term(c) for c in cond.children)
    return False


def _positive_terms(cond: Condition) -> list[Term]:
    """Terms that count as reasons for a hit: every term not under a NOT, in rule order."""
    if isinstance(cond, Term):
        return [cond]
    if isinstance(cond, Not):
        return []
    return [t for c in cond.children for t in _positive_terms(c)]


def _all_terms(cond: Condition) -> list[Term]:
    if isinstance(cond, Term):
        return [cond]
    if isinstance(cond, Not):
        return _all_terms(cond.child)
    return [t for c in cond.children for t in _all_terms(c)]


def evaluate(cond: Condition, present: set[tuple[str, ...]]) -> bool:
    """Evaluate a condition given the set of term keys that occur in the article."""
    if isinstance(cond, Term):
        return cond.keys in present
    if isinstance(cond, AnyOf):
        return any(evaluate(c, present) for c in cond.children)
    if isinstance(cond, AllOf):
        return all(evaluate(c, present) for c in cond.children)
    return not evaluate(cond.child, present)


class Matcher:
    """A compiled ruleset. Build once per ruleset; :meth:`match` is thread-safe."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = tuple(r for r in rules if r.enabled)
        self._automaton = ahocorasick.Automaton()
        self._rules_by_term: dict[tuple[str, ...], list[int]] = {}
        self._always: list[int] = []
        for index, rule in enumerate(self.rules):
            if not _needs_term(rule.condition):
                self._always.append(index)
            for term in _all_terms(rule.condition):
                if not term.keys:
                    continue
                users = self._rules_by_term.setdefault(term.keys, [])
                if not users or users[-1] != index:
                    users.append(index)
        for keys in self._rules_by_term:
            pattern = " " + " ".join(keys) + " "
            self._automaton.add_word(pattern, (len(pattern), keys))
        if self._rules_by_term:
            self._automaton.make_automaton()

    def __len__(self) -> int:
        return len(self.rules)

    def match(self, article: Article) -> list[Hit]:
        """Every enabled rule that matches ``article``, in rule order."""
        joined, fields = _join([article.title, article.summary, article.content])
        # First offset of each term overall, and first offset in the summary/body.
        first_at: dict[tuple[str, ...], int] = {}
        first_in_body: dict[tuple[str, ...], int] = {}
        body_from = fields[1].base
        if self._rules_by_term:
            for end, (length, keys) in self._automaton.iter(joined):
                offset = end - length + 2  # offset of the term's first key
                first_at.setdefault(keys, offset)
                if offset >= body_from:
                    first_in_body.setdefault(keys, offset)
        candidates = set(self._always)
        for keys in first_at:
            candidates.update(self._rules_by_term[keys])
        present = set(first_at)
        hits: list[Hit] = []
        for index in sorted(candidates):
            rule = self.rules[index]
            if rule.feeds and article.feed not in rule.feeds:
                continue
            if not evaluate(rule.condition, present):
                continue
            reasons = [t for t in _positive_terms(rule.condition) if t.keys in present]
            terms = tuple(dict.fromkeys(t.text for t in reasons))
            hits.append(
                Hit(
                    rule=rule.name,
                    rule_version=rule.version,
                    severity=rule.severity,
                    terms=terms,
                    snippet=_snippet(fields, reasons, first_in_body, first_at),
                    channels=rule.channels,
                )
            )
        return hits


def _snippet(
    fields: list[_Field],
    reasons: list[Term],
    first_in_body: dict[tuple[str, ...], int],
    first_at: dict[tuple[str, ...], int],
) -> str:
    """Text around the earliest matched term, preferring the body: the title is shown anyway."""
    offsets = [first_in_body[t.keys] for t in reasons if t.keys in first_in_body]
    if not offsets:
        offsets = [first_at[t.keys] for t in reasons]
    if not offsets:  # a rule made only of NOT: show the start of the body
        body = next((f for f in fields[1:] if f.text), fields[0])
        return snippet(body.text, 0, 0, SNIPPET_WIDTH)
    at = min(offsets)
    field = next(f for f in reversed(fields) if f.base <= at)
    index = bisect.bisect_left(field.starts, at)
    start, end = field.tokens.spans[index]
    return snippet(field.text, start, end, SNIPPET_WIDTH)
