"""What runs inside a parse worker process: its limits, and its loop of requests.

A worker is the one place a hostile feed is parsed, so it fences itself in before the
first request: no core dumps, a lower CPU priority (``nice``), an address-space cap
(``RLIMIT_AS``: a ``MemoryError`` makes it exit with :data:`EXIT_OUT_OF_MEMORY`) and,
before each parse, a CPU-time cap (``RLIMIT_CPU``: the deadline plus a margin, a
second guard that works even if the daemon is frozen or gone). The parent side, which
starts, times and replaces workers, is :mod:`monitor.parse.pool`.
"""

from __future__ import annotations

import math
import os
import resource
import signal
import sys
import traceback
from collections.abc import Callable, Mapping
from dataclasses import replace
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from monitor.errors import FeedError
from monitor.models import Article, Matched

if TYPE_CHECKING:  # a worker gets its Matcher pickled; this module never builds one
    from monitor.match import Matcher

#: Exit status of a worker that ran out of memory (caught a MemoryError).
EXIT_OUT_OF_MEMORY = 75

ParseTarget = Callable[[str, str, bytes, Mapping[str, str]], list[Article]]
#: What a worker is to match the articles it parsed with: (the matcher's token, the
#: matcher itself if the worker may not have it yet, ids of articles not to match).
_Matching = tuple[int, "Matcher | None", frozenset[str]]


def _limit(which: int, soft: int, what: str) -> None:
    """Lower a soft resource limit of this process (never above the hard limit). A
    sandbox that forbids it (seccomp) is reported on stderr, not fatal."""
    try:
        _, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY:
            soft = min(soft, hard)
        resource.setrlimit(which, (soft, hard))
    except (OSError, ValueError) as exc:
        if what:
            print(
                f"news-monitor parse worker {os.getpid()}: could not limit {what} ({exc}); "
                "parsing without that limit",
                file=sys.stderr,
                flush=True,
            )


def _worker_main(
    conn: Connection, target: ParseTarget, memory_limit: int | None, cpu_budget: int, nice: int
) -> None:
    """The loop of a worker process: receive (feed, url, content, headers, matching),
    reply with ("ok", articles), ("ok", articles with their hits) when asked to match,
    ("feed-error", message) or ("error", traceback); exit on EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the daemon's to handle
    _limit(resource.RLIMIT_CORE, 0, "core dumps")
    if nice:
        try:
            os.nice(nice)
        except OSError as exc:  # a sandbox that filters setpriority(), say
            print(
                f"news-monitor parse worker {os.getpid()}: could not lower its CPU priority "
                f"({exc}); parsing at the daemon's",
                file=sys.stderr,
                flush=True,
            )
    if memory_limit:
        _limit(resource.RLIMIT_AS, memory_limit, "memory")
    matchers: dict[int, Matcher] = {}  # the last one sent, by token
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        except MemoryError:
            os._exit(EXIT_OUT_OF_MEMORY)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        _limit(resource.RLIMIT_CPU, math.ceil(usage.ru_utime + usage.ru_stime) + cpu_budget, "")
        status: str
        value: Any
        try:
            status, value = "ok", _parse_request(target, request, matchers)
        except MemoryError:
            os._exit(EXIT_OUT_OF_MEMORY)
        except FeedError as exc:
            status, value = "feed-error", exc.message
        except BaseException as exc:  # a bug: say which, keep the worker
            status, value = "error", "".join(traceback.format_exception(exc))
        del request
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        try:
            conn.send((status, value, peak))
        except MemoryError:
            os._exit(EXIT_OUT_OF_MEMORY)
        except (OSError, ValueError):
            return  # the parent is gone
        except Exception as exc:  # the articles did not pickle: a bug
            conn.send(("error", f"the reply could not be sent: {exc!r}", peak))
        del value


def _parse_request(
    target: ParseTarget,
    request: tuple[str, str, bytes, dict[str, str], _Matching | None],
    matchers: dict[int, Matcher],
) -> list[Article] | Matched:
    feed, url, content, headers, matching = request
    if matching is None:
        return target(feed, url, content, headers)
    token, sent, known = matching
    if sent is not None:  # kept even if this feed fails to parse
        matchers.clear()
        matchers[token] = sent
    matcher = matchers[token]  # the pool sends it whenever this worker may lack it
    articles = target(feed, url, content, headers)
    # The normalised texts were for matching here: not sent back.
    return [
        (replace(a, normalized=None), None if a.uid in known else matcher.match(a))
        for a in articles
    ]
