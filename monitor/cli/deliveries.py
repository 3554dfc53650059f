"""`news-monitor deliveries`: the outbox (alerts, notices and digests per channel, and
their state), and `deliveries retry` to queue some of them again."""

from __future__ import annotations

from pathlib import Path

import click

from monitor.cli.common import (
    config_option,
    current_time,
    listed,
    opened_store,
    settings_for,
    subcommand_config,
)
from monitor.text import stamp, stamp_or_none

DELIVERY_STATES = ("pending", "deferred", "sent", "dead", "muted", "batched")


@click.group(invoke_without_command=True)
@config_option
@click.option("--status", type=click.Choice(DELIVERY_STATES), help="Only deliveries in this state.")
@click.option("--channel", help="Only deliveries to this channel.")
@click.option("-n", "--limit", default=30, show_default=True, help="How many to show.")
@click.option("--json", "as_json", is_flag=True, help="One JSON array, for scripts.")
@click.pass_context
def deliveries(
    ctx: click.Context,
    config_path: Path,
    status: str | None,
    channel: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Show the outbox, newest first: every alert, notice and digest per channel, and
    whether it is pending (with its next try and last error), deferred to a digest, sent,
    muted by a silence, or dead (given up after delivery.max_age).

    Works while the daemon runs.

    \b
    Example:
      news-monitor deliveries --status dead
      news-monitor deliveries retry 42
    """
    if ctx.invoked_subcommand is not None:
        return
    with opened_store(settings_for(config_path), readonly=True) as store:
        rows = store.deliveries(status=status, channel=channel, limit=limit)
    if listed(rows, as_json, "No deliveries."):
        return
    colors = {"sent": "green", "dead": "red", "pending": "yellow", "deferred": "cyan"}
    for row in rows:
        state = click.style(f"{row.status:<8}", fg=colors.get(row.status))
        click.echo(f"#{row.id:<6} {state} {row.channel:<12} {row.kind:<6} {row.what}: {row.title}")
        detail = f"key {row.key}, attempts {row.attempts}, queued {stamp(row.created_at)}"
        if row.status == "pending":
            detail += f", next try {stamp(row.next_attempt_at)}"
        elif row.status == "sent":
            detail += f", sent {stamp_or_none(row.sent_at)}"
        elif row.status == "deferred":
            detail += f", in {row.batch} until {stamp_or_none(row.release_at)}"
        elif row.status == "batched":
            detail += f", sent in digest delivery of digest #{row.in_digest}"
        click.echo(f"        {detail}")
        if row.last_error and row.status != "sent":
            click.echo(f"        last error: {row.last_error}")


@deliveries.command("retry")
@click.argument("ids", nargs=-1, type=int)
@click.option("--dead", is_flag=True, help="Every dead delivery.")
@config_option
@click.pass_context
def deliveries_retry(
    ctx: click.Context, ids: tuple[int, ...], dead: bool, config_path: Path
) -> None:
    """Queue deliveries again: the ones named (even sent ones: send again), or with
    --dead every dead one. They go out at the daemon's next delivery round, with their
    max age counted afresh.

    \b
    Example:
      news-monitor deliveries retry 17 18
      news-monitor deliveries retry --dead
    """
    if not ids and not dead:
        raise click.UsageError("name delivery ids, or use --dead")
    with opened_store(settings_for(subcommand_config(ctx, config_path))) as store:
        count = store.retry(ids, current_time(), dead=dead)
    click.echo(f"{count} deliver{'y' if count == 1 else 'ies'} queued again.")
    if ids and count < len(ids):
        click.echo("(ids that do not exist, or are batched into a digest, were skipped)")
