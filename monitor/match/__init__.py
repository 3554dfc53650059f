"""Rules, from the files on disk to the hits on an article.

* :mod:`~monitor.match.query`: the query language, a string -> a condition tree;
* :mod:`~monitor.match.ruleset`: rule files -> :class:`~monitor.models.Rule` trees,
  every error at once with its file, line and column;
* :mod:`~monitor.match.matcher`: rules -> one automaton and compiled predicates;
  an article -> its hits with their reasons (pure);
* :mod:`~monitor.match.ruletest`: `news-monitor test-rule`, a candidate and the live
  version of a rule over the same articles (pure).

The names other modules use are re-exported here, so that they need not know which of
these modules holds what, and imported on first use: a parse worker needs the matcher,
not the rule-file loader (which brings in the settings, YAML and templates).
"""

from typing import TYPE_CHECKING

from monitor.lazy import lazy_names

if TYPE_CHECKING:
    from monitor.match.matcher import (
        DEFAULT_FIELDS,
        SNIPPET_WIDTH,
        Matcher,
        all_terms,
        field_texts,
        positive_terms,
    )
    from monitor.match.query import QueryError, check_regex, compile_regex, parse_query, parse_term
    from monitor.match.ruleset import (
        REALERT_KEYS,
        RULE_KEYS,
        RuleSet,
        load_rule_file,
        load_rules,
        resolve_references,
        rule_files,
        rule_from_source,
    )
    from monitor.match.ruletest import Example, RuleReport, compare, marks

__all__ = [
    "DEFAULT_FIELDS",
    "REALERT_KEYS",
    "RULE_KEYS",
    "SNIPPET_WIDTH",
    "Example",
    "Matcher",
    "QueryError",
    "RuleReport",
    "RuleSet",
    "all_terms",
    "check_regex",
    "compare",
    "compile_regex",
    "field_texts",
    "load_rule_file",
    "load_rules",
    "marks",
    "parse_query",
    "parse_term",
    "positive_terms",
    "resolve_references",
    "rule_files",
    "rule_from_source",
]

#: The module of this package that holds each name of ``__all__``.
_HOMES = {
    "DEFAULT_FIELDS": "matcher",
    "SNIPPET_WIDTH": "matcher",
    "Matcher": "matcher",
    "all_terms": "matcher",
    "field_texts": "matcher",
    "positive_terms": "matcher",
    "QueryError": "query",
    "check_regex": "query",
    "compile_regex": "query",
    "parse_query": "query",
    "parse_term": "query",
    "REALERT_KEYS": "ruleset",
    "RULE_KEYS": "ruleset",
    "RuleSet": "ruleset",
    "load_rule_file": "ruleset",
    "load_rules": "ruleset",
    "resolve_references": "ruleset",
    "rule_files": "ruleset",
    "rule_from_source": "ruleset",
    "Example": "ruletest",
    "RuleReport": "ruletest",
    "compare": "ruletest",
    "marks": "ruletest",
}

if not TYPE_CHECKING:  # mypy checks the names imported above, not any name at all
    __getattr__ = lazy_names(__name__, _HOMES)
