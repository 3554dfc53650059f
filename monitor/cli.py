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

import click

from monitor import __version__
from monitor.config import Settings, load_settings
from monitor.errors import ConfigErrors, MonitorError, StorageError

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


def _setup_logging(verbose: int) -> None:
    level = logging.DEBUG if verbose > 0 else logging.INFO
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
    )
    for noisy in ("httpx", "httpcore", "apscheduler", "apprise", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose > 1 else logging.WARNING)


def _settings(path: Path) -> Settings:
    if not path.exists():
        raise click.ClickException(
            f"{path}: settings file not found; pass --config or copy config.example.yaml"
        )
    try:
        return load_settings(path, os.environ)
    except ConfigErrors as exc:
        _print_errors(exc)
        sys.exit(1)


def _print_errors(exc: ConfigErrors) -> None:
    for error in exc.errors:
        click.echo(f"error: {error}", err=True)
    click.echo(f"{len(exc.errors)} error(s).", err=True)


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
        _print_errors(exc)
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
    sys.exit(_run_daemon(_settings(config_path)))


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
        settings = _settings(config_path)
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

    settings = _settings(config_path)
    try:
        matcher, channels = validate(settings)
    except ConfigErrors as exc:
        _print_errors(exc)
        sys.exit(1)
    enabled = sum(1 for f in settings.feeds if f.enabled)
    click.echo(
        f"OK: {len(settings.feeds)} feeds ({enabled} enabled), {len(matcher)} rules "
        f"enabled, {len(channels)} channels."
    )


@main.command()
@config_option
@click.option("-n", "--limit", default=20, show_default=True, help="How many hits to show.")
@click.option("--rule", help="Only hits of this rule.")
@click.option("--json", "as_json", is_flag=True, help="One JSON array, for scripts.")
def hits(config_path: Path, limit: int, rule: str | None, as_json: bool) -> None:
    """Show recent hits, newest first, with why they fired and where they were sent.

    Works while the daemon runs (read-only connection).

    \b
    Example:
      news-monitor hits --rule sanctions -n 5
      news-monitor hits --json | jq '.[].title'
    """
    from monitor.store import Store

    settings = _settings(config_path)
    try:
        store = Store(settings.database, readonly=True)
        rows = store.hits(limit=limit, rule=rule)
        store.close()
    except MonitorError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not rows:
        click.echo("No hits yet.")
        return
    for row in rows:
        click.echo(
            f"{row['created_at']}  {click.style(row['rule'], bold=True)}  "
            f"[{row['feed']}] {row['title']}"
        )
        click.echo(f"    matched: {', '.join(row['terms'])}")
        click.echo(f"    why:     {row['snippet']}")
        click.echo(f"    link:    {row['link']}   sent: {row['deliveries'] or '-'}")
