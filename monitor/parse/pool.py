"""The parser in isolated worker processes, so that a hostile or pathological feed can
cost the daemon one feed's poll, never its memory or its event loop.

Design: a hand-rolled pool of ``multiprocessing.Process`` workers, each with its own
``Pipe``. ``concurrent.futures.ProcessPoolExecutor`` is not used because one worker
dying marks the whole executor broken and fails every pending future; here a dead
worker costs exactly the parse it was running. Workers are started with the
"forkserver" method: a fresh single-threaded server process, with feedparser
preloaded, forks each worker, so no copy of the daemon's threads, event loop, sockets
or SQLite handles ever exists in a worker, and a new worker answers its first parse
in about 13 ms (spawn: about 90 ms, a new interpreter importing feedparser; the first
forkserver worker of a process: 130-230 ms, starting the server). "spawn" where
forkserver is not available. A warm worker adds about 1 ms (4-6 %) to the 22 ms parse
of a 50-item feed (``benchmarks/parse_bench.py``). A worker's resident memory is
25-60 MiB, mostly shared with the forkserver (which also preloads the program's main
module, as forkserver does by default, so that workers do not import it each).

Each worker caps its own memory, CPU time and core dumps (:mod:`monitor.parse.worker`).
The parent enforces the wall-clock deadline: a parse that has not answered in
``deadline`` seconds gets its worker SIGKILLed; a worker that died is detected by
end-of-file on its pipe. Either way the worker is replaced and :meth:`ParsePool.parse`
raises :class:`FeedError` saying what happened; parses on other workers never notice.

The daemon runs its workers at a lower CPU priority (``nice``, ``parse.nice``): when
every core is busy (a first poll of many feeds), the loop that stores and alerts is
what everything waits for, and a worker preempting it only makes the parsed feeds
queue. In the 1,000-feed benchmark, nice 10 made the first cycle 10-15% shorter.

The pipe exchange of one parse is blocking, so it runs on a thread of the pool's own
``ThreadPoolExecutor`` with exactly ``workers`` threads: at most ``workers`` parses
run at once and the rest wait in that executor's queue; the event loop never blocks,
not even while 15 MB of feed are written to a pipe. Workers are started lazily, on the
first parses. Articles come back as pickles of the frozen dataclasses; a
:class:`FeedError` comes back as its message (exceptions with extra constructor
arguments do not survive pickling).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn

from monitor.errors import FeedError
from monitor.models import Article, Matched
from monitor.parse.feed import parse_feed
from monitor.parse.worker import EXIT_OUT_OF_MEMORY, ParseTarget, _Matching, _worker_main
from monitor.text import mask_url

if TYPE_CHECKING:  # a worker gets its Matcher pickled; this module never builds one
    from monitor.match import Matcher

# The package's name, not this module's: log lines are filtered and read by it, and it
# was the parser's name before the parser became a package.
log = logging.getLogger("monitor.parse")

#: CPU seconds a parse may use beyond the deadline before the kernel stops it.
_CPU_MARGIN = 2


def default_context() -> BaseContext:
    """forkserver (with feedparser preloaded in the server) where available, else spawn."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        # '__main__' is forkserver's default, kept so workers do not each re-import the
        # program's main module; monitor.parse brings feedparser (and every module a
        # worker runs), monitor.match what an unpickled Matcher needs. No effect once the
        # process's forkserver is running (it is shared by every forkserver user).
        context.set_forkserver_preload(["__main__", "monitor.parse", "monitor.match.matcher"])
        return context
    return multiprocessing.get_context("spawn")


@dataclass(eq=False)
class _Worker:
    process: BaseProcess
    conn: Connection
    parses: int = 0
    #: The token of the matcher this worker was last sent.
    matcher: int | None = None


@dataclass(eq=False)
class _Job:
    #: The worker running the job, once it has one.
    worker: _Worker | None = None
    #: Nobody waits for the result any more (the awaiting task was cancelled).
    abandoned: bool = False


