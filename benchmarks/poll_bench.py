"""A whole poll cycle, side by side: our daemon's, lemon24/reader's, and bare httpx.

    .venv/bin/python benchmarks/poll_bench.py [--feeds 1000] [--items 50]
        [--contenders ours,reader,httpx,httpx+feedparser] [--rounds 1]
        [--concurrency 20] [--parse-workers 2] [--reader-workers 1]
        [--reader-python /tmp/reader-venv/bin/python] [--gzip] [--profile] [--json FILE]

One run serves ``--feeds`` generated RSS feeds of ``--items`` news items each (title,
description of 0.9-1.7 kB of HTML paragraphs, guid, link, pubDate; about 88 kB a feed)
from a small asyncio HTTP/1.1 server in a process of its own, on 127.0.0.1, with ETag and
Last-Modified, answering ``If-None-Match`` / ``If-Modified-Since`` with 304. The server
generates every feed before it starts and answers from prebuilt bytes, so it costs a few
tens of microseconds of CPU per request (its CPU time is shown per cycle).

Each contender runs in a child process of its own, with an empty database, and does two
cycles: the first (every answer a 200, every item new) and the second (every answer a
304). For each cycle the child measures wall time, CPU time (user + sys of itself and
every descendant: ParsePool's forkserver and workers), and peak RSS of itself (VmHWM,
reset with /proc/self/clear_refs before the cycle) and of its descendants; ``ru_maxrss``
(the process's lifetime peak, setup included) is what the memory target is checked on.

Contenders:

* ``ours``: exactly the daemon's cycle: ``poll_feed(feed, matcher, ctx)`` for every feed at
  once (``asyncio.gather``; at start the daemon's scheduler starts every feed's first
  poll at once too), a real ``Fetcher(allow_private=["127.0.0.0/8"])`` with
  ``per_host = total = --concurrency`` (every feed is on one host), a real
  ``ParsePool(--parse-workers)`` with the default deadline, 512 MiB cap and nice, a real
  ``Store`` on a fresh SQLite file, a ``Matcher`` of the shipped ``rules/``, the
  daemon's INFO logging to stderr (a file here), ``default_channels: [terminal]``;
* ``reader``: lemon24/reader in its own venv (``--reader-python``; created with
  ``pip install reader sgmllib3k`` if missing): ``add_feed`` for every URL, then
  ``update_feeds(workers=--reader-workers, scheduled=False)`` per cycle (``scheduled=False``
  because reader would otherwise skip the second cycle: its feeds are not due for an hour;
  ``workers=1`` is reader's default and, on loopback, its fastest: its threads only fetch,
  and it parses and stores in the calling thread);
* ``httpx``: one ``httpx.AsyncClient``, ``--concurrency`` requests at once, conditional GET,
  the body read and dropped: the floor for fetching alone;
* ``httpx+feedparser``: the same plus ``feedparser.parse`` inline on the event loop.

Targets checked: our first cycle at least 2x faster (wall) than reader's, our 304 cycle
no slower than reader's, and at 10,000 feeds our daemon process under 150 MiB peak RSS
with each parse worker under its cap. ``--profile`` adds one more run of ours under
cProfile (main process only; the workers' CPU shows in the table) and prints the top 25
functions by tottime of each cycle. The machine may be noisy: compare the ratios of one
run, not absolute times across runs; ``--rounds`` repeats every contender and reports
medians.

Internal modes: ``--serve`` (the feed server) and ``--child NAME`` (one contender); the
child mode imports only the standard library at module level, so reader's venv can run
this file too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import io
import json
import os
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

REPO = Path(__file__).resolve().parent.parent
CONTENDERS = ("ours", "reader", "httpx", "httpx+feedparser")
DEFAULT_READER_PYTHON = "/tmp/reader-venv/bin/python"
#: The targets.
FIRST_CYCLE_SPEEDUP = 2.0
MEMORY_TARGET = 150 * 2**20
MEMORY_TARGET_FEEDS = 10_000
PARSE_MEMORY_LIMIT = 512 * 2**20  # the daemon's default parse.memory_limit (RLIMIT_AS)
# The daemon's default parse.nice (monitor.config.PARSE_NICE).
PARSE_NICE = 10 if (os.cpu_count() or 1) > 1 else 0
CLK_TCK = os.sysconf("SC_CLK_TCK")
MiB = 2**20


# --- the feeds -----------------------------------------------------------------------------

#: Everyday news: none of it is what the shipped rules look for.
_WHO = [
    "The government",
    "The city council",
    "The central bank",
    "Investors in London",
    "Farmers' unions",
    "Hospital staff",
    "The opposition leader",
    "Energy traders",
    "The football federation",
    "A spokeswoman for the ministry",
    "Scientists at the university",
    "The school board",
    "Retailers",
    "The weather service",
    "Airline executives",
    "The mayor",
]
_SAY = [
    "said on Tuesday that",
    "warned that",
    "announced that",
    "reported that",
    "denied claims that",
    "confirmed that",
    "expects that",
    "argued that",
    "told reporters that",
    "said in a statement that",
]
_WHAT = [
    "prices would keep rising through the winter",
    "the harvest was larger than expected despite the drought",
    "the election would go ahead as planned in the spring",
    "the bridge would reopen to traffic after repairs",
    "the rail strike would end on Friday",
    "waiting lists were getting shorter in most regions",
    "the club had been sold to an investment fund",
    "inflation had slowed for a third month in a row",
    "the new stadium would be finished before the season",
    "the storm had cut power to forty thousand homes",
    "the museum would reopen its east wing in June",
    "the company would cut 2,000 jobs over two years",
    "interest rates would stay on hold until the autumn",
    "ticket sales for the festival had broken a record",
    "the new tram line would open a year late",
    "flu cases had doubled since the start of the month",
]
#: The crisis the shipped rules watch (troops, sanctions, weapons, talks...).
_CRISIS_WHO = [
    "The Kremlin",
    "Officials in Kyiv",
    "NATO's secretary general",
    "The European Commission",
    "The Russian defence ministry",
    "Diplomats in Geneva",
    "Border guards",
]
_CRISIS_WHAT = [
    "Russian troops had been moved closer to the Ukrainian border",
    "new sanctions against Moscow were being prepared in Brussels",
    "military exercises in Belarus would continue until March",
    "a new package of weapons deliveries to Ukraine had been approved",
    "the summit had made progress on security guarantees for Ukraine",
    "thousands of soldiers were massing near Crimea",
    "peace talks with Russia would resume in Istanbul next week",
    "air defence systems had shot down most of the Russian drones",
    "export controls on chips bound for Russia would be tightened",
]


def _sentence(rnd: random.Random, crisis: bool = False) -> str:
    if crisis:
        return f"{rnd.choice(_CRISIS_WHO)} {rnd.choice(_SAY)} {rnd.choice(_CRISIS_WHAT)}."
    return f"{rnd.choice(_WHO)} {rnd.choice(_SAY)} {rnd.choice(_WHAT)}."


#: Items that are a syndicated wire story (the same text, lightly edited, in many feeds):
#: they make stories of many outlets; every other item is about an event of its own.
WIRE_SHARE = 0.05
WIRE_STORIES = 200
#: Sentences of everyday news in match_bench's vocabulary (Zipf-distributed words, names
#: and topics); every paragraph draws three: two items rarely share more than one.
SENTENCES = 30_000
_POOL: list[str] = []
_NAMES: list[str] = []


def _pool() -> tuple[list[str], list[str]]:
    if not _POOL:
        from match_bench import make_world, news_text

        world = make_world(7)
        rnd = random.Random("poll-bench-sentences")
        for _ in range(SENTENCES):
            topic = rnd.choices(world.topics, cum_weights=world.topic_cum)[0]
            _POOL.append(news_text(rnd, world, topic, (10, 22))[1])
        _NAMES.extend(f for f in world.forms if f.isalpha() and len(f) > 5)
    return _POOL, _NAMES


def _story(rnd: random.Random, crisis: bool) -> tuple[str, list[str]]:
    """A title and paragraphs about one event of its own: a lede with a place, a person
    and figures, then everyday paragraphs (with the crisis sentences the shipped rules
    watch mixed in for ``crisis``)."""
    pool, names = _pool()
    place, person = rnd.choice(names).capitalize(), rnd.choice(names).capitalize()
    words = _sentence(rnd, crisis).rstrip(".").split()
    title = f"{place}: " + " ".join(words[: rnd.randint(6, 11)])
    lede = (
        f"{place.upper()}, {rnd.randint(1, 28)} March - {person}, who speaks for the "
        f"{place} district, said {rnd.randint(2, 900) * 10} people were affected and "
        f"{rnd.randint(2, 40)} more teams were on the way."
    )
    paragraphs, size = [lede], rnd.randint(900, 1700) - len(lede)
    while size > 0:
        text = " ".join(rnd.choices(pool, k=3))
        if crisis and rnd.random() < 0.5:
            text = _sentence(rnd, True) + " " + text
        paragraphs.append(text)
        size -= len(text) + 7
    return title, paragraphs


def _item(rnd: random.Random, feed: int, index: int, published: datetime, share: float) -> str:
    if rnd.random() < WIRE_SHARE:  # the wire story, lightly edited by this newsroom
        wire = rnd.randrange(WIRE_STORIES)
        title, paragraphs = _story(random.Random(f"wire-{wire}"), wire % 10 == 0)
        if len(paragraphs) > 2:
            paragraphs.pop(rnd.randrange(1, len(paragraphs)))
        uid = f"wire-{wire}-{feed}"
    else:
        title, paragraphs = _story(rnd, rnd.random() < share)
        uid = f"news{feed % 97}-{feed}-{index}"
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    return (
        f"<item><title>{escape(title)}</title>"
        f"<link>https://news{feed % 97}.example.org/{feed}/story/{index}.html</link>"
        f'<guid isPermaLink="false">{uid}</guid>'
        f"<description>{escape(body)}</description>"
        f"<pubDate>{format_datetime(published, usegmt=True)}</pubDate></item>"
    )


def feed_document(feed: int, items: int, share: float = 0.1) -> bytes:
    """One RSS 2.0 feed, the same bytes for the same arguments on every run; a ``share``
    of its items are about the crisis the shipped rules watch."""
    rnd = random.Random(feed)
    newest = datetime(2026, 3, 1, tzinfo=UTC) - timedelta(minutes=feed % 600)
    head = (
        '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel>'
        f"<title>Newsroom {feed}</title><link>https://news{feed % 97}.example.org/</link>"
        f"<description>Latest stories from newsroom {feed}</description><language>en</language>"
    )
    body = "".join(
        _item(rnd, feed, i, newest - timedelta(minutes=9 * i), share) for i in range(items)
    )
    return (head + body + "</channel></rss>\n").encode()


def feed_path(feed: int) -> str:
    return f"/feeds/{feed}.xml"


# --- the server (its own process) ----------------------------------------------------------

LAST_MODIFIED = "Sun, 01 Mar 2026 00:00:00 GMT"


@dataclass
class _Served:
    etag: bytes
    ok: bytes  # status line + headers + body
    ok_gzip: bytes | None
    not_modified: bytes


class _ServerState:
    def __init__(self, documents: list[bytes], use_gzip: bool) -> None:
        self.routes: dict[bytes, _Served] = {}
        for index, document in enumerate(documents):
            etag = f'"{index:x}-{zlib.crc32(document):08x}"'.encode()
            common = b"ETag: " + etag + b"\r\nLast-Modified: " + LAST_MODIFIED.encode() + b"\r\n"

            def ok(body: bytes, extra: bytes = b"", common: bytes = common) -> bytes:
                return (
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml; charset=utf-8\r\n"
                    + extra
                    + b"Content-Length: "
                    + str(len(body)).encode()
                    + b"\r\n"
                    + common
                    + b"\r\n"
                    + body
                )

            zipped = gzip.compress(document, 6, mtime=0) if use_gzip else None
            self.routes[feed_path(index).encode()] = _Served(
                etag=etag,
                ok=ok(document),
                ok_gzip=ok(zipped, b"Content-Encoding: gzip\r\nVary: Accept-Encoding\r\n")
                if zipped is not None
                else None,
                not_modified=b"HTTP/1.1 304 Not Modified\r\n" + common + b"\r\n",
            )
        self.counts: Counter[str] = Counter()

    def answer(self, head: bytes) -> tuple[bytes, bool]:
        """(response bytes, keep the connection open) for one request head."""
        line, _, rest = head.partition(b"\r\n")
        parts = line.split()
        keep = not (len(parts) == 3 and parts[2] == b"HTTP/1.0")
        headers: dict[bytes, bytes] = {}
        for raw in rest.split(b"\r\n"):
            name, _, value = raw.partition(b":")
            headers[name.strip().lower()] = value.strip()
        if headers.get(b"connection", b"").lower() == b"close":
            keep = False
        path = parts[1].split(b"?", 1)[0] if len(parts) > 1 else b""
        if path == b"/__stats":
            body = json.dumps(dict(self.counts)).encode()
            self.counts.clear()
            return (
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                + str(len(body)).encode()
                + b"\r\n\r\n"
                + body,
                keep,
            )
        served = self.routes.get(path)
        if served is None or parts[0] != b"GET":
            self.counts["404"] += 1
            return b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", keep
        match = headers.get(b"if-none-match")
        since = headers.get(b"if-modified-since")
        if (match is not None and served.etag in match) or (
            match is None and since == LAST_MODIFIED.encode()
        ):
            self.counts["304"] += 1
            return served.not_modified, keep
        self.counts["200"] += 1
        if served.ok_gzip is not None and b"gzip" in headers.get(b"accept-encoding", b""):
            return served.ok_gzip, keep
        return served.ok, keep


class _Connection(asyncio.Protocol):
    def __init__(self, state: _ServerState) -> None:
        self.state = state
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.state.counts["connections"] += 1

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > 65536:
                    self.transport.close()
                return
            head, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
            response, keep = self.state.answer(head)
            self.transport.write(response)
            if not keep:
                self.transport.close()
                return


def serve(feeds: int, items: int, use_gzip: bool) -> None:
    """Generate the feeds, print ``READY port bytes``, serve until SIGTERM or stdin closes."""
    documents = [feed_document(i, items) for i in range(feeds)]
    state = _ServerState(documents, use_gzip)
    total = sum(len(d) for d in documents)
    del documents

    serve_until_stopped(lambda: _Connection(state), lambda port: f"READY {port} {total}")


def serve_until_stopped(
    protocol: Callable[[], asyncio.Protocol], ready: Callable[[int], str]
) -> None:
    """Serve ``protocol`` on a free 127.0.0.1 port, print ``ready(port)``, and run until
    SIGTERM or until stdin closes (the parent went away)."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            protocol, "127.0.0.1", 0, backlog=1024, reuse_address=True
        )
        print(ready(server.sockets[0].getsockname()[1]), flush=True)
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_reader(sys.stdin.fileno(), stop.set)
        async with server:
            await stop.wait()

    asyncio.run(main())


