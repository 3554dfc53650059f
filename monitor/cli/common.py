"""What the `news-monitor` commands share: the --config option, loading the settings
with errors printed, the opened database, the feed health words, --since/--until times
and JSON-or-nothing listings. Its own module so that every command module imports it,
whichever is imported first."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource

from monitor.config import Settings, load_settings, parse_duration
from monitor.errors import ConfigErrors, MonitorError
from monitor.models import FeedState

if TYPE_CHECKING:
    from monitor.store.interface import Storage

CONFIG_HELP = "Settings file (YAML). Also $NEWS_MONITOR_CONFIG."
config_option = click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default="news-monitor.yaml",
    show_default=True,
    envvar="NEWS_MONITOR_CONFIG",
    help=CONFIG_HELP,
)


def settings_for(path: Path, *, secrets: bool = False) -> Settings:
    """The settings; with ``secrets`` (run, check, demo) every ${NAME} and
    ${credential:NAME} must resolve, else commands that only read or edit the database
    work without the daemon's secrets."""
    if not path.exists():
        raise click.ClickException(
            f"{path}: settings file not found; pass --config or copy config.example.yaml"
        )
    try:
        return load_settings(path, os.environ, secrets=secrets)
    except ConfigErrors as exc:
        print_errors(exc)
        sys.exit(1)


def print_errors(exc: ConfigErrors) -> None:
    for error in exc.errors:
        click.echo(f"error: {error}", err=True)
    click.echo(f"{len(exc.errors)} error(s).", err=True)


def health_of(feed_enabled: bool, state: FeedState | None) -> str:
    if not feed_enabled:
        return "disabled in config"
    if state is None:
        return "never polled"
    if state.disabled:
        return "stopped (gone)"
    errors = state.consecutive_errors
    if errors:
        return f"failing ({errors} in a row)"
    return "ok"


def subcommand_config(ctx: click.Context, config_path: Path) -> Path:
    """The settings file of a group's subcommand: ``-c`` given to the subcommand wins,
    then ``-c`` given to the group (``feeds -c FILE add ...``), then $NEWS_MONITOR_CONFIG
    or the default."""
    if ctx.get_parameter_source("config_path") is ParameterSource.COMMANDLINE:
        return config_path
    parent = ctx.parent
    if (
        parent is not None
        and "config_path" in parent.params
        and parent.get_parameter_source("config_path") is ParameterSource.COMMANDLINE
    ):
        return Path(parent.params["config_path"])
    return config_path


@contextlib.contextmanager
def opened_store(settings: Settings, *, readonly: bool = False) -> Iterator[Storage]:
    """The settings' database, closed afterwards; a database that cannot be opened is a
    clean error (errors of what is done with it are the command's to report)."""
    from monitor.store import open_store

    try:
        store = open_store(settings.database, readonly=readonly)
    except MonitorError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        yield store
    finally:
        store.close()


def current_time() -> datetime:
    """The current time, to the second, for commands that record or compare it."""
    return datetime.now(UTC).replace(microsecond=0)


def moment(value: str | None, param: str) -> Any:
    """--since/--until: a duration back from now (7d, 12h) or a date (2026-11-30, or
    2026-11-30T08:00, UTC)."""
    if value is None:
        return None
    seconds = parse_duration(value)
    if seconds is not None:
        return current_time() - timedelta(seconds=seconds)
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is neither a duration (7d, 12h) nor a date (2026-11-30)", param_hint=param
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def listed(rows: Sequence[Any], as_json: bool, empty: str) -> bool:
    """Print ``rows`` (records of the store's read side) as one JSON array, or ``empty``
    when there are none; True when nothing more is to be printed."""
    from monitor.store.interface import plain  # here: the store loads only when used

    if as_json:
        click.echo(json.dumps(plain(rows), indent=2, ensure_ascii=False))
        return True
    if not rows:
        click.echo(empty)
        return True
    return False
