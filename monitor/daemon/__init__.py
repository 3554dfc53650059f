"""The long-running process: scheduler, delivery loop, signals. apscheduler lives here.

One asyncio event loop runs everything:

* one APScheduler job per enabled feed (interval + jitter, ``max_instances=1``,
  ``coalesce=True``), each calling :func:`monitor.pipeline.poll_feed`;
* a delivery loop of its own that sends pending alerts, woken right after a poll stores
  new hits and otherwise every ``delivery.interval``.

The modules:

* ``process``: the Daemon: start, the poll and housekeeping jobs, stop;
* ``reload``: the settings and rules loaded again while running;
* ``loading``: the rules and channels built from the settings, every error at once;
* ``delivery``: the delivery loops, one per channel;
* ``indexer``: the search index, kept up to date from a thread.
"""
