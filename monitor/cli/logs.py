"""The process's logging, set up once by `news-monitor` before any command runs: one
line per event on stderr, URL credentials masked, the libraries' chatter kept down.

Only the command line sets logging up; the library modules only log.
"""

from __future__ import annotations

import logging
import sys

from monitor.text import mask_url


class MaskedFormatter(logging.Formatter):
    """Every log line, traceback included, with the user:password@ of any URL in it
    masked: the last guard, behind the masking each message does itself (a library's
    exception text can quote a feed URL whole)."""

    def format(self, record: logging.LogRecord) -> str:
        return mask_url(super().format(record))


def expected(record: logging.LogRecord) -> bool:
    """False for APScheduler's warning that a feed's poll is still running at its next
    tick: expected (the poll outlasted the interval; the next one runs when it ends)
    and, at a tick a second, most of the log. Shown with -v."""
    return not (
        record.name.startswith("apscheduler")
        and "maximum number of running instances reached" in str(record.msg)
    )


def setup_logging(verbose: int) -> None:
    """INFO to stderr (-v: DEBUG; -vv: the libraries' DEBUG too)."""
    level = logging.DEBUG if verbose > 0 else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        MaskedFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S")
    )
    if not verbose:
        handler.addFilter(expected)
    logging.basicConfig(level=level, handlers=[handler])
    for noisy in ("httpx", "httpcore", "apscheduler", "apprise", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose > 1 else logging.WARNING)
