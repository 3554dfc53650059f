"""`news-monitor test-rule`: try a rule (a file, or one of the rules directory) on stored
articles or on a file, next to the version the daemon runs now, and report what it
would fire, lose and gain. Nothing is stored or sent."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from monitor.cli.common import config_option, print_errors, settings_for
from monitor.errors import ConfigErrors
from monitor.models import Article, Rule

if TYPE_CHECKING:
    from monitor.match import Example, RuleReport, RuleSet
    from monitor.store.interface import Storage


@click.command("test-rule")
@config_option
@click.argument("file_or_rule")
@click.option(
    "--since",
    default="7d",
    show_default=True,
    help="How far back to look in stored articles (30m, 7d, ...) or 'all'.",
)
@click.option(
    "--article",
    "article_path",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="Try on this file instead: a feed (.xml) or a text file (first line = title).",
)
@click.option("--count-only", is_flag=True, help="Only the counts.")
@click.option("--show", default=5, show_default=True, help="Examples per list.")
@click.option("--json", "as_json", is_flag=True, help="The full result as JSON.")
def test_rule(
    config_path: Path,
    file_or_rule: str,
    since: str,
    article_path: Path | None,
    count_only: bool,
    show: int,
    as_json: bool,
) -> None:
    """Try a rule on stored articles without alerting, and compare it with the live one.

    FILE_OR_RULE is a rule file (every rule in it is tried, enabled or not) or the name of
    a rule in the rules directory. Each rule is run over the articles stored since
    --since, next to the version the daemon runs now, and the report says what would
    fire and what the edit loses and gains, with examples and the matched terms
    highlighted. Nothing is stored or sent.

    \b
    Example:
      news-monitor test-rule rules/sanctions.yaml --since 7d
      news-monitor test-rule troop-movements --article draft.txt
    """
    from monitor.match import compare, load_rules
    from monitor.store import open_store

    settings = settings_for(config_path)
    on_disk = load_rules(settings.rules_dir)
    candidates = _candidates(file_or_rule, on_disk)
    store = open_store(settings.database, readonly=True) if settings.database.exists() else None
    active, note = _live_versions(store, on_disk)
    if article_path is not None:
        articles = _load_articles_file(article_path)
        scope = str(article_path)
    else:
        if store is None:
            raise click.ClickException(
                f"{settings.database}: no database yet; use --article FILE, or run the daemon"
            )
        articles, scope = _stored_articles(store, since)
    reports = compare(candidates, active, articles)
    if store is not None:
        store.close()

    if as_json:
        click.echo(json.dumps([_as_json(r) for r in reports], indent=2, ensure_ascii=False))
        return
    color = sys.stdout.isatty()
    for r in reports:
        _print_report(r, scope, note, count_only=count_only, show=show, color=color)


def _candidates(file_or_rule: str, on_disk: RuleSet) -> list[Rule]:
    """The rules to try: every rule of the file FILE_OR_RULE names, or the rule of the
    rules directory of that name. Exits with the errors of a file that does not load."""
    from monitor.match import load_rule_file

    candidate_path = Path(file_or_rule)
    if candidate_path.suffix in (".yaml", ".yml") or candidate_path.exists():
        if not candidate_path.is_file():
            raise click.ClickException(f"{candidate_path}: no such rule file")
        candidates, errors = load_rule_file(candidate_path)
        if errors:
            print_errors(ConfigErrors(errors))
            sys.exit(1)
        if not candidates:
            raise click.ClickException(f"{candidate_path}: the file holds no rules")
    else:
        candidates = [r for r in on_disk.rules if r.name == file_or_rule]
        if not candidates:
            names = ", ".join(sorted(r.name for r in on_disk.rules)) or "(none)"
            raise click.ClickException(f"no rule named {file_or_rule!r}; rules: {names}")
    return candidates


def _live_versions(store: Storage | None, on_disk: RuleSet) -> tuple[dict[str, Rule], str]:
    """The version of each rule the daemon runs now (as it recorded them), and a note for
    the report when none is recorded: then the rules on disk stand in for them."""
    from monitor.match import rule_from_source

    active: dict[str, Rule] = {}
    note = ""
    if store is not None:
        for name, (_, source) in store.active_rule_sources().items():
            rebuilt = rule_from_source(source, f"{name} (active version)")
            if isinstance(rebuilt, Rule):
                active[name] = rebuilt
    if not active:
        active = {r.name: r for r in on_disk.rules}
        note = "no live version recorded yet: compared with the rules directory on disk"
    return active, note


def _stored_articles(store: Storage, since: str) -> tuple[list[tuple[int, Article]], str]:
    """The articles stored within --since (a duration, or 'all'), and how the report
    names that span."""
    from datetime import timedelta

    from monitor.config import parse_duration
    from monitor.daemon.process import utcnow

    if since == "all":
        start = None
        scope = "all stored"
    else:
        seconds = parse_duration(since)
        if seconds is None:
            raise click.BadParameter(
                "use a duration such as 30m, 7d, or 'all'", param_hint="--since"
            )
        start = utcnow() - timedelta(seconds=seconds)
        scope = f"stored in the last {since}"
    return list(store.articles_since(start)), scope


def _load_articles_file(path: Path) -> list[tuple[int, Article]]:
    """A feed file (RSS/Atom) gives its entries; any other file is one article: the first
    non-empty line is the title, the rest the body."""
    from monitor.parse import parse_feed

    raw = path.read_bytes()
    if path.suffix.lower() in (".xml", ".rss", ".atom"):
        return list(enumerate(parse_feed("file", path.resolve().as_uri(), raw, {}), start=1))
    text = raw.decode("utf-8", "replace").strip()
    title, _, body = text.partition("\n")
    return [
        (
            1,
            Article(
                feed="file",
                uid=str(path),
                title=title.strip(),
                link=path.resolve().as_uri(),
                content=body.strip(),
            ),
        )
    ]


def _as_json(r: RuleReport) -> dict[str, Any]:
    """One rule's report for --json, with every example (not only --show of them)."""
    return {
        "rule": r.rule.name,
        "version": r.rule.version,
        "active_version": r.active.version if r.active else None,
        "articles": r.articles,
        "fires": len(r.fired),
        "active_fires": r.active_fired,
        "lost": [_example(e) for e in r.lost],
        "gained": [_example(e) for e in r.gained],
        "hits": [_example(e) for e in r.fired],
    }


