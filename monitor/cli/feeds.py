"""`news-monitor feeds`: list the configured feeds, and add, remove, pause, resume,
import (OPML) and export them by editing the settings files in place.

monitor.cli adds the group to `main`; what every command shares is in monitor.cli.common.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from monitor.cli.common import (
    config_option,
    current_time,
    health_of,
    opened_store,
    print_errors,
    settings_for,
    subcommand_config,
)
from monitor.config import Settings, parse_duration
from monitor.config.feedsfile import (
    Change,
    FeedFiles,
    NewFeed,
    RolledBack,
    add_feeds,
    read_feed_files,
    remove_feed,
    set_enabled,
    url_key,
    url_owners,
    valid_url,
)
from monitor.config.opml import OpmlFeed, feed_name, parse_opml, to_opml
from monitor.errors import ConfigError, ConfigErrors, MonitorError, StorageBusy
from monitor.models import FeedConfig, FeedState
from monitor.text import mask_url, stamp_or_none

#: The largest OPML file `feeds import` reads.
MAX_OPML_BYTES = 20 * 2**20

_FILE = click.option(
    "--file",
    "target",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write to this feeds_from file (one listed under `feeds_from:` already; `[]` "
    "for a new, empty one) instead of the settings file's `feeds:` list.",
)


def _interval(value: str) -> str:
    seconds = parse_duration(value)
    if seconds is None or seconds < 1:
        raise click.BadParameter(
            f"{value!r} is not a duration such as 30s, 15m or 2h (at least 1s)",
            param_hint="--interval",
        )
    return value


def _edit(action: Callable[[], Change]) -> Change:
    """Run one edit; every refusal becomes an error message and exit status 1."""
    try:
        return action()
    except RolledBack as exc:
        print_errors(exc)
        raise click.ClickException(
            f"with this change the settings no longer load, so {exc.file} was put back as "
            "it was; nothing changed"
        ) from exc
    except ConfigErrors as exc:
        print_errors(exc)
        raise click.ClickException(
            "the settings do not load as they are; fix them first (`news-monitor check`). "
            "Nothing was changed."
        ) from exc
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


def _reload_hint(settings: Settings | None) -> str:
    every = f" ({settings.reload_interval:g}s)" if settings is not None else ""
    return (
        f"The running daemon applies it within reload_interval{every}, or now with "
        "`systemctl reload news-monitor` (SIGHUP)."
    )


def _report(change: Change) -> None:
    for warning in change.warnings:
        click.echo(f"warning: {warning}", err=True)
    for line in change.done:
        click.echo(f"{line[:1].upper()}{line[1:]}.")
    if change.changed:
        click.echo(_reload_hint(change.settings))


# --- the group: listing ----------------------------------------------------------------


@click.group(invoke_without_command=True)
@config_option
@click.option("--json", "as_json", is_flag=True, help="One JSON array, for scripts.")
@click.pass_context
def feeds(ctx: click.Context, config_path: Path, as_json: bool) -> None:
    """List the configured feeds with their health: last success, errors, next poll.
    The subcommands add, remove, pause, resume, import and export feeds by editing the
    settings file (or its feeds_from files) in place, comments and all.

    Listing works while the daemon runs (read-only connection); the daemon applies
    changes within reload_interval, or at once on SIGHUP.

    \b
    Example:
      news-monitor feeds
      news-monitor feeds --json | jq '.[] | select(.health != "ok")'
      news-monitor feeds add kyiv-independent https://kyivindependent.com/feed/ --tag ukraine
      news-monitor feeds pause sputnik
    """
    if ctx.invoked_subcommand is not None:
        return
    settings = settings_for(config_path)
    states: dict[str, FeedState] = {}
    if settings.database.exists():
        with opened_store(settings, readonly=True) as store:
            try:
                states = {state.name: state for state in store.feeds()}
            except MonitorError as exc:
                raise click.ClickException(str(exc)) from exc
    rows = [_feed_row(feed, states.get(feed.name)) for feed in settings.feeds]
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    for row in rows:
        _print_feed(row)


def _feed_row(feed: FeedConfig, polled: FeedState | None) -> dict[str, Any]:
    """One configured feed with its stored state (None: never polled), as `feeds --json`
    gives it."""
    state = polled or FeedState(feed.name)
    return {
        "name": feed.name,
        "url": mask_url(feed.url),
        "enabled": feed.enabled,
        "interval": feed.interval,
        "tags": list(feed.tags),
        "health": health_of(feed.enabled, polled),
        "last_fetch": stamp_or_none(state.last_fetch),
        "last_success": stamp_or_none(state.last_success),
        "last_outcome": state.last_outcome,
        "consecutive_errors": state.consecutive_errors,
        "last_error": state.last_error,
        "last_error_kind": state.last_error_kind,
        # A paused or stopped feed has none, whatever was planned before.
        "next_poll": stamp_or_none(state.next_poll)
        if feed.enabled and not state.disabled
        else None,
        "retry_after_until": stamp_or_none(state.retry_after_until),
        "moved_to": state.moved_to,
        "stopped_because": state.disabled,
        "last_new": stamp_or_none(state.last_new),
    }


def _print_feed(row: dict[str, Any]) -> None:
    """One feed for people: health in colour, then what needs attention."""
    health = str(row["health"])
    colour = (
        "green"
        if health == "ok"
        else "red"
        if health.startswith(("failing", "stopped"))
        else "yellow"
    )
    click.echo(
        f"{click.style(row['name'], bold=True)}  {click.style(health, fg=colour)}"
        f"  every {row['interval']:g}s  {row['url']}"
    )
    details = [
        f"last success {row['last_success'] or '-'}",
        f"next poll {row['next_poll'] or '-'}",
    ]
    if row["retry_after_until"]:
        details.append(f"server asked to wait until {row['retry_after_until']}")
    if row["moved_to"]:
        details.append(f"moved permanently to {row['moved_to']}")
    click.echo("    " + "; ".join(details))
    if row["last_error"]:
        click.echo(f"    last error ({row['last_error_kind'] or 'error'}): {row['last_error']}")
    if row["stopped_because"]:
        click.echo(f"    stopped: {row['stopped_because']}")


# --- editing ---------------------------------------------------------------------------


@feeds.command("add")
@click.argument("name")
@click.argument("url")
@click.option("--interval", default="15m", show_default=True, help="Time between polls.")
@click.option("--tag", "tags", multiple=True, help="A tag rules can scope by; repeatable.")
@click.option("--disabled", is_flag=True, help="Add it paused (enabled: false).")
@_FILE
@config_option
@click.pass_context
def feeds_add(
    ctx: click.Context,
    name: str,
    url: str,
    interval: str,
    tags: tuple[str, ...],
    disabled: bool,
    target: Path | None,
    config_path: Path,
) -> None:
    """Add the feed NAME polling URL. It goes at the end of the settings file's `feeds:`
    list, or of the feeds_from file given with --file. Names must be unique; a URL that
    another feed already polls is only a warning. If the settings no longer load
    afterwards, the file is put back as it was.

    \b
    Example:
      news-monitor feeds add kyiv-independent https://kyivindependent.com/feed/ --tag ukraine
      news-monitor feeds add meduza https://meduza.io/rss/all --file seeds/outlets.yaml
    """
    path = subcommand_config(ctx, config_path)
    feed = NewFeed(name, url, _interval(interval), not disabled, tuple(tags))
    _report(_edit(lambda: add_feeds(path, [feed], os.environ, file=target)))


@feeds.command("remove")
@click.argument("name")
@config_option
@click.pass_context
def feeds_remove(ctx: click.Context, name: str, config_path: Path) -> None:
    """Remove the feed NAME from whichever file defines it, with the comment lines right
    above it. Refused while a rule is limited to it (`feeds:` in the rule). What was
    stored from it (articles, hits) stays in the database.

    \b
    Example:
      news-monitor feeds remove sputnik
    """
    path = subcommand_config(ctx, config_path)
    _report(_edit(lambda: remove_feed(path, name, os.environ)))


@feeds.command("pause")
@click.argument("name")
@config_option
@click.pass_context
def feeds_pause(ctx: click.Context, name: str, config_path: Path) -> None:
    """Stop polling the feed NAME: writes `enabled: false` into its entry.

    \b
    Example:
      news-monitor feeds pause foxnews
    """
    path = subcommand_config(ctx, config_path)
    _report(_edit(lambda: set_enabled(path, name, False, os.environ)))


@feeds.command("resume")
@click.argument("name")
@config_option
@click.pass_context
def feeds_resume(ctx: click.Context, name: str, config_path: Path) -> None:
    """Poll the feed NAME again: writes `enabled: true` into its entry, and clears the
    stop of a feed that answered 410 Gone (for a feed its publisher brought back at the
    same URL). Clearing the stop writes the database: run it as the daemon's user.

    \b
    Example:
      news-monitor feeds resume foxnews
      sudo -u news-monitor news-monitor feeds resume tass -c /etc/news-monitor/config.yaml
    """
    path = subcommand_config(ctx, config_path)
    change = _edit(lambda: set_enabled(path, name, True, os.environ))
    settings = change.settings
    if settings is not None and settings.database.exists():
        with opened_store(settings) as store:
            try:
                stopped = store.resume_feed(name)
            except StorageBusy as exc:
                raise click.ClickException(
                    f"{exc}: the daemon or another command is writing it; the feed stays "
                    "stopped. Try again in a moment."
                ) from exc
            except MonitorError as exc:
                raise click.ClickException(
                    f"{exc}; the feed stays stopped. Run this as the user the daemon runs "
                    "as (it can write the database)."
                ) from exc
        if stopped is not None:
            why = stopped.split(":", 1)[0]
            cleared = f"cleared the stop of feed {name!r} (it had answered {why})"
            change.done = [*(change.done if change.changed else []), cleared]
            change.changed = True
    _report(change)


# --- OPML ------------------------------------------------------------------------------


def plan_import(
    found: Sequence[OpmlFeed],
    files: FeedFiles,
    settings: Settings,
    *,
    interval: str = "15m",
    enabled: bool = True,
) -> tuple[list[tuple[OpmlFeed, NewFeed]], list[dict[str, str]]]:
    """Which OPML feeds to add (named from their titles) and which to skip, and why."""
    taken = set(files.names()) | {f.name for f in settings.feeds}
    owners = url_owners(files, settings)
    added: list[tuple[OpmlFeed, NewFeed]] = []
    planned: dict[tuple[str, ...], int] = {}  # url_key -> its index in `added`
    skipped: list[dict[str, str]] = []

    def skip(item: OpmlFeed, reason: str) -> None:
        skipped.append({"title": item.title, "url": mask_url(item.url), "reason": reason})

    for item in found:
        url = item.url
        tags = tuple(dict.fromkeys(" ".join(t.split()) for t in item.tags if t.strip()))
        if "***@" in url:
            skip(item, "its credentials were masked when it was exported; add it with `add`")
            continue
        if not valid_url(url) or "${" in url:
            skip(item, "not an http:// or https:// URL")
            continue
        key = url_key(url)
        owner = owners.get(key)
        if owner is not None:
            skip(item, f"already configured as {owner[0]!r} ({owner[1]})")
            continue
        twin = planned.get(key)
        if twin is not None:
            first, new = added[twin]
            merged = tuple(dict.fromkeys((*new.tags, *tags)))
            added[twin] = (first, NewFeed(new.name, new.url, new.interval, new.enabled, merged))
            skip(item, f"listed twice in the OPML file (kept as {new.name!r})")
            continue
        name = feed_name(item.title, url, taken)
        taken.add(name)
        planned[key] = len(added)
        added.append((item, NewFeed(name, url, interval, enabled, tags)))
    return added, skipped


@feeds.command("import")
@click.argument("opml_file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@_FILE
@click.option(
    "--interval", default="15m", show_default=True, help="Time between polls, for each feed."
)
@click.option("--disabled", is_flag=True, help="Add them paused (enabled: false).")
@click.option("--dry-run", is_flag=True, help="Show what would be added; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="What was (or would be) added, as JSON.")
@config_option
@click.pass_context
def feeds_import(
    ctx: click.Context,
    opml_file: Path,
    target: Path | None,
    interval: str,
    disabled: bool,
    dry_run: bool,
    as_json: bool,
    config_path: Path,
) -> None:
    """Add the feeds of an OPML file (a feed reader's export). Each is named from its
    title, tagged with the folders it sits in, and added at the end of the settings
    file's `feeds:` list (or of the feeds_from file given with --file). Feeds whose URL
    is configured already are skipped. DTDs and entities in the file are refused.

    \b
    Example:
      news-monitor feeds import subscriptions.opml --dry-run
      news-monitor feeds import subscriptions.opml --file feeds/imported.yaml --interval 30m
    """
    path = subcommand_config(ctx, config_path)
    _interval(interval)
    settings = settings_for(path)
    try:
        if opml_file.stat().st_size > MAX_OPML_BYTES:
            raise ConfigError(
                f"larger than {MAX_OPML_BYTES // 2**20} MiB; not an OPML list of feeds",
                str(opml_file),
            )
        found = parse_opml(opml_file.read_bytes(), str(opml_file))
        files = read_feed_files(path)
        destination = files.target(target)
    except OSError as exc:
        raise click.ClickException(f"{opml_file}: cannot read it: {exc.strerror}") from exc
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    added, skipped = plan_import(found, files, settings, interval=interval, enabled=not disabled)
    change: Change | None = None
    if added and not dry_run:
        change = _edit(lambda: add_feeds(path, [new for _, new in added], os.environ, file=target))
    if as_json:
        result = {
            "file": str(destination.path),
            "dry_run": dry_run,
            "added": [
                {
                    "name": new.name,
                    "url": mask_url(new.url),
                    "title": item.title,
                    "tags": list(new.tags),
                    "enabled": new.enabled,
                }
                for item, new in added
            ],
            "skipped": skipped,
        }
        click.echo(json.dumps(result, indent=2, ensure_ascii=False))
        return
    verb = "Would add" if dry_run else "Added"
    for _, new in added:
        tags = f"  [{', '.join(new.tags)}]" if new.tags else ""
        click.echo(f"{verb} {new.name}  {mask_url(new.url)}{tags}")
    for entry in skipped:
        click.echo(f"Skipped {entry['title'] or entry['url']}: {entry['reason']}", err=True)
    if not added:
        click.echo(f"Nothing to import from {opml_file}: {len(skipped)} feed(s) skipped.")
        return
    summary = f"{len(added)} feed(s) {'would be ' if dry_run else ''}added to {destination.path}"
    click.echo(f"{summary}, {len(skipped)} skipped.")
    if dry_run:
        click.echo("Dry run: nothing was written.")
    elif change is not None:
        click.echo(_reload_hint(change.settings))


@feeds.command("export")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write the OPML to this file instead of standard output.",
)
@click.option(
    "--include-credentials",
    is_flag=True,
    help="Keep user:password@ in URLs (masked as ***@ otherwise).",
)
@config_option
@click.pass_context
def feeds_export(
    ctx: click.Context, output: Path | None, include_credentials: bool, config_path: Path
) -> None:
    """Write the configured feeds as OPML 2.0, for a feed reader or another monitor:
    grouped into folders by their first tag, every tag in the `category` attribute.
    `${ENV}` references are filled in; credentials in URLs are masked unless asked for.

    \b
    Example:
      news-monitor feeds export -o feeds.opml
      news-monitor feeds export | xmllint --format -
    """
    settings = settings_for(subcommand_config(ctx, config_path))
    data = to_opml(
        settings.feeds,
        f"news-monitor feeds ({settings.path.name})",
        include_credentials=include_credentials,
        created=current_time(),
    )
    hidden = sum(1 for f in settings.feeds if mask_url(f.url) != f.url)
    if output is None:
        click.echo(data, nl=False)
    else:
        try:
            mode = 0o600 if include_credentials else 0o666
            fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            if include_credentials:
                os.chmod(output, 0o600)
        except OSError as exc:
            raise click.ClickException(f"{output}: cannot write it: {exc.strerror}") from exc
        click.echo(f"Exported {len(settings.feeds)} feed(s) to {output}.", err=True)
    if hidden and not include_credentials:
        click.echo(
            f"{hidden} feed URL(s) carry credentials, masked as ***@; "
            "--include-credentials keeps them",
            err=True,
        )
