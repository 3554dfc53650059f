"""`news-monitor stats` and `prune`: what the database holds, and applying the retention
settings to it now."""

from __future__ import annotations

import json
from pathlib import Path

import click

from monitor.cli.common import config_option, current_time, opened_store, settings_for
from monitor.text import stamp_or_none


@click.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object, for scripts.")
def stats(config_path: Path, as_json: bool) -> None:
    """What the database holds: articles, stories, hits per rule (and in the last day),
    deliveries by state, feed health, active silences, size on disk.

    Works while the daemon runs (read-only connection).

    \b
    Example:
      news-monitor stats
      news-monitor stats --json | jq .deliveries
    """
    settings = settings_for(config_path)
    with opened_store(settings, readonly=True) as store:
        data = store.stats(current_time(), {f.name for f in settings.feeds if f.enabled})
    if as_json:
        from monitor.store.interface import plain

        click.echo(json.dumps(plain(data), indent=2, ensure_ascii=False))
        return
    click.echo(f"database   {data.database} ({data.size_bytes / 2**20:.1f} MiB)")
    click.echo(
        f"articles   {data.articles} ({data.articles_last_day} in the last day; "
        f"oldest {stamp_or_none(data.oldest_article) or '-'})"
    )
    waiting = data.articles_without_story
    later = f" ({waiting:,} articles of first polls waiting for theirs)" if waiting else ""
    click.echo(f"stories    {data.stories}{later}")
    click.echo(
        f"hits       {data.hits} ({data.hits_last_day} in the last day, {data.muted_hits} muted)"
    )
    for rule in data.rules:
        click.echo(f"  {rule.rule:<28} {rule.hits:>8}  ({rule.last_day} last day)")
    states = ", ".join(f"{k} {v}" for k, v in sorted(data.deliveries.items())) or "none"
    click.echo(f"deliveries {states}")
    click.echo(
        f"feeds      {data.feeds_polled} polled, {data.feeds_failing} failing, "
        f"{data.feeds_stopped} stopped"
    )
    click.echo(f"silences   {data.silences_active} active")


@click.command()
@config_option
@click.option("--dry-run", is_flag=True, help="Only say what would be deleted.")
@click.option("--vacuum", is_flag=True, help="Then give the freed space back to the disk.")
@click.option("--json", "as_json", is_flag=True, help="The counts as JSON.")
def prune(config_path: Path, dry_run: bool, vacuum: bool, as_json: bool) -> None:
    """Apply the retention settings now: delete articles without hits older than
    retention.articles (default 30d), and hits older than retention.hits (default 365d)
    with their articles and deliveries. The daemon does this once a day by itself.

    \b
    Example:
      news-monitor prune --dry-run
      news-monitor prune --vacuum
    """
    from datetime import timedelta

    settings = settings_for(config_path)
    with opened_store(settings) as store:
        counts = store.prune(
            current_time(),
            articles=settings.keep_articles,
            hits=settings.keep_hits,
            quiet=timedelta(seconds=settings.story_quiet),
            dry_run=dry_run,
        )
        if vacuum and not dry_run:
            store.vacuum()
    if as_json:
        click.echo(json.dumps(counts))
        return
    verb = "would delete" if dry_run else "deleted"
    click.echo(f"{verb}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
