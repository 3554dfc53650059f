"""`news-monitor silence`: mute a rule, a feed or a story for a while (its hits are
still stored), list the silences and lift one early."""

from __future__ import annotations

from pathlib import Path

import click

from monitor.cli.common import config_option, current_time, listed, opened_store, settings_for
from monitor.text import stamp


@click.group()
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
    if listed(rows, as_json, "No silences." if everything else "No active silences."):
        return
    for row in rows:
        state = "active" if row.active else ("lifted" if row.lifted_at else "expired")
        reason = f"  ({row.reason})" if row.reason else ""
        click.echo(
            f"#{row.id:<4} {state:<8} {row.kind} {row.target} until {stamp(row.until)}{reason}"
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
