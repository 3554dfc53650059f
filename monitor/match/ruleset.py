"""Load and validate rule files (rules/*.yaml). Every error is collected, with file:line:col.

A rule file looks like::

    rules:
      - name: troop-movements
        description: Troops massing or moving near a border
        severity: normal            # low | normal | urgent
        any: [troops, soldiers]     # at least one must occur
        all: [[border, frontier]]   # each entry must occur; a nested list is "any of these"
        none: [border collie]       # the rule does not fire if any occurs
        feeds: [reuters]            # optional scope
        channels: [newsroom-mail]   # optional; default channels come from the config
        enabled: true

Inside ``any`` and ``none`` a nested list means "all of these"; inside ``all`` it means
"any of these", so two levels express any AND/OR combination.

A rule may instead (or as well) give a query string, ``match: (troops OR soldiers) NEAR/5
border AND NOT "border collie"``; see :mod:`monitor.match.query` and docs/rules.md. Each list
entry accepts the same term syntax: ``title:troops``, ``sanction*``, ``sanction~``,
``/t-?72/i``; an entry with operators (AND, OR, NOT, NEAR/n, parentheses) is a query.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from itertools import pairwise
from pathlib import Path
from typing import Any

from monitor.config import check_timezone, parse_duration, read_cron, read_template
from monitor.config.yamlfile import YamlList, YamlMap, load_yaml, located, offset_position
from monitor.errors import ConfigError
from monitor.match.query import QueryError, parse_query, parse_term
from monitor.models import (
    SEVERITIES,
    AlertPolicy,
    AllOf,
    AnyOf,
    Condition,
    Not,
    Rule,
    Severity,
)

RULE_KEYS = (
    "name",
    "description",
    "severity",
    "match",
    "any",
    "all",
    "none",
    "min_terms",
    "once_per_story",
    "min_sources",
    "follow_up",
    "realert",
    "realert_key",
    "realert_max",
    "digest",
    "timezone",
    "template",
    "feeds",
    "channels",
    "enabled",
)
REALERT_KEYS = ("rule", "story", "feed", "source", "link")
_OPERATORS = re.compile(r"\b(?:AND|OR|NOT|NEAR/\d+)\b|[()]")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")


@dataclass(frozen=True)
class RuleSet:
    """The rules of a directory, with every problem found while loading them."""

    rules: tuple[Rule, ...]
    errors: tuple[ConfigError, ...]
    #: The files read, so a reload can tell when something changed.
    files: tuple[Path, ...]


def rule_files(directory: Path) -> list[Path]:
    """The rule files of a directory: *.yaml and *.yml, sorted, hidden files skipped."""
    return sorted(
        p
        for p in directory.iterdir()
        if p.suffix in (".yaml", ".yml") and not p.name.startswith(".") and p.is_file()
    )


def load_rules(directory: Path) -> RuleSet:
    """Load every rule file in ``directory``; never raises for bad content."""
    errors: list[ConfigError] = []
    rules: list[Rule] = []
    if not directory.is_dir():
        err = ConfigError(
            "rules directory does not exist; create it or fix `rules_dir` in the config",
            str(directory),
        )
        return RuleSet((), (err,), ())
    files = rule_files(directory)
    for path in files:
        file_rules, file_errors = load_rule_file(path)
        rules.extend(file_rules)
        errors.extend(file_errors)
    seen: dict[str, Rule] = {}
    for rule in rules:
        if rule.name in seen:
            first = seen[rule.name]
            errors.append(
                ConfigError(
                    f"duplicate rule name (also defined at {first.path}:{first.line}); "
                    "rule names must be unique across all files",
                    rule.path,
                    rule.line,
                    rule=rule.name,
                )
            )
        else:
            seen[rule.name] = rule
    if not rules and not errors:
        errors.append(ConfigError("no rules found: add a *.yaml rule file", str(directory)))
    return RuleSet(tuple(seen.values()), tuple(errors), tuple(files))


def load_rule_file(path: Path) -> tuple[list[Rule], list[ConfigError]]:
    """Rules of one file and the errors found in it. An empty file holds no rules."""
    try:
        data = load_yaml(path)
    except ConfigError as exc:
        return [], [exc]
    if data is None:
        return [], []
    name = str(path)
    if not isinstance(data, YamlMap) or "rules" not in data:
        return [], [
            ConfigError(
                "a rule file must be a mapping with a `rules:` list at the top",
                name,
                getattr(data, "line", 1),
            )
        ]
    errors: list[ConfigError] = []
    for key in data:
        if key != "rules":
            line, col = data.pos(key)
            errors.append(
                ConfigError(
                    f"unknown top-level key {key!r}; only `rules:` is allowed", name, line, col
                )
            )
    items = data["rules"]
    if not isinstance(items, YamlList):
        line, col = data.pos("rules")
        return [], [*errors, ConfigError("`rules:` must be a list of rules", name, line, col)]
    rules: list[Rule] = []
    for index, item in enumerate(items):
        line, col = items.pos(index)
        rule = _RuleBuilder(name, line, col).build(item)
        if isinstance(rule, Rule):
            rules.append(rule)
        else:
            errors.extend(rule)
    return rules, errors


class _RuleBuilder:
    """Turns one rule mapping into a Rule, or the list of everything wrong with it."""

    def __init__(self, path: str, line: int, column: int) -> None:
        self.path = path
        self.line = line
        self.column = column
        self.rule: str | None = None
        self.errors: list[ConfigError] = []

    def error(self, message: str, pos: tuple[int, int] | None = None) -> None:
        line, col = pos or (self.line, self.column)
        self.errors.append(ConfigError(message, self.path, line, col, rule=self.rule))

    def build(self, item: Any) -> Rule | list[ConfigError]:
        if not isinstance(item, YamlMap):
            self.error("each rule must be a mapping with at least `name` and `any` or `all`")
            return self.errors
        self._name(item)
        description = self._string(item, "description", "")
        severity = self._string(item, "severity", "normal")
        if severity not in SEVERITIES:
            self.error(
                f"severity must be one of {', '.join(SEVERITIES)}, not {severity!r}",
                item.pos("severity"),
            )
        enabled = item.get("enabled", True)
        if not isinstance(enabled, bool):
            self.error("`enabled` must be true or false", item.pos("enabled"))
        parts = self._condition_parts(item)
        feeds = self._names(item, "feeds")
        channels = self._names(item, "channels")
        min_terms = item.get("min_terms", 0)
        if isinstance(min_terms, bool) or not isinstance(min_terms, int) or min_terms < 0:
            self.error("`min_terms` must be a whole number, 0 or more", item.pos("min_terms"))
            min_terms = 0
        policy = self._policy(item)
        if self.errors:
            return self.errors
        assert self.rule is not None
        condition: Condition = parts[0] if len(parts) == 1 else AllOf(tuple(parts))
        definition = {k: item[k] for k in RULE_KEYS if k in item}
        source = json.dumps(definition, sort_keys=True, ensure_ascii=False)
        version = hashlib.sha256(source.encode()).hexdigest()[:12]
        sev: Severity = severity  # type: ignore[assignment]
        return Rule(
            name=self.rule,
            condition=condition,
            description=description,
            severity=sev,
            feeds=feeds,
            channels=channels,
            enabled=bool(enabled),
            min_terms=min_terms,
            policy=policy,
            path=self.path,
            line=self.line,
            version=version,
            source=source,
        )

    def _name(self, item: YamlMap) -> None:
        """Take the rule's name (errors from here on name the rule), and refuse unknown keys."""
        name = item.get("name")
        if isinstance(name, str) and _NAME.match(name):
            self.rule = name
        elif name is None:
            self.error("rule has no `name`; add `name: some-rule-name`")
        else:
            self.error(
                f"bad rule name {name!r}: use letters, digits, '-', '_' or '.', "
                "at most 80 characters",
                item.pos("name"),
            )
        for key in item:
            if key not in RULE_KEYS:
                self.error(
                    f"unknown key {key!r}; allowed keys: {', '.join(RULE_KEYS)}", item.pos(key)
                )

    def _condition_parts(self, item: YamlMap) -> list[Condition]:
        """The conditions of ``match``, ``any``, ``all`` and ``none``, all of which must hold."""
        parts: list[Condition] = []
        if "match" in item:
            query = item["match"]
            if not isinstance(query, str) or not query.strip():
                self.error(
                    "`match` must be a query string, e.g. troops NEAR/5 border", item.pos("match")
                )
            elif (cond := self._query(query, item.where("match"))) is not None:
                parts.append(cond)
        if "any" in item:
            group = self._group(item, "any", nested=AllOf)
            if group:
                parts.append(AnyOf(tuple(group)))
        if "all" in item:
            group = self._group(item, "all", nested=AnyOf)
            if group:
                parts.extend(group)
        if not {"match", "any", "all"} & item.keys():
            self.error("rule needs terms: add `match:` (a query) or an `any:` or `all:` list")
        if "none" in item:
            group = self._group(item, "none", nested=AllOf)
            if group:
                parts.append(Not(AnyOf(tuple(group))))
        return parts

    def _policy(self, item: YamlMap) -> AlertPolicy:
        once = item.get("once_per_story", True)
        if not isinstance(once, bool):
            self.error("`once_per_story` must be true or false", item.pos("once_per_story"))
            once = True
        least = item.get("min_sources", 1)
        if isinstance(least, bool) or not isinstance(least, int) or least < 1:
            self.error(
                "`min_sources` must be a whole number, 1 or more (distinct outlets that must "
                "carry a story before it is alerted)",
                item.pos("min_sources"),
            )
            least = 1
        follow = item.get("follow_up", [])
        if isinstance(follow, int) and not isinstance(follow, bool):
            follow = [follow]
        if (
            not isinstance(follow, list)
            or not all(isinstance(n, int) and not isinstance(n, bool) for n in follow)
            or any(b <= a for a, b in pairwise(follow))
            or any(n <= least for n in follow)
        ):
            self.error(
                "`follow_up` must be a list of source counts, ascending and each above "
                f"`min_sources` ({least}), e.g. [3, 5, 10]",
                item.pos("follow_up"),
            )
            follow = []
        window = self._duration(item, "realert")
        longest = self._duration(item, "realert_max")
        if longest and longest < window:
            self.error(
                "`realert_max` must be at least `realert` (the window grows up to it)",
                item.pos("realert_max"),
            )
        key = self._string(item, "realert_key", "rule")
        if key not in REALERT_KEYS:
            self.error(
                f"`realert_key` must be one of {', '.join(REALERT_KEYS)}, not {key!r}",
                item.pos("realert_key"),
            )
            key = "rule"
        timezone = check_timezone(
            self._string(item, "timezone", "UTC"), item.pos("timezone"), self.error
        )
        return AlertPolicy(
            once_per_story=once,
            min_sources=least,
            follow_up=tuple(follow),
            realert=window,
            realert_key=key,
            realert_max=longest,
            digest=read_cron(item, "digest", timezone, self.error),
            digest_timezone=timezone,
            template=read_template(item, "template", self.error),
        )

    def _duration(self, item: YamlMap, key: str) -> float:
        if key not in item:
            return 0.0
        seconds = parse_duration(item[key])
        if seconds is None or seconds < 0:
            self.error(f"`{key}` must be a duration such as 30m, 6h or 2d", item.pos(key))
            return 0.0
        return seconds

    def _string(self, item: YamlMap, key: str, default: str) -> str:
        value = item.get(key, default)
        if not isinstance(value, str):
            self.error(f"`{key}` must be a string", item.pos(key))
            return default
        return value

    def _names(self, item: YamlMap, key: str) -> tuple[str, ...]:
        value = item.get(key, [])
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.error(f"`{key}` must be a list of names", item.pos(key))
            return ()
        return tuple(value)

    def _group(self, item: YamlMap, key: str, nested: type[AnyOf] | type[AllOf]) -> list[Condition]:
        value = item[key]
        if not isinstance(value, YamlList):
            value = YamlList.at(item.pos(key), [value] if value is not None else [])
        if not value:
            self.error(f"`{key}` is empty; list at least one term", item.pos(key))
            return []
        out: list[Condition] = []
        for index, entry in enumerate(value):
            if isinstance(entry, YamlList):
                inner = [t for i, e in enumerate(entry) if (t := self._term(e, entry.where(i)))]
                if not entry:
                    self.error(f"empty nested list in `{key}`", value.pos(index))
                elif inner:
                    out.append(inner[0] if len(inner) == 1 else nested(tuple(inner)))
            elif (term := self._term(entry, value.where(index))) is not None:
                out.append(term)
        return out

    def _term(self, entry: Any, where: tuple[int, int, str | None]) -> Condition | None:
        if isinstance(entry, bool) or entry is None or isinstance(entry, YamlMap | list):
            self.error(
                f"a term must be a word or phrase, not {type(entry).__name__}: {entry!r}"
                + ('; quote it ("true") if you mean the word' if isinstance(entry, bool) else ""),
                where[:2],
            )
            return None
        text = str(entry)
        if _OPERATORS.search(text):
            return self._query(text, where)
        try:
            return parse_term(text)
        except QueryError as exc:
            self.error(exc.message, offset_position(where, text, exc.offset))
            return None

    def _query(self, text: str, where: tuple[int, int, str | None]) -> Condition | None:
        try:
            return parse_query(text)
        except QueryError as exc:
            self.error(exc.message, offset_position(where, text, exc.offset))
            return None


