"""The `news-monitor` command. Thin: parse options, build objects, call one function.

Exit codes: 0 success, 1 configuration or runtime error, 2 bad command-line usage.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import click

from monitor import __version__
from monitor.cli_common import (
    config_option,
    current_time,
    opened_store,
    print_errors,
    settings_for,
    subcommand_config,
)
from monitor.config import Settings
from monitor.errors import ConfigErrors, MonitorError, StorageError
from monitor.models import Article, Rule
from monitor.text import mask_url


class _MaskedFormatter(logging.Formatter):
    """Every log line, traceback included, with the user:password@ of any URL in it
    masked: the last guard, behind the masking each message does itself (a library's
    exception text can quote a feed URL whole)."""

    def format(self, record: logging.LogRecord) -> str:
        return mask_url(super().format(record))


def _expected(record: logging.LogRecord) -> bool:
    """False for APScheduler's warning that a feed's poll is still running at its next
    tick: expected (the poll outlasted the interval; the next one runs when it ends)
    and, at a tick a second, most of the log. Shown with -v."""
    return not (
        record.name.startswith("apscheduler")
        and "maximum number of running instances reached" in str(record.msg)
    )


def _setup_logging(verbose: int) -> None:
    level = logging.DEBUG if verbose > 0 else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        _MaskedFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S")
    )
    if not verbose:
        handler.addFilter(_expected)
    logging.basicConfig(level=level, handlers=[handler])
    for noisy in ("httpx", "httpcore", "apscheduler", "apprise", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose > 1 else logging.WARNING)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="news-monitor")
@click.option("-v", "--verbose", count=True, help="More log detail (-vv: libraries too).")
def main(verbose: int) -> None:
    """Watch news feeds, match new stories against YAML rules, store hits, send alerts.

    \b
    Example:
      news-monitor check -c /etc/news-monitor/config.yaml
      news-monitor run -c /etc/news-monitor/config.yaml
    """
    _setup_logging(verbose)


def _run_daemon(settings: Settings) -> int:
    from monitor.daemon import Daemon

    try:
        daemon = Daemon(settings)
    except ConfigErrors as exc:
        print_errors(exc)
        click.echo("refusing to start; fix the errors above (see `news-monitor check`)", err=True)
        return 1
    try:
        return asyncio.run(daemon.run())
    except StorageError as exc:
        raise click.ClickException(str(exc)) from exc


@main.command()
@config_option
def run(config_path: Path) -> None:
    """Run the daemon: poll feeds, match rules, store hits, deliver alerts.

    Stops cleanly on SIGTERM or Ctrl-C (exit status 0).

    \b
    Example:
      news-monitor run --config /etc/news-monitor/config.yaml
    """
    sys.exit(_run_daemon(settings_for(config_path, secrets=True)))


@main.command()
@config_option
@click.option(
    "--seeds",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default="seeds",
    show_default=True,
    help="Folder of feed files to serve.",
)
@click.option(
    "--fresh/--keep",
    default=False,
    help="Delete the configured database first, so the sample articles alert again.",
)
def demo(config_path: Path, seeds: Path, fresh: bool) -> None:
    """Serve the sample feed on 127.0.0.1 and run the daemon against it.

    The feed files of SEEDS are served over real HTTP on a free local port, exported as
    $SAMPLE_FEED_PORT for the settings file to use, and the daemon runs as with `run`.

    \b
    Example:
      news-monitor demo --config config.example.yaml --fresh
    """
    from monitor.devserver import FeedServer

    with FeedServer(seeds) as server:
        os.environ["SAMPLE_FEED_PORT"] = str(server.port)
        settings = settings_for(config_path, secrets=True)
        if fresh:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{settings.database}{suffix}").unlink(missing_ok=True)
        click.echo(
            f"Serving {seeds}/ at http://127.0.0.1:{server.port}/ ; Ctrl-C to stop.", err=True
        )
        code = _run_daemon(settings)
    sys.exit(code)


@main.command()
@config_option
def check(config_path: Path) -> None:
    """Validate the settings file and every rule file; print every error with file:line.

    Exit status 1 if anything is wrong. Run it after each edit, and before starting the
    service (the systemd unit does).

    \b
    Example:
      news-monitor check --config /etc/news-monitor/config.yaml
    """
    from monitor.daemon import validate

    settings = settings_for(config_path, secrets=True)
    try:
        matcher, channels = validate(settings)
    except ConfigErrors as exc:
        print_errors(exc)
        sys.exit(1)
    enabled = sum(1 for f in settings.feeds if f.enabled)
    click.echo(
        f"OK: {len(settings.feeds)} feeds ({enabled} enabled), {len(matcher)} rules "
        f"enabled, {len(channels)} channels."
    )


def _moment(value: str | None, param: str) -> Any:
    """--since/--until: a duration back from now (7d, 12h) or a date (2026-11-30, or
    2026-11-30T08:00, UTC)."""
    from datetime import UTC, datetime, timedelta

    from monitor.config import parse_duration

    if value is None:
        return None
    seconds = parse_duration(value)
    if seconds is not None:
        return current_time() - timedelta(seconds=seconds)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is neither a duration (7d, 12h) nor a date (2026-11-30)", param_hint=param
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


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


@main.command()
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
            since=_moment(since, "--since"),
            until=_moment(until, "--until"),
        )
    if as_csv:
        import csv

        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(HIT_COLUMNS)
        for row in rows:
            writer.writerow(
                "; ".join(row["terms"]) if key == "terms" else row.get(key) for key in HIT_COLUMNS
            )
        return
    if _listed(rows, as_json, "No hits yet."):
        return
    for row in rows:
        click.echo(
            f"{row['created_at']}  {click.style(row['rule'], bold=True)}  "
            f"[{row['feed']}] {row['title']}"
        )
        click.echo(f"    matched: {', '.join(row['terms'])}")
        click.echo(f"    why:     {row['snippet']}")
        sent = row["deliveries"] or (
            f"- ({row['muted']})"
            if row["muted"]
            else "- (held until the story has more sources)"
            if row["held"]
            else "- (its story was already alerted)"
            if row["story_id"] is not None
            else "-"
        )
        click.echo(f"    link:    {row['link']}   sent: {sent}")
        if row["story_id"] is not None:
            click.echo(f"    story:   #{row['story_id']} ({row['story_sources']} sources)")


@main.command()
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
        click.echo(
            json.dumps(rows[0] if story_id is not None else rows, indent=2, ensure_ascii=False)
        )
        return
    if not rows:
        click.echo("No stories yet.")
        return
    for row in rows:
        sources = f"{row['sources']} source{'s' if row['sources'] != 1 else ''}"
        click.echo(
            f"#{row['id']}  {click.style(sources, bold=True)}  {row['title']}  "
            f"({row['articles']} articles, {row['hits']} hits; "
            f"{row['first_seen']} .. {row['last_seen']})"
        )
        click.echo(f"    {', '.join(row['outlets'])}")
        for article in row.get("articles_list", []):
            rules = f"  hits: {article['rules']}" if article["rules"] else ""
            click.echo(
                f"    {article['seen_at']}  [{article['feed']}] {article['source']}: "
                f"{article['title']}{rules}"
            )
            click.echo(f"        {article['link']}")


def _highlight(text: str, marks: tuple[tuple[int, int], ...], color: bool) -> str:
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


@main.command("test-rule")
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
    from datetime import timedelta

    from monitor.config import parse_duration
    from monitor.daemon import utcnow
    from monitor.match import compare, load_rule_file, load_rules, rule_from_source
    from monitor.store import Store

    settings = settings_for(config_path)
    candidate_path = Path(file_or_rule)
    on_disk = load_rules(settings.rules_dir)
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

    store = None
    active: dict[str, Rule] = {}
    note = ""
    if settings.database.exists():
        store = Store(settings.database, readonly=True)
        for name, (_, source) in store.active_rule_sources().items():
            rebuilt = rule_from_source(source, f"{name} (active version)")
            if isinstance(rebuilt, Rule):
                active[name] = rebuilt
    if not active:
        active = {r.name: r for r in on_disk.rules}
        note = "no live version recorded yet: compared with the rules directory on disk"

    if article_path is not None:
        articles = _load_articles_file(article_path)
        scope = str(article_path)
    else:
        if store is None:
            raise click.ClickException(
                f"{settings.database}: no database yet; use --article FILE, or run the daemon"
            )
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
        articles = list(store.articles_since(start))
    reports = compare(candidates, active, articles)
    if store is not None:
        store.close()

    if as_json:

        def example(e: Any) -> dict[str, Any]:
            return {
                "article_id": e.article_id,
                "feed": e.article.feed,
                "title": e.article.title,
                "link": e.article.link,
                "terms": list(e.hit.terms),
                "snippet": e.hit.snippet,
            }

        click.echo(
            json.dumps(
                [
                    {
                        "rule": r.rule.name,
                        "version": r.rule.version,
                        "active_version": r.active.version if r.active else None,
                        "articles": r.articles,
                        "fires": len(r.fired),
                        "active_fires": r.active_fired,
                        "lost": [example(e) for e in r.lost],
                        "gained": [example(e) for e in r.gained],
                        "hits": [example(e) for e in r.fired],
                    }
                    for r in reports
                ],
                indent=2,
                ensure_ascii=False,
            )
        )
        return

    color = sys.stdout.isatty()
    for r in reports:
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
            continue
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


def _listed(rows: list[dict[str, Any]], as_json: bool, empty: str) -> bool:
    """Print ``rows`` as one JSON array, or ``empty`` when there are none; True when
    nothing more is to be printed."""
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return True
    if not rows:
        click.echo(empty)
        return True
    return False


DELIVERY_STATES = ("pending", "deferred", "sent", "dead", "muted", "batched")


@main.group(invoke_without_command=True)
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
    if _listed(rows, as_json, "No deliveries."):
        return
    colors = {"sent": "green", "dead": "red", "pending": "yellow", "deferred": "cyan"}
    for row in rows:
        state = click.style(f"{row['status']:<8}", fg=colors.get(row["status"]))
        click.echo(
            f"#{row['id']:<6} {state} {row['channel']:<12} {row['kind']:<6} "
            f"{row['what']}: {row['title']}"
        )
        detail = f"key {row['key']}, attempts {row['attempts']}, queued {row['created_at']}"
        if row["status"] == "pending":
            detail += f", next try {row['next_attempt_at']}"
        elif row["status"] == "sent":
            detail += f", sent {row['sent_at']}"
        elif row["status"] == "deferred":
            detail += f", in {row['batch']} until {row['release_at']}"
        elif row["status"] == "batched":
            detail += f", sent in digest delivery of digest #{row['in_digest']}"
        click.echo(f"        {detail}")
        if row["last_error"] and row["status"] != "sent":
            click.echo(f"        last error: {row['last_error']}")


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


@main.group()
def silence() -> None:
    """Silence a rule, a feed or a story for a while: its hits are stored (see `hits`)
    but not alerted, and pending alerts of it are muted. Silences expire by themselves.

    \b
    Example:
      news-monitor silence rule sanctions --for 24h --reason "EU summit noise"
      news-monitor silence list
      news-monitor silence lift 3
    """


def _silence(kind: str, target: str, for_: str, reason: str, config_path: Path) -> None:
    from datetime import timedelta

    from monitor.config import parse_duration

    seconds = parse_duration(for_)
    if seconds is None or seconds <= 0:
        raise click.BadParameter(
            f"{for_!r} is not a duration such as 30m, 6h or 2d", param_hint="--for"
        )
    settings = settings_for(config_path)
    if kind == "feed" and target not in {f.name for f in settings.feeds}:
        known = ", ".join(sorted(f.name for f in settings.feeds)) or "none"
        raise click.ClickException(f"no feed named {target!r} in {config_path} (feeds: {known})")
    if kind == "rule":
        from monitor.match import load_rules

        names = {r.name for r in load_rules(settings.rules_dir).rules}
        if target not in names:
            raise click.ClickException(
                f"no rule named {target!r} in {settings.rules_dir} "
                f"(rules: {', '.join(sorted(names)) or 'none'})"
            )
    with opened_store(settings) as store:
        if kind == "story" and not store.stories(story_id=int(target)):
            raise click.ClickException(f"no story #{target}; `news-monitor stories` lists them")
        now = current_time()
        until = now + timedelta(seconds=seconds)
        silence_id = store.add_silence(kind, target, until, now, reason)
    click.echo(f"Silence #{silence_id}: {kind} {target} until {until.isoformat()}.")


_FOR = click.option("--for", "for_", required=True, help="How long: 30m, 6h, 2d...")
_REASON = click.option("--reason", default="", help="Why, shown in `silence list`.")


@silence.command("rule")
@click.argument("name")
@_FOR
@_REASON
@config_option
def silence_rule(name: str, for_: str, reason: str, config_path: Path) -> None:
    """Silence the rule NAME.

    \b
    Example:
      news-monitor silence rule troop-movements --for 6h
    """
    _silence("rule", name, for_, reason, config_path)


@silence.command("feed")
@click.argument("name")
@_FOR
@_REASON
@config_option
def silence_feed(name: str, for_: str, reason: str, config_path: Path) -> None:
    """Silence every alert from the feed NAME.

    \b
    Example:
      news-monitor silence feed tass --for 6h --reason "flooding"
    """
    _silence("feed", name, for_, reason, config_path)


@silence.command("story")
@click.argument("story_id", type=int)
@_FOR
@_REASON
@config_option
def silence_story(story_id: int, for_: str, reason: str, config_path: Path) -> None:
    """Silence the story STORY_ID (see `news-monitor stories`): no alerts, follow-ups
    included, for its articles.

    \b
    Example:
      news-monitor silence story 1234 --for 2d
    """
    _silence("story", str(story_id), for_, reason, config_path)


@silence.command("list")
@click.option("--all", "everything", is_flag=True, help="Expired and lifted silences too.")
@click.option("--json", "as_json", is_flag=True, help="One JSON array, for scripts.")
@config_option
def silence_list(everything: bool, as_json: bool, config_path: Path) -> None:
    """List active silences (with --all, past ones too).

    \b
    Example:
      news-monitor silence list --all
    """
    with opened_store(settings_for(config_path), readonly=True) as store:
        rows = store.silences(current_time(), everything=everything)
    if _listed(rows, as_json, "No silences." if everything else "No active silences."):
        return
    for row in rows:
        state = "active" if row["active"] else ("lifted" if row["lifted_at"] else "expired")
        reason = f"  ({row['reason']})" if row["reason"] else ""
        click.echo(
            f"#{row['id']:<4} {state:<8} {row['kind']} {row['target']} until {row['until']}{reason}"
        )


@silence.command("lift")
@click.argument("silence_id", type=int)
@config_option
def silence_lift(silence_id: int, config_path: Path) -> None:
    """End the silence SILENCE_ID now (alerts muted meanwhile stay muted).

    \b
    Example:
      news-monitor silence lift 3
    """
    with opened_store(settings_for(config_path)) as store:
        lifted = store.lift_silence(silence_id, current_time())
    if not lifted:
        raise click.ClickException(
            f"no active silence #{silence_id}; see `news-monitor silence list`"
        )
    click.echo(f"Silence #{silence_id} lifted.")


@main.command()
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
                query, limit=limit, feed=feed, since=_moment(since, "--since"), mark=mark
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
    if _listed(rows, as_json, "No stored article matches."):
        return
    for row in rows:
        rules = f"  hits: {row['rules']}" if row["rules"] else ""
        click.echo(f"{row['seen_at']}  [{row['feed']}] {_printable(row['title'])}{rules}")
        click.echo(f"    {_printable(row['snippet'])}")
        click.echo(f"    {row['link']}")


def _catch_up_search_index(settings: Settings) -> None:
    """Index what the daemon has not yet (it does so every few seconds; when it is not
    running, nobody would), if this user may write the database; else leave it be."""
    from monitor.store import Store

    path = settings.database
    if not (path.is_file() and os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)):
        return
    try:
        store = Store(path)
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


@main.command()
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
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    click.echo(f"database   {data['database']} ({data['size_bytes'] / 2**20:.1f} MiB)")
    click.echo(
        f"articles   {data['articles']} ({data['articles_last_day']} in the last day; "
        f"oldest {data['oldest_article'] or '-'})"
    )
    waiting = data["articles_without_story"]
    later = f" ({waiting:,} articles of first polls waiting for theirs)" if waiting else ""
    click.echo(f"stories    {data['stories']}{later}")
    click.echo(
        f"hits       {data['hits']} ({data['hits_last_day']} in the last day, "
        f"{data['muted_hits']} muted)"
    )
    for rule in data["rules"]:
        click.echo(f"  {rule['rule']:<28} {rule['hits']:>8}  ({rule['last_day']} last day)")
    states = ", ".join(f"{k} {v}" for k, v in sorted(data["deliveries"].items())) or "none"
    click.echo(f"deliveries {states}")
    click.echo(
        f"feeds      {data['feeds_polled']} polled, {data['feeds_failing']} failing, "
        f"{data['feeds_stopped']} stopped"
    )
    click.echo(f"silences   {data['silences_active']} active")


@main.command()
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


from monitor.cli_feeds import feeds  # noqa: E402

main.add_command(feeds)
