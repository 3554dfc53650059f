"""Alerts through our outbox to a local webhook, side by side with bare apprise and httpx.

    .venv/bin/python benchmarks/delivery_bench.py [--alerts 2000] [--rounds 3]
        [--rate 50] [--latency-articles 500] [--backlog 250] [--interval 5]
        [--profile] [--keep]

Everything runs on 127.0.0.1. The receiver is a small asyncio HTTP/1.1 server in a process
of its own (keep-alive, like any webhook behind a proxy); it answers every POST with 200
and notes ``time.perf_counter()`` the moment a request's whole body has arrived (on Linux
that clock is CLOCK_MONOTONIC, the same in every process; the run checks it), with the
body, which the parent reads afterwards. Its CPU time is shown per run.

1. **Throughput.** ``--alerts`` articles (poll_bench's corpus: each an event of its own),
   each with one hit routed to the channel ``hook`` (``json://127.0.0.1:PORT/hook``), are
   stored once with ``Store.save`` into a template database, which every round copies.
   Four contenders send the same alerts, interleaved over ``--rounds`` (the order
   alternates) with the daemon's INFO logging on (to a file):

   * ``ours``: the real ``deliver_due(store, channels, now, ...)`` on a real ``Store`` and a
     real ``Channel`` from ``build_channels``, called back to back until a call finds
     nothing due, which is how the daemon drains its outbox when it is woken often;
   * ``apprise``: ``apprise.Apprise().add(url)`` then ``notify(...)`` in a loop with the
     same titles and bodies (rendered once by ``message_for`` beforehand, so this
     contender pays no rendering);
   * ``httpx``: one ``httpx.Client``, POSTing the JSON document apprise builds for each of
     them (the receiver's bytes/request column shows they are the same size);
   * ``null``: ``ours`` with a channel whose send succeeds at once (the real channel's
     format and limits): what the outbox itself costs per alert, with no network.

   Reported: alerts/s and wall time (median and range over rounds), CPU per alert of this
   process (all threads) and of the receiver, connections the receiver saw, and the
   ratios ours/apprise and ours/httpx of each round's wall time (median and range), and
   ours' wall per alert minus apprise's next to the null channel's. A short table then
   times the outbox's own steps alone (reading due deliveries, rendering, ``mark_sent``)
   per alert, and the CPU of ours' event-loop thread (everything but the send).

2. **Latency, stored to accepted.** A producer stores ``--latency-articles`` articles, one
   ``Store.save`` each (one hit each), at ``--rate`` articles a second, on the event loop
   like the daemon's polls. ``ours``: the daemon's delivery loops (one for the channel, one
   for unknown channels, as ``DeliveryLoops._delivery_loop`` runs them) woken by an
   asyncio.Event set right after each save, else every ``--interval`` seconds (the daemon's
   ``delivery.interval``); ``apprise``: the same saves into a database of its own, each
   followed at once by ``notify`` of the alert (pre-rendered). The time of an alert is from
   ``time.perf_counter()`` right after ``Store.save`` returned (committed) to the receiver
   having the whole request; alerts are matched by the delivery id in the JSON body.

3. **Backlog** (``--backlog``, 0 skips it): that many alerts already pending when the
   daemon's delivery loop starts (a restart, or a channel back after an outage), and
   nothing wakes it: the wall time until the receiver has them all, and how many
   ``deliver_due`` passes it took.

``--profile`` adds one more ``ours`` throughput run under cProfile (sorted by cumulative
time, top 30; cProfile sees the event-loop thread only, so the sends show as the loop
waiting in ``epoll``). Internal mode: ``--serve`` (the receiver).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import logging
import math
import os
import pstats
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from itertools import chain, islice, pairwise
from itertools import count as count_up
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from poll_bench import (
    _story,
    code_state,
    cpu_seconds,
    machine_busy,
    serve_until_stopped,
    stop_process,
)

RULE = "bench-alert"
CHANNEL = "hook"
CONTENDERS = ("ours", "apprise", "httpx", "null")


# --- the receiver (its own process) --------------------------------------------------------


class _Receiver(asyncio.Protocol):
    """HTTP/1.1 with keep-alive and Content-Length bodies: all that apprise and httpx send."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state
        self.buffer = b""
        self.head: tuple[bytes, bytes, bool] | None = None  # method, path, keep-alive
        self.length = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.state["connections"] += 1

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        while True:
            if self.head is None:
                end = self.buffer.find(b"\r\n\r\n")
                if end < 0:
                    return
                lines = self.buffer[:end].split(b"\r\n")
                self.buffer = self.buffer[end + 4 :]
                parts = lines[0].split()
                headers = {}
                for raw in lines[1:]:
                    name, _, value = raw.partition(b":")
                    headers[name.strip().lower()] = value.strip().lower()
                keep = parts[-1] != b"HTTP/1.0" and headers.get(b"connection") != b"close"
                self.head = (parts[0], parts[1] if len(parts) > 1 else b"", keep)
                self.length = int(headers.get(b"content-length", b"0") or 0)
            if len(self.buffer) < self.length:
                return
            at = time.perf_counter()
            body, self.buffer = self.buffer[: self.length], self.buffer[self.length :]
            _, path, keep = self.head
            self.head = None
            if path == b"/__take":  # everything received since the last take, then reset
                answer = json.dumps(
                    {
                        "received": [
                            [t, b.decode("utf-8", "replace")] for t, b in self.state["got"]
                        ],
                        "connections": self.state["connections"],
                    }
                ).encode()
                self.state["got"] = []
                self.state["connections"] = 0
            elif path == b"/__count":
                answer = str(len(self.state["got"])).encode()
            elif path == b"/__clock":
                answer = repr(at).encode()
            else:
                self.state["got"].append((at, body))
                answer = b'{"ok": true}'
            self.transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                + str(len(answer)).encode()
                + b"\r\n\r\n"
                + answer
            )
            if not keep:
                self.transport.close()
                return