@dataclass
class PoolStats:
    """Counters for logs and tests."""

    started: int = 0
    parses: int = 0
    timeouts: int = 0
    out_of_memory: int = 0
    crashes: int = 0
    #: Highest peak resident set size any worker reported, in bytes.
    peak_rss: int = 0
    #: Seconds the last ``Process.start()`` took (forkserver: the worker is then ready;
    #: spawn: it still has to import feedparser).
    last_start: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class ParsePool:
    """:func:`parse_feed` in isolated worker processes with a memory cap and a deadline.

    ``workers`` parses run at once (the rest queue); ``deadline`` is wall-clock seconds
    per parse; ``memory_limit`` bytes of address space per worker (``None``: no cap);
    ``nice``: how much lower the workers' CPU priority is than this process's.
    ``target`` replaces :func:`parse_feed` (tests); it must be importable by name.
    Usable as a context manager; :meth:`close` ends every worker (an unclosed pool can
    hold up interpreter exit by up to ``deadline`` seconds while a parse is running).
    """

    def __init__(
        self,
        workers: int = os.cpu_count() or 1,
        *,
        deadline: float = 20.0,
        memory_limit: int | None = 512 * 2**20,
        nice: int = 0,
        target: ParseTarget = parse_feed,
        context: BaseContext | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        if not deadline > 0:
            raise ValueError("deadline must be positive")
        self.workers = workers
        self.deadline = deadline
        self.memory_limit = memory_limit
        self.nice = nice
        self.stats = PoolStats()
        self._target = target
        self._context = context or default_context()
        self._cpu_budget = math.ceil(deadline) + _CPU_MARGIN
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._closed = False
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="parse-pool")

    # -- public API

    async def parse(
        self, feed: str, url: str, content: bytes, headers: Mapping[str, str]
    ) -> list[Article]:
        """``parse_feed(feed, url, content, headers)`` in a worker; :class:`FeedError` if
        the feed is not one, or if its parse timed out, ran out of memory or crashed."""
        return await self._submit(feed, url, content, headers)  # type: ignore[return-value]

    async def parse_matched(
        self,
        feed: str,
        url: str,
        content: bytes,
        headers: Mapping[str, str],
        matcher: Matcher,
        known: frozenset[str] = frozenset(),
    ) -> Matched:
        """:meth:`parse`, and each article matched against ``matcher`` in the worker too,
        but for those whose uid is in ``known`` (stored already: their hits are None).
        A worker is sent the matcher once (pickled as its rules, and compiled there) and
        keeps it until it is sent another: matching moves off the daemon's loop at the
        cost of one compile per worker and ruleset."""
        return await self._submit(  # type: ignore[return-value]
            feed, url, content, headers, (matcher, known)
        )

    async def _submit(
        self,
        feed: str,
        url: str,
        content: bytes,
        headers: Mapping[str, str],
        matching: tuple[Matcher, frozenset[str]] | None = None,
    ) -> list[Article] | Matched:
        job = _Job()
        with self._lock:
            if self._closed:
                raise FeedError(mask_url(url), "the parser pool is closed (shutting down)")
            future = self._executor.submit(
                self._run, job, (feed, url, content, dict(headers)), matching
            )
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            self._abandon(job)
            raise

    def close(self) -> None:
        """End every worker: idle ones exit on end-of-file, busy ones are killed (their
        parses raise FeedError). Waits for them; idempotent."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            busy = list(self._busy)
        for worker in busy:
            _kill(worker)  # its thread sees end-of-file and cleans up
        for worker in idle:
            _stop(worker)
        self._executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> ParsePool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def busy(self) -> int:
        """How many workers are running a parse right now."""
        with self._lock:
            return len(self._busy)

    @property
    def processes(self) -> list[BaseProcess]:
        """The live worker processes (for tests and status)."""
        with self._lock:
            return [w.process for w in (*self._idle, *self._busy)]

    # -- internals (run on the pool's threads)

    def _start_worker(self) -> _Worker:
        began = time.perf_counter()
        parent, child = self._context.Pipe(duplex=True)
        process = self._context.Process(  # type: ignore[attr-defined]
            target=_worker_main,
            args=(child, self._target, self.memory_limit, self._cpu_budget, self.nice),
            name="news-monitor-parse",
            daemon=True,
        )
        try:
            process.start()
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        with self.stats._lock:
            self.stats.started += 1
            self.stats.last_start = time.perf_counter() - began
        log.debug("parse_worker_started pid=%s seconds=%.3f", process.pid, self.stats.last_start)
        return _Worker(process, parent)

    def _acquire(self, job: _Job, shown: str) -> _Worker:
        lost: list[_Worker] = []
        try:
            with self._lock:
                if self._closed:
                    raise FeedError(shown, "the parser pool is closed (shutting down)")
                while self._idle:
                    worker = self._idle.pop()
                    if not worker.process.is_alive():
                        lost.append(worker)  # died while idle: killed from outside
                        continue
                    self._busy.add(worker)
                    job.worker = worker
                    return worker
        finally:
            for worker in lost:
                log.warning(
                    "parse_worker_lost pid=%s exit=%s (died while idle; replaced)",
                    worker.process.pid,
                    _reap(worker),
                )
                _stop(worker)
        try:
            worker = self._start_worker()
        except OSError as exc:
            raise FeedError(shown, f"could not start a parser process ({exc})") from exc
        with self._lock:
            if self._closed:
                _stop(worker)
                raise FeedError(shown, "the parser pool is closed (shutting down)")
            self._busy.add(worker)
            job.worker = worker
            return worker

    def _release(self, worker: _Worker, keep: bool) -> None:
        with self._lock:
            self._busy.discard(worker)
            if keep and not self._closed:
                self._idle.append(worker)
                return
        _stop(worker)

    def _abandon(self, job: _Job) -> None:
        with self._lock:
            job.abandoned = True
            worker = job.worker
        if worker is not None:
            _kill(worker)  # the thread waiting on it sees end-of-file at once

    def _run(
        self,
        job: _Job,
        request: tuple[str, str, bytes, dict[str, str]],
        matching: tuple[Matcher, frozenset[str]] | None,
    ) -> list[Article] | Matched:
        shown = mask_url(request[1])
        worker = self._acquire(job, shown)
        if job.abandoned:
            self._release(worker, keep=True)
            raise FeedError(shown, "the parse was cancelled")
        limit = time.monotonic() + self.deadline
        reply: Any = None
        timed_out = False
        sent: _Matching | None = None
        if matching is not None:
            matcher, known = matching
            token = matcher.token
            sent = (token, None if worker.matcher == token else matcher, known)
        try:
            worker.conn.send((*request, sent))
            del request
            if worker.conn.poll(max(0.0, limit - time.monotonic())):
                reply = worker.conn.recv()
            else:
                timed_out = True
        except (EOFError, OSError):
            reply = None  # the worker died
        except Exception as exc:  # a reply that does not unpickle
            log.error("parse_worker_bad_reply url=%s error=%r", shown, exc)
            reply = None
        except BaseException:
            _kill(worker)
            self._release(worker, keep=False)
            raise
        if isinstance(reply, tuple) and len(reply) == 3:
            return self._reply(worker, reply, sent, shown)
        self._no_reply(worker, job, timed_out, shown)

    def _reply(
        self, worker: _Worker, reply: tuple[Any, Any, Any], sent: _Matching | None, shown: str
    ) -> list[Article] | Matched:
        """The worker answered: keep it, and return what it parsed or raise its FeedError."""
        status, value, rss = reply
        worker.parses += 1
        if sent is not None and status != "error":
            worker.matcher = sent[0]  # it has it now
        with self.stats._lock:
            self.stats.parses += 1
            self.stats.peak_rss = max(self.stats.peak_rss, int(rss))
        self._release(worker, keep=True)
        if status == "ok":
            return list(value)
        if status == "feed-error":
            raise FeedError(shown, str(value))
        log.error("parse_failed url=%s\n%s", shown, value)
        last = str(value).strip().splitlines()[-1:] or ["unknown error"]
        raise FeedError(shown, f"the parser failed ({last[0][:300]}); this is a bug")

    def _no_reply(self, worker: _Worker, job: _Job, timed_out: bool, shown: str) -> NoReturn:
        """The worker timed out or died: end it, start another, raise why."""
        killed = timed_out or job.abandoned or self._closed
        if killed:
            _kill(worker)
        exitcode = _reap(worker)
        self._release(worker, keep=False)
        self._replace()
        if job.abandoned or (self._closed and not timed_out):
            raise FeedError(shown, "the parse was cancelled (shutting down)")
        message = self._failure(timed_out, exitcode)
        log.warning("parse_worker_replaced url=%s reason=%r", shown, message)
        raise FeedError(shown, message)

    def _failure(self, timed_out: bool, exitcode: int | None) -> str:
        with self.stats._lock:
            if timed_out:
                self.stats.timeouts += 1
                return f"parsing took longer than {self.deadline:g}s; the feed was skipped"
            if exitcode == EXIT_OUT_OF_MEMORY:
                self.stats.out_of_memory += 1
                limit = f" ({self.memory_limit // 2**20} MiB)" if self.memory_limit else ""
                return f"parsing ran out of memory{limit}; the feed was skipped"
            self.stats.crashes += 1
        if exitcode == -signal.SIGKILL:
            return (
                "the parser process was killed (most likely by the kernel, out of memory); "
                "the feed was skipped"
            )
        if exitcode == -signal.SIGXCPU:
            return f"parsing used more than {self._cpu_budget}s of CPU; the feed was skipped"
        if exitcode is not None and exitcode < 0:
            name = signal.Signals(-exitcode).name
            return f"the parser process crashed (signal {name}); the feed was skipped"
        return f"the parser process crashed (exit status {exitcode}); the feed was skipped"

    def _replace(self) -> None:
        """Start a worker in place of one that was lost, so the next parse finds it warm."""
        with self._lock:
            if self._closed or len(self._idle) + len(self._busy) >= self.workers:
                return
        try:
            worker = self._start_worker()
        except OSError as exc:
            log.warning("parse_worker_start_failed error=%r (retried on the next parse)", exc)
            return
        with self._lock:
            if not self._closed and len(self._idle) + len(self._busy) < self.workers:
                self._idle.append(worker)
                return
        _stop(worker)


def _kill(worker: _Worker) -> None:
    # Already gone, or already closed: nothing to do.
    with contextlib.suppress(OSError, ValueError, AttributeError):
        worker.process.kill()


def _reap(worker: _Worker, timeout: float = 5.0) -> int | None:
    """Wait for a worker that died or was killed; its exit code."""
    try:
        worker.process.join(timeout)
        return worker.process.exitcode
    except (ValueError, AssertionError):
        return None


def _stop(worker: _Worker) -> None:
    """End a worker for good: close its pipe (it exits on end-of-file), kill it if it does
    not within a second, release its resources."""
    worker.conn.close()
    process = worker.process
    try:
        process.join(1.0)
        if process.exitcode is None:
            process.kill()
            process.join(5.0)
        process.close()
    except (ValueError, AssertionError):
        pass