def server_stats(base: str) -> dict[str, int]:
    """The server's request counters since the last call (which reset them)."""
    with urllib.request.urlopen(base + "/__stats", timeout=30) as response:
        return {k: int(v) for k, v in json.loads(response.read()).items()}


# --- measuring a process and its descendants -----------------------------------------------


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat from field 3 (state) on, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def cpu_seconds(pid: int, *, children: bool = True) -> float:
    """utime + stime (+ reaped children's, if ``children``) of a process, in seconds."""
    fields = _stat(pid)
    if fields is None:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLK_TCK


def descendants(root: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields is not None:
                parents.setdefault(int(fields[1]), []).append(int(entry))
    out, todo = [], [root]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def proc_status(pid: int) -> dict[str, int]:
    """VmHWM, VmRSS, VmPeak, VmSize of a process in bytes ({} if it is gone)."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmHWM", "VmRSS", "VmPeak", "VmSize"):
                    out[key] = int(value.split()[0]) * 1024
    except OSError:
        pass
    return out


def reset_peak(pid: int) -> bool:
    """Reset VmHWM (peak RSS) of a process to its current RSS (Linux clear_refs 5)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def machine_busy() -> float:
    """CPU seconds every process on the machine has used (busy, not idle or iowait)."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / CLK_TCK


def _own_cpu() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


@dataclass
class Meter:
    """Wall, CPU and memory of one cycle of this process and everything it started."""

    server_pid: int
    started: float = 0.0
    cpu0: float = 0.0
    kids0: dict[int, float] = field(default_factory=dict)
    server0: float = 0.0
    machine0: float = 0.0
    peak_reset: bool = False

    def start(self) -> None:
        self.kids0 = {pid: cpu_seconds(pid) for pid in descendants(os.getpid())}
        self.peak_reset = reset_peak(os.getpid())
        for pid in self.kids0:
            reset_peak(pid)
        self.server0 = cpu_seconds(self.server_pid)
        self.machine0 = machine_busy()
        self.cpu0 = _own_cpu()
        self.started = time.perf_counter()

    def lap(self, kids: dict[int, float] | None = None) -> dict[str, float]:
        """Wall and CPU time so far (``kids``: the descendants' CPU seconds, if read
        already). Ours calls it when the polls of its cycle are done and what they
        stored is not all searchable or in its story yet."""
        wall = time.perf_counter() - self.started
        own = _own_cpu() - self.cpu0
        if kids is None:
            kids = {pid: cpu_seconds(pid) for pid in descendants(os.getpid())}
        # A descendant that ended moved its time into its parent's "children" counters.
        kids_cpu = sum(kids.values()) - sum(self.kids0.values())
        return {"wall": wall, "cpu": own + kids_cpu, "cpu_main": own, "cpu_children": kids_cpu}

    def stop(self, workers: set[int] | None = None) -> dict[str, Any]:
        machine = machine_busy() - self.machine0
        kids = {pid: cpu_seconds(pid) for pid in descendants(os.getpid())}
        times = self.lap(kids)
        me = proc_status(os.getpid())
        server = cpu_seconds(self.server_pid) - self.server0
        result: dict[str, Any] = {
            **times,
            "server_cpu": server,
            # Everything else the machine did meanwhile: noise (other jobs on the box).
            "other_cpu": max(0.0, machine - times["cpu"] - server),
            "peak_rss": me.get("VmHWM", 0) if self.peak_reset else None,
            "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "children": [],
        }
        for pid in kids:
            status = proc_status(pid)
            if status:
                role = "worker" if workers is not None and pid in workers else "other"
                result["children"].append({"pid": pid, "role": role, **status})
        return result


# --- the contenders (each in a child process) ----------------------------------------------


def _urls(base: str, feeds: int) -> list[str]:
    return [base + feed_path(i) for i in range(feeds)]


async def _ours(args: argparse.Namespace, meter: Meter) -> dict[str, Any]:
    import cProfile
    import logging
    import pstats

    from monitor.backlog import Backlog
    from monitor.fetch import Fetcher
    from monitor.match import Matcher, load_rules, resolve_references
    from monitor.models import FeedConfig
    from monitor.parse import ParsePool
    from monitor.pipeline import PollContext, in_flight, poll_feed
    from monitor.store import Store

    # The daemon's logging (monitor.cli.logs): INFO, one line per event, on stderr.
    logging.basicConfig(
        level=logging.getLevelName(args.log_level),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
    )
    for noisy in ("httpx", "httpcore", "apscheduler", "apprise", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    feeds = [
        FeedConfig(name=f"feed-{i:05d}", url=url, interval=900.0)
        for i, url in enumerate(_urls(args.base, args.feeds))
    ]
    ruleset = load_rules(Path(args.rules))
    rules, errors = resolve_references(
        ruleset.rules, {f.name: f.tags for f in feeds}, {"terminal": ()}
    )
    if ruleset.errors or errors:
        raise SystemExit(f"the shipped rules have errors: {[*ruleset.errors, *errors]}")
    matcher = Matcher(rules)
    store = Store(Path(args.workdir) / "ours.db")
    store.record_rules(matcher.rules, datetime.now(UTC))
    fetcher = Fetcher(
        allow_private=["127.0.0.0/8"], per_host=args.concurrency, total=args.concurrency
    )
    pool = ParsePool(
        args.parse_workers,
        deadline=20.0,
        memory_limit=PARSE_MEMORY_LIMIT,
        nice=args.parse_nice,
    )
    ctx = PollContext(
        store=store,
        fetch=fetcher.fetch,
        parse=pool.parse,
        parse_matched=pool.parse_matched,
        default_channels=("terminal",),
        now=lambda: datetime.now(UTC),
        slots=in_flight(args.concurrency, args.parse_workers),
        baseline=not args.alert_first,
    )
    # The daemon clusters first polls' backlogs into stories between polls (Backlog),
    # counting its polls in flight.
    backlog = Backlog()
    stop = asyncio.Event()
    clustering = asyncio.ensure_future(
        backlog.run(lambda: ctx, lambda: matcher.policies, lambda: None, stop)
    )
    out: dict[str, Any] = {
        "config": f"per_host=total={args.concurrency}, parse workers={args.parse_workers}"
        f" at nice {args.parse_nice}",
        "rules": len(matcher.rules),
        "cycles": [],
    }
    polls_done = asyncio.Event()
    try:
        for number in (1, 2):
            profile = cProfile.Profile() if args.profile else None
            meter.start()
            if profile is not None:
                profile.enable()
            # The daemon's search indexer runs beside the polls, on its own thread and
            # connection, every 2 s (monitor.daemon.process: _index_search); the cycle
            # ends when everything stored is also searchable.
            indexing = asyncio.ensure_future(_index_until(store.path, polls_done))
            results = await asyncio.gather(
                *(backlog.polled(poll_feed(f, matcher, ctx)) for f in feeds)
            )
            polled = meter.lap()
            polls_done.set()
            await indexing
            while backlog.waiting.is_set():  # the backlog's stories, a step at a time
                await asyncio.sleep(0.02)
            polls_done.clear()
            if profile is not None:
                profile.disable()
            workers = {p.pid for p in pool.processes if p.pid is not None}
            measured = meter.stop(workers)
            measured["settled"], measured["settled_cpu"] = measured["wall"], measured["cpu"]
            measured.update(polled)
            outcomes = Counter(r.outcome for r in results)
            errors_seen = Counter(r.error for r in results if r.error)
            measured["check"] = {
                "outcomes": dict(outcomes),
                "new": sum(r.new_articles for r in results),
                "hits": sum(r.hits for r in results),
                "errors": dict(errors_seen.most_common(3)),
            }
            measured["pool_peak_rss"] = pool.stats.peak_rss
            if profile is not None:
                text = io.StringIO()
                pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(25)
                measured["profile"] = text.getvalue()
                # The whole profile too, for pstats (cumulative times, callers).
                profile.dump_stats(Path(args.workdir) / f"ours-cycle{number}.prof")
            out["cycles"].append(measured)
            out["cycles"][-1]["server"] = server_stats(args.base)
    finally:
        stop.set()
        clustering.cancel()
        await asyncio.gather(clustering, return_exceptions=True)
        await asyncio.to_thread(pool.close)
        await fetcher.aclose()
        store.close()
    return out


async def _index_until(path: Path, polls_done: asyncio.Event) -> None:
    """What the daemon's search index job does (monitor.daemon.indexer.SearchIndexer,
    every INDEX_EVERY seconds), until the polls are done and the index has caught up."""
    from monitor.daemon.indexer import INDEX_EVERY, SearchIndexer

    indexer = SearchIndexer(path)
    try:
        while True:
            done = polls_done.is_set()
            await indexer.catch_up()
            if done:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(polls_done.wait(), INDEX_EVERY)
    finally:
        await indexer.close()


def _reader(args: argparse.Namespace, meter: Meter) -> dict[str, Any]:
    from reader import make_reader

    reader = make_reader(str(Path(args.workdir) / "reader.sqlite"))
    for url in _urls(args.base, args.feeds):
        reader.add_feed(url)
    out: dict[str, Any] = {
        "config": f"update_feeds(workers={args.reader_workers}, scheduled=False)",
        "cycles": [],
    }
    for _ in (1, 2):
        meter.start()
        reader.update_feeds(workers=args.reader_workers, scheduled=False)
        measured = meter.stop()
        broken = [f for f in reader.get_feeds() if f.last_exception]
        measured["check"] = {
            "entries": reader.get_entry_counts().total,
            "broken": len(broken),
            "errors": [str(f.last_exception.value_str)[:100] for f in broken[:3]],
        }
        measured["server"] = server_stats(args.base)
        out["cycles"].append(measured)
    reader.close()
    return out


async def _httpx(args: argparse.Namespace, meter: Meter, parse: bool) -> dict[str, Any]:
    import httpx

    feedparser: Any = None
    if parse:
        import feedparser

    urls = _urls(args.base, args.feeds)
    etags: dict[str, str] = {}
    statuses: Counter[int] = Counter()
    entries = 0
    # A semaphore as well as the pool limit, as the Fetcher has: httpcore's pool scans
    # its whole queue of waiting requests on every release, quadratic with 10,000 queued.
    gate = asyncio.Semaphore(args.concurrency)

    async def one(client: httpx.AsyncClient, url: str) -> None:
        nonlocal entries
        headers = {"If-None-Match": etags[url]} if url in etags else {}
        async with gate:
            response = await client.get(url, headers=headers)
        statuses[response.status_code] += 1
        if response.status_code == 200:
            etags[url] = response.headers["ETag"]
            if feedparser is not None:
                entries += len(feedparser.parse(io.BytesIO(response.content)).entries)

    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=None)
    out: dict[str, Any] = {"config": f"AsyncClient, {args.concurrency} at once", "cycles": []}
    async with httpx.AsyncClient(limits=limits, timeout=60.0) as client:
        for _ in (1, 2):
            statuses.clear()
            entries = 0
            meter.start()
            await asyncio.gather(*(one(client, url) for url in urls))
            measured = meter.stop()
            measured["check"] = {"statuses": dict(statuses), "entries": entries}
            measured["server"] = server_stats(args.base)
            out["cycles"].append(measured)
    return out


def child(args: argparse.Namespace) -> None:
    """Run one contender's two cycles; print its measurements as one JSON line."""
    meter = Meter(args.server_pid)
    began = time.perf_counter()
    server_stats(args.base)  # reset the counters (and fail early if there is no server)
    if args.child == "ours":
        out = asyncio.run(_ours(args, meter))
    elif args.child == "reader":
        out = _reader(args, meter)
    else:
        out = asyncio.run(_httpx(args, meter, parse=args.child == "httpx+feedparser"))
    out["total_seconds"] = time.perf_counter() - began
    out["maxrss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print("RESULT " + json.dumps(out), flush=True)


# --- the parent: server, children, table ---------------------------------------------------


def ensure_reader_venv(python: str) -> None:
    if Path(python).exists():
        return
    venv = Path(python).parent.parent
    print(f"creating {venv} for reader (pip install reader sgmllib3k)...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", "reader", "sgmllib3k"], check=True
    )