def serve() -> None:
    """Print ``READY port``; receive until SIGTERM or stdin closes."""
    state: dict[str, Any] = {"got": [], "connections": 0}

    serve_until_stopped(lambda: _Receiver(state), lambda port: f"READY {port}")


@dataclass
class Receiver:
    process: subprocess.Popen[str]
    port: int

    @classmethod
    def start(cls) -> Receiver:
        process = subprocess.Popen(
            [sys.executable, __file__, "--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        line = process.stdout.readline().split()
        if not line or line[0] != "READY":
            process.kill()
            raise SystemExit("the receiver did not start")
        return cls(process, int(line[1]))

    @property
    def url(self) -> str:
        """The channel's apprise URL."""
        return f"json://127.0.0.1:{self.port}/{CHANNEL}"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}/{CHANNEL}"

    def _get(self, path: str) -> bytes:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=b"")
        with urllib.request.urlopen(request, timeout=60) as response:
            return bytes(response.read())

    def take(self) -> tuple[list[tuple[float, str]], int]:
        """(perf_counter, body) of every request since the last take; connections made."""
        data = json.loads(self._get("/__take"))
        return [(t, b) for t, b in data["received"]], int(data["connections"])

    def count(self) -> int:
        return int(self._get("/__count"))

    def cpu(self) -> float:
        return cpu_seconds(self.process.pid, children=False)

    def check_clock(self) -> float:
        """The receiver's perf_counter must fall between ours before and after asking."""
        before = time.perf_counter()
        theirs = float(self._get("/__clock"))
        after = time.perf_counter()
        if not before <= theirs <= after:
            raise SystemExit(
                f"perf_counter differs between processes ({before} <= {theirs} <= {after} "
                "fails): the latency figures would be meaningless on this machine"
            )
        return after - before

    def stop(self) -> None:
        stop_process(self.process)


_DELIVERY_ID = re.compile(r"Delivery:?\s*#(\d+)")


def delivery_id(body: str) -> int | None:
    """The delivery id in a received apprise JSON document (the json format's ``id``; the
    ``Delivery #N`` footer of the other formats)."""
    try:
        message = json.loads(body)["message"]
        return int(json.loads(message)["id"])
    except (ValueError, KeyError, TypeError):
        found = _DELIVERY_ID.search(body)
        return int(found.group(1)) if found else None


# --- the alerts ----------------------------------------------------------------------------


def make_items(count: int, seed: str) -> list[tuple[Any, Any]]:
    return list(islice(iter_items(seed), count))


def iter_items(seed: str) -> Iterator[tuple[Any, Any]]:
    """(Article, (Hit,)) pairs: everyday news, each an event of its own, one hit each for
    the channel ``hook``. The articles carry their content hash and fingerprint, as the
    parse workers make them, so ``Store.save`` does what it does in the daemon."""
    from monitor.models import Article, Hit
    from monitor.stories import fingerprint
    from monitor.text import words, words_hash

    rnd = random.Random(seed)
    for index in count_up():
        title, paragraphs = _story(rnd, False)
        summary = "\n".join(paragraphs)
        outlet = rnd.randrange(300)
        parts = [words(title), words(summary)]
        article = Article(
            feed=f"feed-{outlet}",
            uid=f"{seed}-{index}",
            title=title,
            link=f"https://outlet{outlet}.example.org/story/{seed}/{index}",
            summary=summary,
            content_hash=words_hash(parts),
            fingerprint=fingerprint(chain.from_iterable(parts)),
        )
        lede = paragraphs[0].split()
        hit = Hit(
            rule=RULE,
            rule_version="1",
            severity="normal",
            terms=(lede[1].strip(",").lower(), "affected"),
            snippet=" ".join(lede[:30]),
            channels=(CHANNEL,),
        )
        yield article, (hit,)


