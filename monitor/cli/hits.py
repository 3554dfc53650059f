"""`news-monitor hits`, `stories` and `search`: read what the daemon stored (hits with
why they fired, stories across outlets, full-text search), while it runs."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from monitor.cli.common import config_option, listed, moment, opened_store, settings_for
from monitor.config import Settings
from monitor.errors import MonitorError
from monitor.text import stamp

if TYPE_CHECKING:
    from monitor.store.interface import HitRow

HIT_COLUMNS = (
    "id",
    "created_at",
    "rule",
    "severity",
    "feed",
    "title",
    "link",
    "published",
    "terms",
    "snippet",
    "story_id",
    "story_sources",
    "deliveries",
    "muted",
)


@click.command()
@config_option
@click.option("-n", "--limit", default=20, show_default=True, help="How many hits (0: all).")
@click.option("--rule", help="Only hits of this rule.")
@click.option("--feed", help="Only hits on articles of this feed.")
@click.option("--since", help="Only hits since: a duration back (7d) or a date (2026-11-30).")
@click.option("--until", help="Only hits before this (same forms as --since).")
@click.option("--json", "as_json", is_flag=True, help="One JSON array, for scripts.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV with a header row, for spreadsheets.")
def hits(
    config_path: Path,
    limit: int,
    rule: str | None,
    feed: str | None,
    since: str | None,
    until: str | None,
    as_json: bool,
    as_csv: bool,
) -> None:
    """Show recent hits, newest first, with why they fired and where they were sent;
    filter by rule, feed and time; export them as JSON or CSV.

    Works while the daemon runs (read-only connection).

    \b
    Example:
      news-monitor hits --rule sanctions -n 5
      news-monitor hits --feed tass --since 7d
      news-monitor hits --since 2026-11-01 -n 0 --csv > hits.csv
      news-monitor hits --json | jq '.[].title'
    """
    if as_json and as_csv:
        raise click.UsageError("choose one of --json and --csv")
    settings = settings_for(config_path)
    with opened_store(settings, readonly=True) as store:
        rows = store.hits(
            limit=limit or None,
            rule=rule,
            feed=feed,
            since=moment(since, "--since"),
            until=moment(until, "--until"),
        )
    if as_csv:
        _write_csv(rows)
        return
    if listed(rows, as_json, "No hits yet."):
        return
    for row in rows:
        _print_hit(row)


def _write_csv(rows: list[HitRow]) -> None:
    """--csv: a header row of HIT_COLUMNS, then a row a hit (its terms joined by "; ")."""
    import csv

    from monitor.store.interface import plain

    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(HIT_COLUMNS)
    for row in rows:
        data = plain(row)
        writer.writerow(
            "; ".join(row.terms) if key == "terms" else data[key] for key in HIT_COLUMNS
        )


def _print_hit(row: HitRow) -> None:
    """One hit for people: what fired on which article, why, and where it was sent (or
    why it was not)."""
    click.echo(
        f"{stamp(row.created_at)}  {click.style(row.rule, bold=True)}  [{row.feed}] {row.title}"
    )
    click.echo(f"    matched: {', '.join(row.terms)}")
    click.echo(f"    why:     {row.snippet}")
    sent = row.deliveries or (
        f"- ({row.muted})"
        if row.muted
        else "- (held until the story has more sources)"
        if row.held
        else "- (its story was already alerted)"
        if row.story_id is not None
        else "-"
    )
    click.echo(f"    link:    {row.link}   sent: {sent}")
    if row.story_id is not None:
        click.echo(f"    story:   #{row.story_id} ({row.story_sources} sources)")


@click.command()
@config_option
@click.argument("story_id", required=False, type=int)
@click.option("-n", "--limit", default=20, show_default=True, help="How many stories to show.")
@click.option(
    "--min-sources", default=1, show_default=True, help="Only stories this widely carried."
)
@click.option("--json", "as_json", is_flag=True, help="JSON, for scripts.")
def stories(
    config_path: Path, story_id: int | None, limit: int, min_sources: int, as_json: bool
) -> None:
    """List recent stories (one event reported by several outlets) with their source
    counts, most recently active first; with STORY_ID, that story's articles and hits.

    Works while the daemon runs (read-only connection).

    \b
    Example:
      news-monitor stories --min-sources 3
      news-monitor stories 42
      news-monitor stories --json | jq '.[] | select(.sources >= 5) | .title'
    """
    settings = settings_for(config_path)
    with opened_store(settings, readonly=True) as store:
        try:
            rows = store.stories(limit=limit, min_sources=min_sources, story_id=story_id)
        except MonitorError as exc:
            raise click.ClickException(str(exc)) from exc
    if story_id is not None and not rows:
        raise click.ClickException(f"no story #{story_id}; `news-monitor stories` lists them")
    if as_json:
        from monitor.store.interface import plain

        click.echo(
            json.dumps(
                plain(rows[0] if story_id is not None else rows), indent=2, ensure_ascii=False
            )
        )
        return
    if not rows:
        click.echo("No stories yet.")
        return
    for row in rows:
        sources = f"{row.sources} source{'s' if row.sources != 1 else ''}"
        click.echo(
            f"#{row.id}  {click.style(sources, bold=True)}  {row.title}  "
            f"({row.articles} articles, {row.hits} hits; "
            f"{stamp(row.first_seen)} .. {stamp(row.last_seen)})"
        )
        click.echo(f"    {', '.join(row.outlets)}")
        for article in row.articles_list:
            rules = f"  hits: {article.rules}" if article.rules else ""
            click.echo(
                f"    {stamp(article.seen_at)}  [{article.feed}] {article.source}: "
                f"{article.title}{rules}"
            )
            click.echo(f"        {article.link}")


@click.command()
@config_option
@click.argument("query")
@click.option("-n", "--limit", default=20, show_default=True, help="How many results.")
@click.option("--feed", help="Only articles of this feed.")
@click.option("--since", help="Only articles stored since: a duration back (7d) or a date.")
@click.option("--json", "as_json", is_flag=True, help="One JSON array, for scripts.")
def search(
    config_path: Path,
    query: str,
    limit: int,
    feed: str | None,
    since: str | None,
    as_json: bool,
) -> None:
    """Full-text search over every stored article (alerted or not), best match first,
    with the matching words highlighted. QUERY: words (stemmed: "sanction" finds
    "sanctions"), "exact phrases", AND, OR, NOT, prefix*, title:word.

    Works while the daemon runs (read-only connection).

    \b
    Example:
      news-monitor search '"prisoner exchange" AND title:ukraine' --since 30d
      news-monitor search 'belgorod NOT drill*' --json | jq '.[].link'
    """
    color = sys.stdout.isatty() and not as_json
    mark = ("\x1b[1;33m", "\x1b[0m") if color else ("[", "]") if not as_json else ("", "")
    settings = settings_for(config_path)
    _catch_up_search_index(settings)
    with opened_store(settings, readonly=True) as store:
        try:
            rows = store.search(
                query, limit=limit, feed=feed, since=moment(since, "--since"), mark=mark
            )
            behind = store.unindexed()
        except MonitorError as exc:
            raise click.ClickException(str(exc)) from exc
    if behind:
        click.echo(
            f"note: the {behind} newest articles are not in the search index yet "
            "(the daemon adds them within seconds; this user cannot write the database)",
            err=True,
        )
    if listed(rows, as_json, "No stored article matches."):
        return
    for row in rows:
        rules = f"  hits: {row.rules}" if row.rules else ""
        click.echo(f"{stamp(row.seen_at)}  [{row.feed}] {_printable(row.title)}{rules}")
        click.echo(f"    {_printable(row.snippet)}")
        click.echo(f"    {row.link}")


def _catch_up_search_index(settings: Settings) -> None:
    """Index what the daemon has not yet (it does so every few seconds; when it is not
    running, nobody would), if this user may write the database; else leave it be."""
    from monitor.store import open_store

    path = settings.database
    if not (path.is_file() and os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)):
        return
    try:
        store = open_store(path)
    except MonitorError:
        return
    try:
        store.catch_up_search()
    except MonitorError:
        pass  # busy, or not writable after all: searched as it is
    finally:
        store.close()


def _printable(text: str) -> str:
    """Feed text without control characters (our own colour codes excepted)."""
    return "".join(c for c in text if c.isprintable() or c == "\x1b")