@dataclass
class Server:
    process: subprocess.Popen[str]
    base: str
    total_bytes: int

    @classmethod
    def start(cls, feeds: int, items: int, use_gzip: bool) -> Server:
        command = [sys.executable, __file__, "--serve", "--feeds", str(feeds)]
        command += ["--items", str(items)] + (["--gzip"] if use_gzip else [])
        process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert process.stdout is not None
        line = process.stdout.readline().split()
        if not line or line[0] != "READY":
            process.kill()
            raise SystemExit("the feed server did not start")
        return cls(process, f"http://127.0.0.1:{line[1]}", int(line[2]))

    def stop(self) -> None:
        stop_process(self.process)


def stop_process(process: subprocess.Popen[Any]) -> None:
    """SIGTERM, and SIGKILL if it has not exited 10 s later."""
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def run_child(
    name: str, args: argparse.Namespace, server: Server, workdir: Path, *, profile: bool = False
) -> dict[str, Any]:
    python = args.reader_python if name == "reader" else sys.executable
    command = [python, __file__, "--child", name, "--base", server.base]
    command += ["--server-pid", str(server.process.pid), "--workdir", str(workdir)]
    command += ["--feeds", str(args.feeds), "--concurrency", str(args.concurrency)]
    command += ["--parse-workers", str(args.parse_workers), "--log-level", args.log_level]
    command += ["--parse-nice", str(args.parse_nice)]
    command += ["--alert-first"] if args.alert_first else []
    command += ["--reader-workers", str(args.reader_workers), "--rules", args.rules]
    command += ["--profile"] if profile else []
    log = workdir / f"{name.replace('+', '-')}{'-profile' if profile else ''}.stderr"
    with open(log, "w") as stderr:
        done = subprocess.run(
            command,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            cwd=REPO,
            timeout=args.timeout,
        )
    lines = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        tail = log.read_text(errors="replace")[-3000:]
        raise SystemExit(f"{name} failed (exit {done.returncode}); stderr ends:\n{tail}")
    result: dict[str, Any] = json.loads(lines[-1][len("RESULT ") :])
    with open(log, "rb") as f:
        result["log_lines"] = sum(1 for _ in f)
    return result