def policies() -> dict[str, Any]:
    from monitor.models import AlertPolicy

    return {RULE: AlertPolicy()}


def utcnow() -> datetime:
    return datetime.now(UTC)


def settings_default(name: str) -> Any:
    from monitor.config import Settings

    return next(f.default for f in fields(Settings) if f.name == name)


def fill_template(path: Path, count: int, seed: str) -> tuple[int, float]:
    """A database with ``count`` pending alerts for ``hook``, stored the daemon's way (word
    rarity refreshed as the polls do); (articles stored, seconds)."""
    from monitor.backlog import refresh_vocabulary
    from monitor.store import Store
    from monitor.stories import Vocabulary

    store = Store(path)
    vocabulary = Vocabulary()
    rules = policies()
    began = time.perf_counter()
    items = iter_items(seed)
    queued = used = 0
    while queued < count:
        # Each article makes one alert at most (one that joins a story alerted already
        # makes none): never more than what is still missing in one call.
        batch = list(islice(items, min(50, count - queued)))
        used += len(batch)
        if used > 2 * count:
            raise SystemExit(f"only {queued} of {used} articles alerted: the corpus clusters")
        queued += len(store.save(batch, utcnow(), policies=rules, vocabulary=vocabulary))
        if vocabulary.stale(len(batch)):
            refresh_vocabulary(store, vocabulary)
    store.close()
    return used, time.perf_counter() - began


def copy_db(source: Path, target: Path) -> Path:
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{source}{suffix}").exists():
            shutil.copy(f"{source}{suffix}", f"{target}{suffix}")
    return target


def build_hook(url: str) -> Any:
    from monitor.deliver import build_channels
    from monitor.models import ChannelConfig

    channels, errors = build_channels((ChannelConfig(name=CHANNEL, url=url),))
    if errors:
        raise SystemExit(f"the channel cannot be built: {errors}")
    return channels


def render_all(path: Path, url: str) -> tuple[dict[int, Any], float, float]:
    """Every pending alert of a database as the channel shows it: (id -> Message, seconds
    reading them with due_deliveries, seconds rendering them with message_for)."""
    from monitor.deliver import message_for
    from monitor.store import Store

    channel = build_hook(url)[CHANNEL]
    store = Store(path)
    began = time.perf_counter()
    due = store.due_deliveries(utcnow(), limit=10**9, channels=[CHANNEL])
    read = time.perf_counter() - began
    rules = policies()
    began = time.perf_counter()
    messages = {d.id: message_for(d, channel, rules) for d in due}
    rendered = time.perf_counter() - began
    store.close()
    return messages, read, rendered


def payload(message: Any) -> bytes:
    """The document apprise's json:// plugin POSTs for a message."""
    document = {
        "version": "1.0",
        "title": message.title,
        "message": message.body,
        "attachments": [],
        "type": "info",
    }
    return json.dumps(document).encode()


# --- throughput ----------------------------------------------------------------------------


@dataclass
class Run:
    name: str
    wall: float
    cpu: float
    receiver_cpu: float
    other_cpu: float
    received: int
    connections: int
    body_bytes: float
    passes: int = 0
    #: CPU of the thread running the event loop (ours: deliver_due's own work).
    loop_cpu: float = 0.0
    notes: list[str] = field(default_factory=list)


class Measure:
    """Wall, this process's CPU (every thread), the receiver's, and the rest of the
    machine's."""

    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver

    def __enter__(self) -> Measure:
        self.machine0 = machine_busy()
        self.receiver0 = self.receiver.cpu()
        self.cpu0 = time.process_time()
        self.began = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.began
        self.cpu = time.process_time() - self.cpu0
        self.receiver_cpu = self.receiver.cpu() - self.receiver0
        machine = machine_busy() - self.machine0
        self.other = max(0.0, machine - self.cpu - self.receiver_cpu)


def check_received(
    name: str, receiver: Receiver, expected: Sequence[int], measure: Measure, passes: int = 0
) -> Run:
    got, connections = receiver.take()
    ids = [delivery_id(body) for _, body in got]
    notes = []
    if sorted(i for i in ids if i is not None) != sorted(expected):
        missing = len(set(expected) - set(ids))
        notes.append(f"received {len(got)} for {len(expected)} alerts ({missing} missing)")
    return Run(
        name,
        measure.wall,
        measure.cpu,
        measure.receiver_cpu,
        measure.other,
        len(got),
        connections,
        statistics.fmean(len(b.encode()) for _, b in got) if got else 0.0,
        passes,
        notes,
    )


