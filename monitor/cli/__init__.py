"""The `news-monitor` command. Thin: parse options, build objects, call one function.

This module is the command group `main` (the entry point), which sets up logging for
every command; each module beside it holds one group of commands:

* ``run``: run, demo, check (the daemon, and validating what it starts with);
* ``hits``: hits, stories, search (reading what was stored);
* ``rules``: test-rule;
* ``deliveries``: deliveries, deliveries retry;
* ``silence``: silence rule/feed/story/list/lift;
* ``admin``: stats, prune;
* ``feeds``: feeds and its editing subcommands;
* ``common``: what they share; ``logs``: the log format.

Exit codes: 0 success, 1 configuration or runtime error, 2 bad command-line usage.
"""

from __future__ import annotations

import click

from monitor import __version__
from monitor.cli import admin, deliveries, feeds, hits, rules, run, silence
from monitor.cli.logs import setup_logging


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
    setup_logging(verbose)


for _command in (
    run.run,
    run.demo,
    run.check,
    hits.hits,
    hits.stories,
    hits.search,
    rules.test_rule,
    deliveries.deliveries,
    silence.silence,
    admin.stats,
    admin.prune,
    feeds.feeds,
):
    main.add_command(_command)