def _example(e: Example) -> dict[str, Any]:
    return {
        "article_id": e.article_id,
        "feed": e.article.feed,
        "title": e.article.title,
        "link": e.article.link,
        "terms": list(e.hit.terms),
        "snippet": e.hit.snippet,
    }


def _print_report(
    r: RuleReport, scope: str, note: str, *, count_only: bool, show: int, color: bool
) -> None:
    """One rule's report: its counts against the live version, then (unless
    --count-only) up to ``show`` examples of what fires, is lost and is gained."""
    click.echo(
        click.style(f"{r.rule.name}", bold=True)
        + f"  (version {r.rule.version}, {r.rule.path}:{r.rule.line})"
    )
    click.echo(f"  over {r.articles} articles ({scope})")
    if r.active is None:
        summary = f"would fire {len(r.fired)} times; not live yet (a new rule)"
    elif r.unchanged:
        summary = f"fires {len(r.fired)} times; same as the live version"
    else:
        summary = (
            f"would fire {len(r.fired)} times; live version {r.active.version} "
            f"fired {r.active_fired}; {len(r.lost)} lost, {len(r.gained)} gained"
        )
    click.echo(f"  {summary}")
    if note:
        click.echo(f"  ({note})")
    if count_only:
        return
    lists = [("hits", r.fired)]
    if r.active is not None and not r.unchanged:
        lists += [("lost", r.lost), ("gained", r.gained)]
    for label, items in lists:
        if not items:
            click.echo(f"  {label}: none")
            continue
        click.echo(f"  {label} (showing {min(show, len(items))} of {len(items)}):")
        for e in items[:show]:
            click.echo(f"    [{e.article.feed}] {e.article.title}")
            click.echo(f"        matched: {', '.join(e.hit.terms)}")
            click.echo(f"        {_highlight(e.hit.snippet, e.marks, color)}")


def _highlight(text: str, marks: tuple[tuple[int, int], ...], color: bool) -> str:
    """``text`` with the spans ``marks`` in bold yellow on a terminal, else [bracketed]."""
    out, at = [], 0
    for start, end in marks:
        if start < at:
            continue
        word = text[start:end]
        out.append(text[at:start])
        out.append(click.style(word, fg="yellow", bold=True) if color else f"[{word}]")
        at = end
    out.append(text[at:])
    return "".join(out)