async def drain(store: Any, channels: Any) -> tuple[int, int, int]:
    """deliver_due back to back until a call finds nothing due: (sent, failed, calls)."""
    from monitor.deliver import deliver_due

    rules = policies()
    sent = failed = calls = 0
    while True:
        done, bad = await deliver_due(
            store,
            channels,
            utcnow,
            policies=rules,
            retry_min=settings_default("retry_min"),
            retry_max=settings_default("retry_max"),
            max_age=settings_default("delivery_max_age"),
            only=(CHANNEL,),
        )
        calls += 1
        sent, failed = sent + done, failed + bad
        if done + bad == 0 or bad:
            return sent, failed, calls


class NullChannel:
    """The real channel's config, format and limits, with a send that succeeds at once:
    what the outbox costs with no network."""

    def __init__(self, real: Any) -> None:
        self.config, self.format, self.limits = real.config, real.format, real.limits

    def send(self, message: Any) -> bool:
        return True


def run_ours(
    template: Path,
    workdir: Path,
    receiver: Receiver,
    ids: Sequence[int],
    tag: str,
    *,
    null: bool = False,
) -> Run:
    from monitor.store import Store

    store = Store(copy_db(template, workdir / f"ours-{tag}.db"))
    channels = build_hook(receiver.url)
    if null:
        channels = {CHANNEL: NullChannel(channels[CHANNEL])}
    receiver.take()
    with Measure(receiver) as measure:
        loop_cpu = time.thread_time()
        sent, failed, calls = asyncio.run(drain(store, channels))
        loop_cpu = time.thread_time() - loop_cpu
    store.close()
    if null:
        run = Run(
            "null", measure.wall, measure.cpu, measure.receiver_cpu, measure.other, sent, 0, 0
        )
        run.passes = calls
    else:
        run = check_received("ours", receiver, ids, measure, calls)
    run.loop_cpu = loop_cpu
    if failed or sent != len(ids):
        run.notes.append(f"{sent} sent and {failed} failed of {len(ids)}")
    return run


def run_apprise(messages: dict[int, Any], receiver: Receiver) -> Run:
    import apprise

    receiver.take()
    with Measure(receiver) as measure:
        notifier = apprise.Apprise()
        notifier.add(receiver.url)
        failed = 0
        for message in messages.values():
            ok = notifier.notify(
                body=message.body,
                title=message.title,
                body_format=apprise.NotifyFormat(message.body_format),
            )
            failed += not ok
    run = check_received("apprise", receiver, list(messages), measure)
    if failed:
        run.notes.append(f"{failed} notify calls failed")
    return run


def run_httpx(bodies: Sequence[bytes], ids: Sequence[int], receiver: Receiver) -> Run:
    import httpx

    receiver.take()
    headers = {"Content-Type": "application/json", "User-Agent": "Apprise"}
    with Measure(receiver) as measure, httpx.Client(timeout=30.0) as client:
        for body in bodies:
            client.post(receiver.http, content=body, headers=headers).raise_for_status()
    return check_received("httpx", receiver, ids, measure)


def outbox_steps(template: Path, workdir: Path, url: str, count: int) -> dict[str, float]:
    """Seconds per alert of the outbox's own steps, with no network: reading the due
    deliveries 100 at a time (as deliver_due does), rendering, mark_sent."""
    from monitor.deliver import message_for
    from monitor.store import Store

    store = Store(copy_db(template, workdir / "steps.db"))
    channel = build_hook(url)[CHANNEL]
    rules = policies()
    now = utcnow()
    out = {"due_deliveries": 0.0, "message_for": 0.0, "mark_sent": 0.0, "other": 0.0}
    while True:
        began = time.perf_counter()
        store.mute_silenced(now)
        store.release_batches(now, channels=(CHANNEL,))
        out["other"] += time.perf_counter() - began
        began = time.perf_counter()
        due = store.due_deliveries(now, channels=(CHANNEL,))
        out["due_deliveries"] += time.perf_counter() - began
        if not due:
            break
        for delivery in due:
            began = time.perf_counter()
            message_for(delivery, channel, rules)
            out["message_for"] += time.perf_counter() - began
            began = time.perf_counter()
            store.mark_sent(delivery.id, now)
            out["mark_sent"] += time.perf_counter() - began
    store.close()
    return {k: v / count for k, v in out.items()}