def _mib(n: float | None) -> str:
    return "-" if n is None else f"{n / MiB:.0f}"


def _label(name: str, result: dict[str, Any]) -> str:
    return f"{name} ({result['config']})"


def _check_text(name: str, cycle: dict[str, Any]) -> str:
    check, server = cycle["check"], cycle.get("server", {})
    served = f"{server.get('200', 0)}x200 {server.get('304', 0)}x304 "
    served += f"{server.get('connections', 0)} conn"
    if name == "ours":
        outcomes = ",".join(f"{k}={v}" for k, v in sorted(check["outcomes"].items()))
        text = f"{outcomes} new={check['new']} hits={check['hits']}"
        if check["errors"]:
            text += f" errors={check['errors']}"
    elif name == "reader":
        text = f"entries={check['entries']} broken={check['broken']}"
        if check["errors"]:
            text += f" errors={check['errors']}"
    else:
        text = " ".join(f"{k}:{v}" for k, v in sorted(check["statuses"].items()))
        if name == "httpx+feedparser":
            text += f" entries={check['entries']}"
    return f"{text}; server {served}"


def _median_cycle(runs: list[dict[str, Any]], index: int) -> dict[str, Any]:
    cycles = [r["cycles"][index] for r in runs]
    out = dict(cycles[-1])
    for key in ("wall", "cpu", "cpu_main", "cpu_children", "server_cpu", "other_cpu"):
        out[key] = statistics.median(c[key] for c in cycles)
    # Ours goes on after its polls (search index, stories of backlogs); the others do not.
    out["settled"] = statistics.median(c.get("settled", c["wall"]) for c in cycles)
    out["settled_cpu"] = statistics.median(c.get("settled_cpu", c["cpu"]) for c in cycles)
    peaks = [c["peak_rss"] for c in cycles if c["peak_rss"] is not None]
    out["peak_rss"] = max(peaks) if peaks else None
    out["maxrss"] = max(c["maxrss"] for c in cycles)
    return out


