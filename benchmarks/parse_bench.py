"""What ParsePool costs: worker start-up, per-parse overhead against in-process
parse_feed, and a worker's memory. Run: ``.venv/bin/python benchmarks/parse_bench.py``."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from xml.sax.saxutils import escape

from monitor.parse import ParsePool, default_context, parse_feed

URL = "https://news.example.org/feed.xml"
HEADERS = {"content-type": "application/rss+xml"}


def feed(items: int, paragraphs: int = 8) -> bytes:
    start = datetime(2026, 3, 1, tzinfo=UTC)
    parts = [
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Wire</title>'
    ]
    for i in range(items):
        body = f"<p>Paragraph about troops near the border, talks in Geneva, item {i}.</p>"
        parts.append(
            f"<item><title>Story {i}: a headline of ordinary length</title>"
            f"<link>https://news.example.org/story/{i}</link><guid>wire-{i}</guid>"
            f"<description>{escape(body * paragraphs)}</description>"
            f"<pubDate>{format_datetime(start + timedelta(minutes=i), usegmt=True)}</pubDate>"
            "</item>"
        )
    parts.append("</channel></rss>")
    return "".join(parts).encode()


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM / VmSize of a process, in bytes (Linux)."""
    out = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "VmSize"):
                out[key] = int(value.split()[0]) * 1024
    return out


def mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


async def first_reply(context: multiprocessing.context.BaseContext, tiny: bytes) -> float:
    """Seconds from nothing to the first answer of a fresh one-worker pool."""
    with ParsePool(1, context=context) as pool:
        began = time.perf_counter()
        await pool.parse("bench", URL, tiny, HEADERS)
        return time.perf_counter() - began


async def main() -> None:
    tiny = feed(1, 1)
    fifty = feed(50)
    big = feed(3000)
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    print(f"feeds: 50 items = {len(fifty) / 1000:.0f} KB, 3000 items = {mib(len(big))}\n")

    # -- start-up: the first parse on a fresh pool (process start + imports + the parse)
    forkserver = default_context()
    cold = await first_reply(forkserver, tiny)  # also starts the forkserver (+ preload)
    warm = [await first_reply(forkserver, tiny) for _ in range(10)]
    spawn = [await first_reply(multiprocessing.get_context("spawn"), tiny) for _ in range(5)]
    print("worker start-up (fresh pool -> first answer of a 1-item feed):")
    rows = [
        ("forkserver, first in the process (server start + preload)", cold),
        ("forkserver, server running (median of 10)", statistics.median(warm)),
        ("spawn (median of 5)", statistics.median(spawn)),
    ]
    for label, seconds in rows:
        print(f"  {label:<60} {ms(seconds)}")

    # -- per-parse cost, 50 items, side by side: the three ways interleaved, round after
    # round, so that whatever else the machine does weighs on all three alike.
    rounds = 200
    in_process: list[float] = []
    threaded: list[float] = []
    pooled: list[float] = []
    with ParsePool(1) as pool:
        await pool.parse("bench", URL, fifty, HEADERS)  # start the worker
        for _ in range(rounds):
            began = time.perf_counter()
            parse_feed("bench", URL, fifty, HEADERS)
            in_process.append(time.perf_counter() - began)
            began = time.perf_counter()
            await asyncio.to_thread(parse_feed, "bench", URL, fifty, HEADERS)
            threaded.append(time.perf_counter() - began)
            began = time.perf_counter()
            articles = await pool.parse("bench", URL, fifty, HEADERS)
            pooled.append(time.perf_counter() - began)
        assert articles == parse_feed("bench", URL, fifty, HEADERS)
        [worker] = pool.processes
        assert worker.pid is not None
        after_fifty = proc_status(worker.pid)
        await pool.parse("bench", URL, big, HEADERS)
        after_big = proc_status(worker.pid)
        reported = pool.stats.peak_rss
    base, thread, pooled_median = (statistics.median(x) for x in (in_process, threaded, pooled))
    print(f"\nparse of a 50-item feed, median of {rounds} interleaved rounds:")
    print(f"  parse_feed in process:           {ms(base)}")
    print(f"  asyncio.to_thread(parse_feed):   {ms(thread)}  ({thread / base:.2f}x)")
    print(f"  ParsePool.parse (warm worker):   {ms(pooled_median)}  ({pooled_median / base:.2f}x)")
    print(f"  pool overhead per parse:         {ms(pooled_median - base)}")

    parent = proc_status(os.getpid())
    print("\nmemory:")
    print(
        f"  worker after 50-item parses:  RSS {mib(after_fifty['VmRSS'])}, "
        f"peak {mib(after_fifty['VmHWM'])}, address space {mib(after_fifty['VmSize'])}"
    )
    print(
        f"  worker after a 3000-item feed: RSS {mib(after_big['VmRSS'])}, "
        f"peak {mib(after_big['VmHWM'])} (ru_maxrss reported: {mib(reported)})"
    )
    print(f"  this (parent) process:         RSS {mib(parent['VmRSS'])}")


if __name__ == "__main__":
    asyncio.run(main())