def profile_ours(template: Path, workdir: Path, receiver: Receiver) -> str:
    from monitor.store import Store

    store = Store(copy_db(template, workdir / "ours-profile.db"))
    channels = build_hook(receiver.url)
    profile = cProfile.Profile()
    profile.enable()
    asyncio.run(drain(store, channels))
    profile.disable()
    store.close()
    receiver.take()
    text = io.StringIO()
    pstats.Stats(profile, stream=text).sort_stats("cumulative").print_stats(30)
    return text.getvalue()


# --- latency -------------------------------------------------------------------------------


@dataclass
class Latency:
    name: str
    latencies: list[float]
    expected: int
    cpu: float
    wall: float
    passes: int = 0
    notes: list[str] = field(default_factory=list)


def _match(
    name: str, saved: dict[int, float], receiver: Receiver, measure: Measure, passes: int
) -> Latency:
    got, _ = receiver.take()
    latencies, notes = [], []
    for at, body in got:
        key = delivery_id(body)
        if key in saved:
            latencies.append(at - saved.pop(key))
    if saved:
        notes.append(f"{len(saved)} alerts not received")
    return Latency(name, latencies, len(latencies) + len(saved), measure.cpu, measure.wall, passes)


async def _paced(items: Sequence[Any], rate: float, save: Callable[[Any], None]) -> None:
    """Call ``save(item)`` for each item at ``rate`` a second (on a fixed schedule, so a
    slow save does not slow the rate down)."""
    start = time.perf_counter() + 0.05
    for index, item in enumerate(items):
        delay = start + index / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        save(item)


async def _wait_received(receiver: Receiver, count: int, timeout: float) -> None:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if await asyncio.to_thread(receiver.count) >= count:
            return
        await asyncio.sleep(0.05)


async def daemon_loops(
    store: Any,
    channels: Any,
    wakes: list[asyncio.Event],
    stop: asyncio.Event,
    interval: float,
    passes: list[int],
) -> None:
    """DeliveryLoops._delivery_loop for the one channel and for unknown channels; each adds
    its event to ``wakes``, which the producer sets after a save, as the daemon does after
    a poll that stored hits."""
    from monitor.deliver import deliver_due

    rules = policies()

    async def loop(only: str | None, own: dict[str, Any]) -> None:
        event = asyncio.Event()
        wakes.append(event)
        while not stop.is_set():
            event.clear()  # before sending: hits stored meanwhile set it again
            try:
                await deliver_due(
                    store,
                    own,
                    utcnow,
                    policies=rules,
                    retry_min=settings_default("retry_min"),
                    retry_max=settings_default("retry_max"),
                    max_age=settings_default("delivery_max_age"),
                    only=(only,) if only is not None else None,
                    exclude=() if only is not None else (CHANNEL,),
                    stopping=stop.is_set,
                )
            except Exception:
                logging.getLogger("delivery_bench").exception("delivery loop error")
            if only is not None:
                passes[0] += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), interval)

    await asyncio.gather(loop(CHANNEL, channels), loop(None, {}))


def wake_all(wakes: Sequence[asyncio.Event]) -> None:
    for event in wakes:
        event.set()


async def stop_loops(
    loops: asyncio.Task[None], stop: asyncio.Event, wakes: Sequence[asyncio.Event]
) -> None:
    stop.set()
    wake_all(wakes)
    await loops


def latency_ours(
    items: Sequence[Any], rate: float, interval: float, path: Path, receiver: Receiver
) -> Latency:
    from monitor.store import Store
    from monitor.stories import Vocabulary

    store = Store(path)
    channels = build_hook(receiver.url)
    rules, vocabulary = policies(), Vocabulary()
    saved: dict[int, float] = {}
    passes = [0]

    async def main() -> None:
        wakes: list[asyncio.Event] = []
        stop = asyncio.Event()
        loops = asyncio.create_task(daemon_loops(store, channels, wakes, stop, interval, passes))
        await asyncio.sleep(0.2)  # the loops' first (empty) passes are done

        def save(item: Any) -> None:
            ids = store.save([item], utcnow(), policies=rules, vocabulary=vocabulary)
            at = time.perf_counter()
            for delivery in ids:
                saved[delivery] = at
            wake_all(wakes)

        await _paced(items, rate, save)
        await _wait_received(receiver, len(saved), interval * 3 + 30)
        await stop_loops(loops, stop, wakes)

    receiver.take()
    passes[0] = 0
    with Measure(receiver) as measure:
        asyncio.run(main())
    store.close()
    return _match("ours", saved, receiver, measure, passes[0])


