"""`news-monitor run`, `demo` and `check`: start the daemon (on the configured feeds, or
on the sample feeds served locally), or only validate what it would start with."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import click

from monitor.cli.common import config_option, print_errors, settings_for
from monitor.config import Settings
from monitor.errors import ConfigErrors, StorageError


def _run_daemon(settings: Settings) -> int:
    from monitor.daemon.process import Daemon

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


@click.command()
@config_option
def run(config_path: Path) -> None:
    """Run the daemon: poll feeds, match rules, store hits, deliver alerts.

    Stops cleanly on SIGTERM or Ctrl-C (exit status 0).

    \b
    Example:
      news-monitor run --config /etc/news-monitor/config.yaml
    """
    sys.exit(_run_daemon(settings_for(config_path, secrets=True)))


@click.command()
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


@click.command()
@config_option
def check(config_path: Path) -> None:
    """Validate the settings file and every rule file; print every error with file:line.

    Exit status 1 if anything is wrong. Run it after each edit, and before starting the
    service (the systemd unit does).

    \b
    Example:
      news-monitor check --config /etc/news-monitor/config.yaml
    """
    from monitor.daemon.loading import validate

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