def _ratio(slow: list[dict[str, Any]], fast: list[dict[str, Any]], index: int, key: str) -> float:
    """Median over rounds of slow/fast (each round's pair ran back to back)."""
    return statistics.median(
        s["cycles"][index][key] / f["cycles"][index][key] for s, f in zip(slow, fast, strict=False)
    )


def code_state() -> str:
    """The commit measured, and whether monitor/ or rules/ differ from it."""
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "monitor", "rules"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        return "code: not a git checkout"
    changed = [line[3:] for line in dirty if line.strip()]
    return f"code: {head}" + (f" + uncommitted {', '.join(changed)}" if changed else "")


def report(
    args: argparse.Namespace,
    server: Server,
    results: dict[str, list[dict[str, Any]]],
    started_on: str,
):
    per_feed = server.total_bytes / args.feeds
    print()
    print(
        f"poll cycle, {args.feeds:,} feeds x {args.items} items "
        f"({per_feed / 1000:.1f} kB a feed, {server.total_bytes / MiB:.0f} MiB in all"
        f"{', served gzipped' if args.gzip else ''}), {os.cpu_count()} CPUs, "
        f"Python {sys.version.split()[0]}, {args.rounds} round(s): median wall/CPU"
    )
    ended_on = code_state()
    print(f"{started_on}; rules from {args.rules}")
    if ended_on != started_on:
        print(f"WARNING: the code changed during the run; now {ended_on}")
    header = (
        f"{'contender':<18} {'cycle':<9} {'wall s':>7} {'CPU s':>7} {'main':>6} "
        f"{'kids':>6} {'settled':>13} "
        f"{'srv':>5} {'other':>6} {'RSS MiB':>7} {'kids MiB':>15}  check"
    )
    print(header)
    print("-" * len(header))
    for name, runs in results.items():
        for index, title in enumerate(("1st 200", "2nd 304")):
            cycle = _median_cycle(runs, index)
            workers = [c for c in cycle["children"] if c["role"] == "worker"]
            others = [c for c in cycle["children"] if c["role"] != "worker"]
            kids = "-"
            if workers:
                kids = "w " + "/".join(_mib(c["VmHWM"]) for c in workers)
                if others:
                    kids += " +" + "/".join(_mib(c["VmHWM"]) for c in others)
            print(
                f"{name:<18} {title:<9} {cycle['wall']:>7.2f} {cycle['cpu']:>7.2f} "
                f"{cycle['cpu_main']:>6.2f} {cycle['cpu_children']:>6.2f} "
                f"{cycle['settled']:>6.2f}/{cycle['settled_cpu']:>6.2f} "
                f"{cycle['server_cpu']:>5.2f} {cycle['other_cpu']:>6.2f} "
                f"{_mib(cycle['peak_rss']):>7} {kids:>15}  "
                f"{_check_text(name, cycle)}"
            )
    print(
        "wall, CPU: until every poll is done (fetched, parsed, matched, stored); "
        "CPU = main + kids (the contender's descendants: forkserver and parse workers);\n"
        "settled = wall/CPU until ours has also made every stored article searchable and "
        "put every first poll's backlog in its stories (others: their wall/CPU);\n"
        "srv = the feed server's CPU; other = CPU the rest of the machine used meanwhile "
        "(noise: high means the times are suspect);\nRSS = the contender's peak RSS in that "
        "cycle (VmHWM reset before it); kids = peak RSS of each parse worker (w) and the "
        "forkserver (+)."
    )
    for name, runs in results.items():
        life = max(r["maxrss"] for r in runs)
        print(
            f"  {_label(name, runs[-1])}: lifetime peak RSS (ru_maxrss) {_mib(life)} MiB, "
            f"{runs[-1]['log_lines']} log lines, child ran {runs[-1]['total_seconds']:.1f}s"
        )
    return check_targets(args, results)