def latency_apprise(
    items: Sequence[Any],
    rate: float,
    path: Path,
    messages: dict[int, Any],
    receiver: Receiver,
) -> Latency:
    import apprise

    from monitor.store import Store
    from monitor.stories import Vocabulary

    store = Store(path)
    rules, vocabulary = policies(), Vocabulary()
    notifier = apprise.Apprise()
    notifier.add(receiver.url)
    saved: dict[int, float] = {}
    unknown = 0

    def save(item: Any) -> None:
        nonlocal unknown
        ids = store.save([item], utcnow(), policies=rules, vocabulary=vocabulary)
        at = time.perf_counter()
        for delivery in ids:
            message = messages.get(delivery)
            if message is None:
                unknown += 1
                continue
            saved[delivery] = at
            notifier.notify(
                body=message.body,
                title=message.title,
                body_format=apprise.NotifyFormat(message.body_format),
            )

    async def main() -> None:
        await _paced(items, rate, save)
        await _wait_received(receiver, len(saved), 30)

    receiver.take()
    with Measure(receiver) as measure:
        asyncio.run(main())
    store.close()
    result = _match("apprise", saved, receiver, measure, 0)
    if unknown:
        result.notes.append(f"{unknown} alerts had no pre-rendered message")
    return result


def prepare_latency(items: Sequence[Any], path: Path, url: str) -> dict[int, Any]:
    """The alerts the latency producer makes, rendered: the same saves, one article each,
    into a database of their own give the same delivery ids."""
    from monitor.store import Store
    from monitor.stories import Vocabulary

    store = Store(path)
    rules, vocabulary = policies(), Vocabulary()
    for item in items:
        store.save([item], utcnow(), policies=rules, vocabulary=vocabulary)
    store.close()
    messages, _, _ = render_all(path, url)
    return messages


def backlog(template: Path, workdir: Path, receiver: Receiver, interval: float) -> Latency:
    """The daemon's delivery loops started with the template's alerts pending; nothing
    wakes them."""
    from monitor.store import Store

    store = Store(copy_db(template, workdir / "backlog.db"))
    channels = build_hook(receiver.url)
    pending = len(store.due_deliveries(utcnow(), limit=10**9, channels=[CHANNEL]))
    passes = [0]

    async def main() -> None:
        wakes: list[asyncio.Event] = []
        stop = asyncio.Event()
        loops = asyncio.create_task(daemon_loops(store, channels, wakes, stop, interval, passes))
        await _wait_received(receiver, pending, interval * (pending / 100 + 3) + 30)
        await stop_loops(loops, stop, wakes)

    receiver.take()
    began = time.perf_counter()
    with Measure(receiver) as measure:
        asyncio.run(main())
    store.close()
    got, _ = receiver.take()
    return Latency(
        "backlog",
        [at - began for at, _ in got],
        pending,
        measure.cpu,
        measure.wall,
        passes[0],
    )


# --- the report ----------------------------------------------------------------------------


def _range(values: Sequence[float], fmt: str) -> str:
    middle = format(statistics.median(values), fmt)
    if len(values) == 1:
        return middle
    return f"{middle} ({format(min(values), fmt)}-{format(max(values), fmt)})"


def _pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered), max(1, math.ceil(q * len(ordered)))) - 1]  # nearest rank


