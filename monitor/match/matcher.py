"""Compile rules into one automaton and match articles against it. Pure: no I/O.

Compilation:

* every term of every rule becomes a *matchable* (its word keys and mode); every word
  sequence that has those keys (:func:`monitor.text.surface_forms`: "troop" -> "troop",
  "troops") goes into a single Aho-Corasick automaton as ``" w1 w2 "``. Spaces on both
  sides make every match a whole-word match; a prefix term leaves the last space off;
* every rule gets a *trigger set*: matchables of which at least one must occur for the
  rule to have any chance (for ``a AND (b OR c)``, the smaller of {a} and {b, c}). Rules
  are indexed by their trigger set only.

Matching an article: each field is normalised (C-level string operations), scanned once
by the automaton, and only the rules triggered by what occurred are evaluated. Regular
expressions and NEAR are evaluated lazily, only for those candidate rules. Rules that can
fire with no term at all (a bare NOT, a regular expression alone) are evaluated for every
article; they are the only per-rule cost that grows with the number of rules.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import ahocorasick

from monitor.match.query import compile_regex
from monitor.models import (
    AlertPolicy,
    AnyOf,
    Article,
    Condition,
    Hit,
    Near,
    Not,
    Regex,
    Rule,
    Term,
    TermMode,
)
from monitor.text import normalize, phrase_at, snippet, surface_forms, tokenize

SNIPPET_WIDTH = 200
#: The fields a term without a field of its own searches.
DEFAULT_FIELDS = ("title", "content")
_Matchable = tuple[TermMode, tuple[str, ...]]  # (mode, keys)


def field_texts(article: Article) -> dict[str, str]:
    """The raw text of each searchable field of an article."""
    return {
        "title": article.title,
        "content": "\n".join(p for p in (article.summary, article.content) if p),
        "author": article.author,
        "category": "\n".join(article.categories),
        "feed": article.feed,
        "link": article.link,
    }


def positive_terms(cond: Condition) -> list[Term | Regex | Near]:
    """The terms that count as reasons for a hit: those not under a NOT, in rule order."""
    if isinstance(cond, Term | Regex | Near):
        return [cond]
    if isinstance(cond, Not):
        return []
    return [t for c in cond.children for t in positive_terms(c)]


def all_terms(cond: Condition) -> list[Term]:
    """Every word/phrase term of a condition, NEAR operands included."""
    if isinstance(cond, Term):
        return [cond]
    if isinstance(cond, Near):
        return [cond.left, cond.right]
    if isinstance(cond, Regex):
        return []
    if isinstance(cond, Not):
        return all_terms(cond.child)
    return [t for c in cond.children for t in all_terms(c)]


def _regexes(cond: Condition) -> list[Regex]:
    if isinstance(cond, Regex):
        return [cond]
    if isinstance(cond, Term | Near):
        return []
    if isinstance(cond, Not):
        return _regexes(cond.child)
    return [r for c in cond.children for r in _regexes(c)]


@dataclass
class _Scan:
    """What one article looks like to the rules: lazily computed, cached per article."""

    article: Article
    texts: dict[str, str]
    normal: dict[str, str]
    #: Matchable ids that occur, per field.
    present: dict[str, set[int]]
    matchables: list[_Matchable]
    regexes: dict[Regex, Any]
    #: Matchable ids present in the default fields (title or content).
    default: set[int] = field(default_factory=set)
    #: Tokenised fields (words with their spans), for snippets; filled on demand.
    tokens: dict[str, Any] = field(default_factory=dict)
    #: The automaton patterns of each matchable (Matcher._patterns).
    patterns: list[list[str]] = field(default_factory=list)
    _positions: dict[tuple[str, int], list[int]] = field(default_factory=dict)
    #: Where each (field, matchable) first occurs in the raw text; filled on demand.
    spans: dict[tuple[str, int], tuple[int, int] | None] = field(default_factory=dict)
    _regex_cache: dict[tuple[Regex, str | None], bool] = field(default_factory=dict)

    def fields_of(self, name: str | None) -> tuple[str, ...]:
        return DEFAULT_FIELDS if name is None else (name,)

    def has(self, mid: int, name: str | None) -> bool:
        return any(mid in self.present[f] for f in self.fields_of(name))

    def regex(self, r: Regex) -> bool:
        key = (r, r.field)
        if key not in self._regex_cache:
            compiled = self.regexes[r]
            self._regex_cache[key] = any(
                compiled.search(self.texts[f]) is not None for f in self.fields_of(r.field)
            )
        return self._regex_cache[key]

    def positions(self, mid: int, name: str) -> list[int]:
        """Word indices where matchable ``mid`` starts in field ``name`` (cached)."""
        key = (name, mid)
        found = self._positions.get(key)
        if found is None:
            normal = self.normal[name]
            starts: set[int] = set()
            for pattern in self.patterns[mid]:
                at = normal.find(pattern)
                while at != -1:
                    starts.add(at)
                    at = normal.find(pattern, at + 1)
            # The pattern starts at the space before its first word.
            found = sorted(normal.count(" ", 0, at + 1) - 1 for at in starts)
            self._positions[key] = found
        return found


_TOKENS = itertools.count(1)


class Matcher:
    """A compiled ruleset. Build once per ruleset; :meth:`match` only fills caches."""

    def __init__(
        self, rules: Sequence[Rule], frequencies: Mapping[str, float] | None = None
    ) -> None:
        """``frequencies``: the share of recent articles each word occurs in (see
        :func:`monitor.text.word_frequencies`), to index each rule by its rarest terms.
        Without it, longer terms are taken to be rarer."""
        self.rules = tuple(r for r in rules if r.enabled)
        #: Tells matchers apart within this process (parse workers keep the last one
        #: they were sent; see monitor.parse.ParsePool.parse_matched).
        self.token = next(_TOKENS)
        self._frequencies = frequencies
        self._ids: dict[_Matchable, int] = {}
        self._matchables: list[_Matchable] = []
        self._regexes: dict[Regex, Any] = {}
        self._fields: set[str] = set(DEFAULT_FIELDS)
        self._always: list[int] = []
        triggers: dict[int, list[int]] = {}
        for index, rule in enumerate(self.rules):
            for term in all_terms(rule.condition):
                self._id(term)
                if term.field:
                    self._fields.add(term.field)
            for r in _regexes(rule.condition):
                self._regexes.setdefault(r, compile_regex(r.pattern, r.ignore_case))
                if r.field:
                    self._fields.add(r.field)
            trigger = self._trigger(rule.condition)
            if trigger is None:
                self._always.append(index)
            else:
                for mid in trigger:
                    triggers.setdefault(mid, []).append(index)
        self._triggers = {mid: tuple(rules) for mid, rules in triggers.items()}
        self._predicates, self._reasons = self._compile_predicates()
        # One automaton over every surface form; a form can serve several matchables
        # (the same word as a plain term and as an inflected term, say).
        by_form: dict[str, list[int]] = {}
        #: The automaton patterns of each matchable, to locate it again for snippets.
        self._patterns: list[list[str]] = []
        self._locators: dict[int, re.Pattern[str]] = {}
        for mid, (mode, keys) in enumerate(self._matchables):
            patterns = [
                f" {form}" if mode == "prefix" else f" {form} "
                for form in surface_forms(keys, mode)
            ]
            self._patterns.append(patterns)
            for pattern in patterns:
                by_form.setdefault(pattern, []).append(mid)
        self._automaton = ahocorasick.Automaton()
        for pattern, mids in by_form.items():
            self._automaton.add_word(pattern, tuple(mids))
        if by_form:
            self._automaton.make_automaton()
        self.pattern_count = len(by_form)
        if frequencies is not None:
            # Only the rules' own words matter (_rarity); a copy sent to a parse worker
            # carries these, not every word of the sample.
            self._frequencies = {
                k: frequencies.get(k, 0.0) for _, keys in self._matchables for k in keys
            }

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as its rules (and their words' frequencies): compiled again where it is
        unpickled, into a matcher that matches exactly the same."""
        return (Matcher, (self.rules, self._frequencies))

    def __len__(self) -> int:
        return len(self.rules)

    # --- rule conditions as Python functions ------------------------------------------------
    #
    # Each rule's condition becomes one generated function of the sets of matchable ids
    # present in the article: ``def r7(D, F, R, N, S): return (4 in D) and not (9 in D)``.
    # D: ids in title or content; F: ids per field; R(k) / N(k): lazily evaluated regular
    # expressions and NEAR clauses; S: the article's feed, for rules scoped to feeds.
    # Short-circuiting bytecode is the cheapest evaluation Python offers; the source is
    # built from ids, field names and validated feed names only (never from rule text).

    def _predicate_source(self, cond: Condition) -> str:
        if isinstance(cond, Term):
            mid = self._ids[(cond.mode, cond.keys)]
            return f"({mid} in D)" if cond.field is None else f"({mid} in F[{cond.field!r}])"
        if isinstance(cond, Regex):
            return f"R({self._regex_slot(cond)})"
        if isinstance(cond, Near):
            # Both terms present (cheap set lookups) before the positional check.
            left, right = self._predicate_source(cond.left), self._predicate_source(cond.right)
            return f"({left} and {right} and N({self._near_slot(cond)}))"
        if isinstance(cond, Not):
            return f"(not {self._predicate_source(cond.child)})"
        joiner = " or " if isinstance(cond, AnyOf) else " and "
        return "(" + joiner.join(self._predicate_source(c) for c in cond.children) + ")"

    def _regex_slot(self, cond: Regex) -> int:
        if cond not in self._regex_slots:
            self._regex_slots[cond] = len(self._regex_list)
            self._regex_list.append(cond)
        return self._regex_slots[cond]

    def _near_slot(self, cond: Near) -> int:
        if cond not in self._near_slots:
            self._near_slots[cond] = len(self._near_list)
            self._near_list.append(cond)
        return self._near_slots[cond]

    def _compile_predicates(self) -> tuple[list[Any], list[list[tuple[Any, Any]]]]:
        """One function per rule condition, and per rule its reasons (positive terms) as
        (term, function) pairs, all compiled in one go."""
        self._regex_slots: dict[Regex, int] = {}
        self._regex_list: list[Regex] = []
        self._near_slots: dict[Near, int] = {}
        self._near_list: list[Near] = []
        lines = []
        for i, rule in enumerate(self.rules):
            source = self._predicate_source(rule.condition)
            if rule.feeds:  # feed scope first: the cheapest test
                source = f"S in {tuple(rule.feeds)!r} and {source}"
            lines.append(f"def r{i}(D, F, R, N, S):\n    return {source}\n")
        reason_ids: dict[str, int] = {}
        reasons: list[list[tuple[Any, int]]] = []
        for rule in self.rules:
            pairs = []
            for term in positive_terms(rule.condition):
                source = self._predicate_source(term)
                if source not in reason_ids:
                    reason_ids[source] = len(reason_ids)
                    lines.append(f"def q{reason_ids[source]}(D, F, R, N):\n    return {source}\n")
                pairs.append((term, reason_ids[source]))
            reasons.append(pairs)
        # Compiled in batches: one module of 10,000 functions makes the compiler hold
        # hundreds of MiB at once; batches of 512 keep the peak small.
        namespace: dict[str, Any] = {}
        for start in range(0, len(lines), 512):
            exec(compile("".join(lines[start : start + 512]), "<rules>", "exec"), namespace)
        rule_functions = [namespace[f"r{i}"] for i in range(len(self.rules))]
        reason_functions = [namespace[f"q{i}"] for i in range(len(reason_ids))]
        return rule_functions, [
            [(term, reason_functions[k]) for term, k in pairs] for pairs in reasons
        ]

    def _lazy(self, scan: _Scan) -> dict[str, Any]:
        regexes, nears = self._regex_list, self._near_list
        return {
            "R": lambda k: scan.regex(regexes[k]),
            "N": lambda k: self._near(nears[k], scan),
        }

    def _id(self, term: Term) -> int:
        key = (term.mode, term.keys)
        mid = self._ids.get(key)
        if mid is None:
            mid = self._ids[key] = len(self._matchables)
            self._matchables.append(key)
        return mid

    def _rarity(self, mid: int) -> float:
        """Estimated share of articles a matchable occurs in (lower: rarer)."""
        keys = self._matchables[mid][1]
        if self._frequencies is not None:
            # A phrase is at most as common as its rarest word; unseen words are rare.
            return min(self._frequencies.get(k, 0.0) for k in keys)
        return 1.0 / (1 + len(" ".join(keys)))

    def _trigger(self, cond: Condition) -> frozenset[int] | None:
        """Matchables of which one must occur for ``cond`` to hold; None if none must.

        For AND, any child's trigger set will do: take the one least likely to occur, so
        a rule like ``(javelin OR stinger) AND russia`` is looked at only when a weapon
        is named, not for every article that mentions Russia.
        """
        if isinstance(cond, Term):
            return frozenset((self._id(cond),))
        if isinstance(cond, Near):
            # Both sides must occur: index the rarer one.
            left, right = self._id(cond.left), self._id(cond.right)
            return frozenset((min((left, right), key=self._rarity),))
        if isinstance(cond, Regex | Not):
            return None
        child_triggers = [self._trigger(c) for c in cond.children]
        if isinstance(cond, AnyOf):
            if any(t is None for t in child_triggers):
                return None
            return frozenset().union(*child_triggers)  # type: ignore[arg-type]
        known = [t for t in child_triggers if t is not None]
        if not known:
            return None
        return min(known, key=lambda t: (sum(self._rarity(m) for m in t), len(t)))

    @property
    def policies(self) -> dict[str, AlertPolicy]:
        """Rule name -> its story policy (what the store needs to decide alerts)."""
        return {rule.name: rule.policy for rule in self.rules}

    def scan(self, article: Article) -> _Scan:
        """Normalise and scan every field the ruleset looks at."""
        texts = field_texts(article)
        normal: dict[str, str] = {}
        if article.normalized is not None:  # from the parser: the same, already done
            normal["title"], normal["content"] = article.normalized
        present: dict[str, set[int]] = {}
        iterate = self._automaton.iter if self.pattern_count else None
        for name in texts:
            if name not in self._fields:
                present[name] = set()
                continue
            norm = normal.get(name)
            if norm is None:
                normal[name] = norm = normalize(texts[name])
            found: set[int] = set()
            if iterate is not None:
                for groups in {mids for _, mids in iterate(norm)}:
                    found.update(groups)
            present[name] = found
        default = present["title"] | present["content"]
        return _Scan(
            article,
            texts,
            normal,
            present,
            self._matchables,
            self._regexes,
            default,
            patterns=self._patterns,
        )

    def match(self, article: Article) -> list[Hit]:
        """Every enabled rule that matches ``article``, in rule order."""
        scan = self.scan(article)
        candidates = set(self._always)
        for found in scan.present.values():
            for mid in found:
                rules = self._triggers.get(mid)
                if rules:
                    candidates.update(rules)
        default, present = scan.default, scan.present
        lazy = self._lazy(scan)
        regex, near = lazy["R"], lazy["N"]
        predicate = self._predicates
        feed = article.feed
        fired = sorted(i for i in candidates if predicate[i](default, present, regex, near, feed))
        hits = []
        for index in fired:
            rule = self.rules[index]
            reasons = [
                t for t, holds in self._reasons[index] if holds(default, present, regex, near)
            ]
            terms = tuple(dict.fromkeys(t.text for t in reasons))
            if rule.min_terms and len(terms) < rule.min_terms:
                continue
            hits.append(
                Hit(
                    rule=rule.name,
                    rule_version=rule.version,
                    severity=rule.severity,
                    terms=terms,
                    snippet=self._snippet(reasons, scan),
                    channels=rule.channels,
                )
            )
        return hits

    def _near(self, cond: Near, scan: _Scan) -> bool:
        left = self._ids[(cond.left.mode, cond.left.keys)]
        right = self._ids[(cond.right.mode, cond.right.keys)]
        right_fields = scan.fields_of(cond.right.field)
        a_len, b_len = len(cond.left.keys), len(cond.right.keys)
        for name in scan.fields_of(cond.left.field):
            if name not in right_fields:
                continue
            if left not in scan.present[name] or right not in scan.present[name]:
                continue
            b_positions = scan.positions(right, name)
            for a in scan.positions(left, name):
                for b in b_positions:
                    # Words from the end of the earlier term to the start of the later one.
                    gap = b - (a + a_len - 1) if b >= a else a - (b + b_len - 1)
                    if gap <= cond.distance:
                        return True
        return False

    def _locator(self, mid: int) -> re.Pattern[str]:
        """A regex finding a matchable's word forms in raw text (ASCII spellings)."""
        found = self._locators.get(mid)
        if found is None:
            mode = self._matchables[mid][0]
            alternatives = [
                r"(?:['’]s)?[\W_]+".join(map(re.escape, p.split())) for p in self._patterns[mid]
            ]
            tail = "" if mode == "prefix" else r"(?![^\W_])"
            found = re.compile(
                r"(?<![^\W_])(?:" + "|".join(alternatives) + ")" + tail, re.IGNORECASE
            )
            self._locators[mid] = found
        return found

    def _locate(self, mid: int, text: str, scan: _Scan, name: str) -> tuple[int, int] | None:
        """Character span of the first occurrence of matchable ``mid`` in a field's text."""
        m = self._locator(mid).search(text)
        if m is not None:
            return m.start(), m.end()
        # Spelled with accents or other folded characters: find it word by word.
        if name not in scan.tokens:
            scan.tokens[name] = tokenize(text)
        tokens = scan.tokens[name]
        mode, keys = self._matchables[mid]
        seq = list(tokens.words)
        starts = scan.positions(mid, name)
        if starts and phrase_at(seq, starts[0], keys, mode):
            index = starts[0]
            return tokens.spans[index][0], tokens.spans[index + len(keys) - 1][1]
        # The tokeniser and the normaliser disagree on this text (rare Unicode): scan.
        for i in range(len(seq)):
            if phrase_at(seq, i, keys, mode):
                return tokens.spans[i][0], tokens.spans[i + len(keys) - 1][1]
        return None

    def _snippet(self, reasons: list[Term | Regex | Near], scan: _Scan) -> str:
        """Text around the first reason in rule order (rules list their topic words first,
        context words after), preferring the body: the title is shown anyway."""
        texts = scan.texts
        spans = scan.spans
        for name in ("content", "title", "author", "category", "link", "feed"):
            text = texts[name]
            if not text:
                continue
            for reason in reasons:
                span: tuple[int, int] | None = None
                if isinstance(reason, Regex):
                    if name in scan.fields_of(reason.field):
                        m = scan.regexes[reason].search(text)
                        span = (m.start(), m.end()) if m else None
                else:
                    term = reason.left if isinstance(reason, Near) else reason
                    mid = self._ids[(term.mode, term.keys)]
                    if name in scan.fields_of(term.field) and mid in scan.present[name]:
                        key = (name, mid)
                        if key not in spans:
                            spans[key] = self._locate(mid, text, scan, name)
                        span = spans[key]
                if span:
                    return snippet(text, span[0], span[1], SNIPPET_WIDTH)
        body = texts["content"] or texts["title"]
        return snippet(body, 0, 0, SNIPPET_WIDTH)
