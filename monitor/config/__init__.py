"""The settings: the settings file and the files it names, read into a checked
:class:`Settings`, and edited in place.

* ``settings``: :class:`Settings` and :func:`load_settings`, the whole file in steps;
* ``reader``, ``values``: reading single values, every error collected with its
  file:line:column; ``feeds`` and ``channels``: the entries of `feeds:`, `feeds_from`
  and `channels:`;
* ``yamlfile``: safe YAML that knows where each value came from;
* ``feedsfile`` (with ``feedsfile_read`` and ``feedsfile_write``): adding, removing,
  pausing and resuming feeds in the files themselves; ``opml``: OPML feed lists.

What reading the settings needs is imported here. The feed-list editor and OPML are
imported from their own modules (``monitor.config.feedsfile``, ``monitor.config.opml``),
by the `news-monitor feeds` commands only.
"""

from monitor.config.channels import CHANNEL_KEYS, FORMATS
from monitor.config.feeds import FEED_KEYS, FEED_NAME, feeds_from_paths
from monitor.config.settings import (
    DELIVERY_KEYS,
    FETCH_KEYS,
    HEALTH_KEYS,
    METRICS_KEYS,
    PARSE_KEYS,
    PARSE_NICE,
    RETENTION_KEYS,
    STORIES_KEYS,
    TOP_KEYS,
    Settings,
    load_settings,
)
from monitor.config.values import (
    TEMPLATE_KEYS,
    ErrorSink,
    check_timezone,
    parse_duration,
    parse_size,
    read_cron,
    read_template,
)

__all__ = [
    "CHANNEL_KEYS",
    "DELIVERY_KEYS",
    "FEED_KEYS",
    "FEED_NAME",
    "FETCH_KEYS",
    "FORMATS",
    "HEALTH_KEYS",
    "METRICS_KEYS",
    "PARSE_KEYS",
    "PARSE_NICE",
    "RETENTION_KEYS",
    "STORIES_KEYS",
    "TEMPLATE_KEYS",
    "TOP_KEYS",
    "ErrorSink",
    "Settings",
    "check_timezone",
    "feeds_from_paths",
    "load_settings",
    "parse_duration",
    "parse_size",
    "read_cron",
    "read_template",
]