def report_throughput(args: argparse.Namespace, runs: dict[str, list[Run]]) -> None:
    print(
        f"\n### Throughput: {args.alerts:,} alerts to json://127.0.0.1 "
        f"({args.rounds} round(s), median (range))\n"
    )
    print(
        "| contender | alerts/s | wall s | CPU ms/alert | receiver CPU ms/alert | "
        "other CPU s | connections | bytes/request | ours/this (wall) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    ours = runs.get("ours", [])
    labels = {"null": "ours, null channel (no network)"}
    for name, rounds in runs.items():
        rates = [r.received / r.wall for r in rounds]
        ratio = "-"
        if ours and name not in ("ours", "null"):
            ratio = (
                _range([o.wall / r.wall for o, r in zip(ours, rounds, strict=True)], ".2f") + "x"
            )
        receiver = "-"
        if name != "null":
            receiver = _range([r.receiver_cpu / r.received * 1000 for r in rounds], ".2f")
        print(
            f"| {labels.get(name, name)} | {_range(rates, ',.0f')} "
            f"| {_range([r.wall for r in rounds], '.2f')} "
            f"| {_range([r.cpu / r.received * 1000 for r in rounds], '.2f')} | {receiver} "
            f"| {_range([r.other_cpu for r in rounds], '.1f')} "
            f"| {rounds[-1].connections:,} | {rounds[-1].body_bytes:.0f} | {ratio} |"
        )
    for name, rounds in runs.items():
        for index, run in enumerate(rounds):
            for note in run.notes:
                print(f"  WARNING {name} round {index + 1}: {note}")
    if ours:
        print(
            f"\nours: {ours[-1].passes} deliver_due calls per round (each drains what is due, "
            "a page of 100 at a time; the last finds nothing)."
        )
    if ours and "apprise" in runs:
        extra = [
            (o.wall - a.wall) / o.received * 1000
            for o, a in zip(ours, runs["apprise"], strict=True)
        ]
        print(f"ours - apprise, wall per alert: {_range(extra, '.2f')} ms", end="")
        if "null" in runs:
            alone = [r.wall / r.received * 1000 for r in runs["null"]]
            print(f"; the outbox alone (null channel): {_range(alone, '.2f')} ms", end="")
        print()


def report_steps(steps: dict[str, float], ours: Sequence[Run]) -> None:
    wall_per_alert = statistics.median(r.wall / r.received for r in ours)
    loop = statistics.median(r.loop_cpu / r.received for r in ours)
    print("\n### The outbox's own steps, no network (ms per alert)\n")
    print("| step | ms/alert | share of ours' wall per alert |")
    print("|---|---|---|")
    labels = {
        "due_deliveries": "due_deliveries (100 a call)",
        "message_for": "message_for (render, json)",
        "mark_sent": "mark_sent (one transaction each)",
        "other": "mute_silenced + release_batches (per call)",
    }
    for key, label in labels.items():
        print(f"| {label} | {steps[key] * 1000:.3f} | {steps[key] / wall_per_alert:.0%} |")
    total = sum(steps.values())
    print(f"| total | {total * 1000:.3f} | {total / wall_per_alert:.0%} |")
    print(
        f"| ours' event-loop thread, CPU in the throughput runs (all of deliver_due but "
        f"the send, which runs in a worker thread) | {loop * 1000:.3f} | "
        f"{loop / wall_per_alert:.0%} |"
    )


def report_latency(args: argparse.Namespace, results: list[Latency]) -> None:
    print(
        f"\n### Latency, stored to accepted: {args.latency_articles} articles at "
        f"{args.rate:g}/s, one Store.save each (ms)\n"
    )
    print("| contender | alerts | p50 | p90 | p99 | max | CPU ms/article | wall s |")
    print("|---|---|---|---|---|---|---|---|")
    for result in results:
        ms = [x * 1000 for x in result.latencies]
        name = {
            "ours": f"ours (daemon loops, interval {args.interval:g}s)",
            "apprise": "apprise (notify right after save)",
        }[result.name]
        print(
            f"| {name} | {len(ms)}/{result.expected} | {_pct(ms, 0.5):.1f} | "
            f"{_pct(ms, 0.9):.1f} | {_pct(ms, 0.99):.1f} | {max(ms, default=float('nan')):.1f} "
            f"| {result.cpu / max(1, result.expected) * 1000:.2f} | {result.wall:.1f} |"
        )
    by = {r.name: r for r in results}
    if "ours" in by and "apprise" in by and by["apprise"].latencies and by["ours"].latencies:
        ours, base = by["ours"].latencies, by["apprise"].latencies
        print(
            "| ours/apprise | | "
            + " | ".join(f"{_pct(ours, q) / _pct(base, q):.2f}x" for q in (0.5, 0.9, 0.99))
            + f" | {max(ours) / max(base):.2f}x | "
            f"{by['ours'].cpu / max(1e-9, by['apprise'].cpu):.2f}x | |"
        )
        print(f"\nours: {by['ours'].passes} deliver_due passes of the channel's loop")
    for result in results:
        for note in result.notes:
            print(f"  WARNING {result.name}: {note}")


def report_backlog(args: argparse.Namespace, result: Latency, throughput: float) -> None:
    times = sorted(result.latencies)
    print(
        f"\n### Backlog: {result.expected} alerts pending when the delivery loops start, "
        f"nothing wakes them (interval {args.interval:g}s)\n"
    )
    if not times:
        print("nothing received")
        return
    print(
        f"received {len(times)}/{result.expected} in {times[-1]:.2f}s over {result.passes} "
        f"deliver_due passes ({len(times) / times[-1]:,.0f} alerts/s; back to back, the "
        f"throughput above, it would take {result.expected / throughput:.2f}s)"
    )
    steps = [times[0]]
    for previous, current in pairwise(times):
        if current - previous > args.interval / 2:
            steps.append(current)
    marks = ", ".join(f"{t:.1f}s" for t in steps)
    print(f"batches began arriving at: {marks}")


# --- main ----------------------------------------------------------------------------------


def setup_logging(path: Path) -> None:
    """The daemon's logging (monitor.cli.logs): INFO, one line per event, here to a file."""
    logging.basicConfig(
        level=logging.INFO,
        stream=open(path, "a"),  # noqa: SIM115 (kept open for the whole run)
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
    )
    for noisy in ("httpx", "httpcore", "apscheduler", "apprise", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run(args: argparse.Namespace) -> int:
    began = time.perf_counter()
    started_on = code_state()
    workdir = Path(tempfile.mkdtemp(prefix="delivery-bench-"))
    setup_logging(workdir / "daemon.log")
    receiver = Receiver.start()
    try:
        receiver.check_clock()
        template = workdir / "template.db"
        print(f"storing {args.alerts:,} alerts (the template database)...", flush=True)
        used, seconds = fill_template(template, args.alerts, f"{args.seed}-t")
        print(f"  {used:,} articles stored in {seconds:.1f}s", flush=True)
        messages, _, _ = render_all(template, receiver.url)
        ids = sorted(messages)
        bodies = [payload(messages[i]) for i in ids]

        # Warm up every contender (apprise loads its plugins, connections, caches).
        warm = workdir / "warm.db"
        fill_template(warm, 20, f"{args.seed}-w")
        warm_messages, _, _ = render_all(warm, receiver.url)
        run_ours(warm, workdir, receiver, sorted(warm_messages), "warm")
        run_apprise(warm_messages, receiver)
        run_httpx([payload(m) for m in warm_messages.values()], sorted(warm_messages), receiver)

        runs: dict[str, list[Run]] = {name: [] for name in CONTENDERS}
        for round_ in range(args.rounds):
            order = CONTENDERS if round_ % 2 == 0 else CONTENDERS[::-1]
            for name in order:
                if name in ("ours", "null"):
                    tag = f"{name}-{round_}"
                    result = run_ours(template, workdir, receiver, ids, tag, null=name == "null")
                elif name == "apprise":
                    result = run_apprise(messages, receiver)
                else:
                    result = run_httpx(bodies, ids, receiver)
                runs[name].append(result)
                print(
                    f"round {round_ + 1}: {name:<8} {result.received / result.wall:>7,.0f} "
                    f"alerts/s ({result.wall:.2f}s)",
                    flush=True,
                )
        steps = outbox_steps(template, workdir, receiver.url, args.alerts)

        latency: list[Latency] = []
        if args.latency_articles:
            items = make_items(args.latency_articles, f"{args.seed}-l")
            print(
                f"latency: {len(items)} articles at {args.rate:g}/s, ours then apprise...",
                flush=True,
            )
            prepared = prepare_latency(items, workdir / "latency-prep.db", receiver.url)
            latency.append(
                latency_ours(items, args.rate, args.interval, workdir / "lat-ours.db", receiver)
            )
            latency.append(
                latency_apprise(items, args.rate, workdir / "lat-apprise.db", prepared, receiver)
            )
        pending: Latency | None = None
        if args.backlog:
            print(f"backlog: {args.backlog} pending at start...", flush=True)
            small = workdir / "backlog-template.db"
            fill_template(small, args.backlog, f"{args.seed}-b")
            pending = backlog(small, workdir, receiver, args.interval)
        profiled = profile_ours(template, workdir, receiver) if args.profile else None
    finally:
        receiver.stop()
        logging.shutdown()
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    import apprise
    import httpx

    print(
        f"\n## delivery_bench: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
        f"apprise {apprise.__version__}, httpx {httpx.__version__}, seed {args.seed}"
    )
    print(started_on)
    ended_on = code_state()
    if ended_on != started_on:
        print(f"WARNING: the code changed during the run; now {ended_on}")
    report_throughput(args, runs)
    report_steps(steps, runs["ours"])
    if latency:
        report_latency(args, latency)
    if pending is not None:
        report_backlog(args, pending, statistics.median(r.received / r.wall for r in runs["ours"]))
    if profiled is not None:
        print(f"\n### cProfile of one more `ours` throughput run ({args.alerts:,} alerts)\n")
        print(profiled.rstrip())
    print(f"\n({time.perf_counter() - began:.0f}s in all)")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--alerts", type=int, default=2000, help="alerts per throughput run")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each contender")
    parser.add_argument("--rate", type=float, default=50.0, help="latency: articles a second")
    parser.add_argument(
        "--latency-articles", type=int, default=500, help="latency: articles stored (0: skip)"
    )
    parser.add_argument(
        "--backlog", type=int, default=250, help="alerts pending at the loop's start (0: skip)"
    )
    parser.add_argument(
        "--interval", type=float, default=None, help="delivery.interval (default: the daemon's)"
    )
    parser.add_argument("--seed", default="delivery-bench", help="corpus seed")
    parser.add_argument("--profile", action="store_true", help="cProfile one more ours run")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve()
        return
    if args.interval is None:
        args.interval = float(settings_default("delivery_interval"))
    sys.exit(run(args))


if __name__ == "__main__":
    main()