def check_targets(args: argparse.Namespace, results: dict[str, list[dict[str, Any]]]) -> bool:
    print("\ntargets:")
    ok = True
    ours = results.get("ours")
    reader = results.get("reader")
    if ours and reader:
        first = _ratio(reader, ours, 0, "wall")
        second = _ratio(reader, ours, 1, "wall")
        good = first >= FIRST_CYCLE_SPEEDUP
        ok &= good
        print(
            f"  [{'PASS' if good else 'FAIL'}] first cycle at least {FIRST_CYCLE_SPEEDUP:g}x "
            f"faster than reader: reader/ours wall = {first:.2f}x"
        )
        good = second >= 1.0
        ok &= good
        print(
            f"  [{'PASS' if good else 'FAIL'}] 304 cycle no slower than reader: "
            f"reader/ours wall = {second:.2f}x"
        )
        cpu1 = _ratio(reader, ours, 0, "cpu")
        cpu2 = _ratio(reader, ours, 1, "cpu")
        print(f"  (for information) reader/ours CPU = {cpu1:.2f}x first, {cpu2:.2f}x 304")
    elif ours:
        print("  (reader not run: no speed targets checked)")
    if ours:
        life = max(r["maxrss"] for r in ours)
        workers = [
            c
            for r in ours
            for cycle in r["cycles"]
            for c in cycle["children"]
            if c["role"] == "worker"
        ]
        worst_rss = max((c["VmHWM"] for c in workers), default=0)
        worst_as = max((c["VmPeak"] for c in workers), default=0)
        good = worst_as < PARSE_MEMORY_LIMIT
        ok &= good
        print(
            f"  [{'PASS' if good else 'FAIL'}] every parse worker under its cap "
            f"({_mib(PARSE_MEMORY_LIMIT)} MiB address space, RLIMIT_AS): peak VmPeak "
            f"{_mib(worst_as)} MiB, peak RSS {_mib(worst_rss)} MiB"
        )
        if args.feeds >= MEMORY_TARGET_FEEDS:
            good = life < MEMORY_TARGET
            ok &= good
            print(
                f"  [{'PASS' if good else 'FAIL'}] daemon process under "
                f"{_mib(MEMORY_TARGET)} MiB peak RSS at {args.feeds:,} feeds: "
                f"{_mib(life)} MiB (ru_maxrss)"
            )
        else:
            print(
                f"  (memory target is for {MEMORY_TARGET_FEEDS:,} feeds: "
                f"here {_mib(life)} MiB peak RSS)"
            )
    return ok