def rule_from_source(source: str, label: str) -> Rule | list[ConfigError]:
    """Rebuild a rule from :attr:`Rule.source` (as stored with its version)."""
    try:
        definition = json.loads(source)
    except ValueError as exc:
        return [ConfigError(f"stored rule definition is not JSON: {exc}", label)]
    return _RuleBuilder(label, 1, 1).build(located(definition))


def resolve_references(
    rules: Iterable[Rule],
    feeds: Mapping[str, tuple[str, ...]],
    channels: Mapping[str, tuple[str, ...]],
) -> tuple[list[Rule], list[ConfigError]]:
    """Expand the feed and channel names *or tags* that rules give into names.

    ``feeds`` and ``channels`` map each configured name to its tags. A name wins over a
    tag of the same spelling. Unknown entries are errors naming the rule.
    """
    errors: list[ConfigError] = []

    def expand(
        rule: Rule, entries: tuple[str, ...], known: Mapping[str, tuple[str, ...]], kind: str
    ) -> tuple[str, ...]:
        out: list[str] = []
        for entry in entries:
            if entry in known:
                out.append(entry)
                continue
            tagged = [name for name, tags in known.items() if entry in tags]
            if tagged:
                out.extend(tagged)
                continue
            listed = ", ".join(sorted(known)) or "(none)"
            errors.append(
                ConfigError(
                    f"unknown {kind} or {kind} tag {entry!r}; defined {kind}s: {listed}",
                    rule.path,
                    rule.line,
                    rule=rule.name,
                )
            )
        return tuple(dict.fromkeys(out))

    resolved = [
        replace(
            rule,
            feeds=expand(rule, rule.feeds, feeds, "feed"),
            channels=expand(rule, rule.channels, channels, "channel"),
        )
        for rule in rules
    ]
    return resolved, errors
