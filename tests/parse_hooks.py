"""Parse targets for :class:`monitor.parse.ParsePool` tests, run inside worker processes.

Imported by name in the workers (``tests/`` is on the ``sys.path`` they inherit), so this
module imports nothing but the stdlib and :mod:`monitor.parse`. A request whose content
starts with a command misbehaves on purpose; anything else is parsed normally:

* ``SLEEP <seconds>``: sleep (a parse that never ends);
* ``SPIN <seconds>``: burn CPU;
* ``ALLOC <bytes>``: allocate that much memory and keep it;
* ``EXIT <status>``: the process exits at once, without replying;
* ``SIGNAL <name>``: the process sends itself a signal;
* ``RAISE``: a bug (an exception that is not a FeedError);
* ``UNPICKLABLE``: return something that cannot be sent back;
* ``PID``: parse nothing, return one article whose title is the worker's pid;
* ``RAW``: the rest of the content goes to feedparser directly, skipping parse_feed's
  XML-bomb check (to see what the memory cap does on its own).

:func:`rendezvous` is a second target, to prove parses run in parallel.
"""

from __future__ import annotations

import io
import os
import signal
import time
from collections.abc import Mapping

from monitor.models import Article
from monitor.parse import parse_feed

_hoard: list[bytes] = []


def misbehave(feed: str, url: str, content: bytes, headers: Mapping[str, str]) -> list[Article]:
    command, _, argument = content.partition(b" ")
    if command == b"SLEEP":
        time.sleep(float(argument))
    elif command == b"SPIN":
        end = time.process_time() + float(argument)
        while time.process_time() < end:
            pass
    elif command == b"ALLOC":
        _hoard.append(bytearray(int(argument)))  # type: ignore[arg-type]
    elif command == b"EXIT":
        os._exit(int(argument))
    elif command == b"SIGNAL":
        os.kill(os.getpid(), signal.Signals[argument.decode()])
        time.sleep(10)
    elif command == b"RAISE":
        raise ZeroDivisionError("a bug in the parser")
    elif command == b"UNPICKLABLE":
        return [lambda: None]  # type: ignore[list-item]
    elif command == b"PID":
        return [Article(feed=feed, uid="pid", title=str(os.getpid()), link="")]
    elif command == b"RAW":
        import feedparser

        parsed = feedparser.parse(io.BytesIO(argument))
        return [
            Article(feed=feed, uid=str(i), title=str(e.get("title", ""))[:100], link="")
            for i, e in enumerate(parsed.entries)
        ]
    return parse_feed(feed, url, content, headers)


def rendezvous(feed: str, url: str, content: bytes, headers: Mapping[str, str]) -> list[Article]:
    """Content ``<directory> <n>``: leave a file named after this process in the directory,
    then wait (up to 20 s) until ``n`` processes have; the article's title is the pid.
    Succeeds only if ``n`` parses run at the same time, in different processes."""
    directory, count = content.decode().split()
    pid = str(os.getpid())
    with open(os.path.join(directory, pid), "w"):
        pass
    deadline = time.monotonic() + 20
    while len(os.listdir(directory)) < int(count):
        if time.monotonic() > deadline:
            raise TimeoutError("the other parses never arrived")
        time.sleep(0.01)
    return [Article(feed=feed, uid=pid, title=pid, link="")]