def parent(args: argparse.Namespace) -> int:
    names = [n.strip() for n in args.contenders.split(",") if n.strip()]
    unknown = set(names) - set(CONTENDERS)
    if unknown:
        raise SystemExit(f"unknown contenders {sorted(unknown)}; known: {', '.join(CONTENDERS)}")
    if args.profile and "ours" not in names:
        names.insert(0, "ours")
    if "reader" in names:
        ensure_reader_venv(args.reader_python)
    started_on = code_state()
    workdir = Path(tempfile.mkdtemp(prefix="poll-bench-"))
    began = time.perf_counter()
    print(f"generating {args.feeds:,} feeds of {args.items} items...", flush=True)
    server = Server.start(args.feeds, args.items, args.gzip)
    print(f"serving on {server.base} ({time.perf_counter() - began:.1f}s)", flush=True)
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    profiled: dict[str, Any] | None = None
    try:
        for round_ in range(args.rounds):
            # Alternate the order, so a slow phase of the machine hits each one alike.
            order = names if round_ % 2 == 0 else names[::-1]
            for name in order:
                run_dir = workdir / f"{name.replace('+', '-')}-{round_}"
                run_dir.mkdir()
                print(f"round {round_ + 1}: {name}...", end=" ", flush=True)
                result = run_child(name, args, server, run_dir)
                results[name].append(result)
                walls = ", ".join(f"{c['wall']:.2f}s" for c in result["cycles"])
                print(f"cycles {walls}", flush=True)
                if not args.keep:
                    shutil.rmtree(run_dir, ignore_errors=True)
        if args.profile:
            run_dir = workdir / "profile"
            run_dir.mkdir()
            print("profiling ours (one more run, under cProfile)...", flush=True)
            profiled = run_child("ours", args, server, run_dir, profile=True)
    finally:
        server.stop()
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    ok = report(args, server, results, started_on)
    if profiled is not None:
        for index, title in enumerate(("first cycle (200s)", "second cycle (304s)")):
            cycle = profiled["cycles"][index]
            print(
                f"\ncProfile of our {title}, main process only, {cycle['wall']:.2f}s wall under "
                f"the profiler (workers: {cycle['cpu_children']:.2f}s CPU):"
            )
            print(cycle["profile"].rstrip())
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}))
    print(f"\nall targets met: {'yes' if ok else 'NO'} ({time.perf_counter() - began:.0f}s)")
    return 0 if ok else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--feeds", type=int, default=1000, help="feeds to serve and poll")
    parser.add_argument("--items", type=int, default=50, help="items per feed")
    parser.add_argument(
        "--contenders", default=",".join(CONTENDERS), help="comma-separated, in run order"
    )
    parser.add_argument("--rounds", type=int, default=1, help="runs of each contender")
    parser.add_argument(
        "--concurrency", type=int, default=20, help="fetches at once (the daemon's fetch.total)"
    )
    parser.add_argument("--parse-workers", type=int, default=2, help="ParsePool workers")
    parser.add_argument(
        "--parse-nice",
        type=int,
        default=PARSE_NICE,
        help="the workers' nice increment (the daemon's parse.nice; 0: none)",
    )
    parser.add_argument(
        "--alert-first",
        action="store_true",
        help="our first poll of a feed alerts its items (baseline: false) instead of "
        "storing them as a baseline (the daemon's default)",
    )
    parser.add_argument("--reader-workers", type=int, default=1, help="update_feeds workers")
    parser.add_argument("--reader-python", default=DEFAULT_READER_PYTHON)
    parser.add_argument("--rules", default=str(REPO / "rules"), help="our rules directory")
    parser.add_argument("--gzip", action="store_true", help="serve gzip to clients that ask")
    parser.add_argument("--log-level", default="INFO", help="our daemon's log level")
    parser.add_argument("--profile", action="store_true", help="cProfile our cycles too")
    parser.add_argument("--json", help="write every measurement to this file")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--timeout", type=float, default=3600.0, help="per child, seconds")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child", choices=CONTENDERS, help=argparse.SUPPRESS)
    parser.add_argument("--base", help=argparse.SUPPRESS)
    parser.add_argument("--server-pid", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.feeds, args.items, args.gzip)
    elif args.child:
        child(args)
    else:
        sys.exit(parent(args))


if __name__ == "__main__":
    main()
