"""Channels: apprise objects built from the settings, each with its message format and
limits. apprise is imported here and nowhere else."""

from __future__ import annotations

import sys
import threading
from typing import Any, Protocol

import apprise
from apprise.decorators import notify

from monitor.deliver.render_formats import Format, Limits, Message, format_for_url
from monitor.errors import NotifyError
from monitor.models import ChannelConfig

_print_lock = threading.Lock()


@notify(on="console", name="news-monitor terminal")  # type: ignore[untyped-decorator,no-untyped-call]
def _console(body: str, title: str, notify_type: str, *args: Any, **kwargs: Any) -> bool:
    """`console://`: print the alert to standard output (the terminal or the journal)."""
    with _print_lock:
        sys.stdout.write(f"\n=== ALERT {title}\n{body}\n")
        sys.stdout.flush()
    return True


def privacy_url(url: str) -> str:
    """The channel URL with its secrets masked, the only form that may be logged."""
    try:
        plugin = apprise.Apprise.instantiate(url)
    except Exception:  # apprise raises assorted errors for malformed URLs
        plugin = None
    if plugin is None:
        scheme = url.split("://", 1)[0] if "://" in url else "?"
        return f"{scheme}://(unparseable URL)"
    return str(plugin.url(privacy=True))  # type: ignore[no-untyped-call]


class Sender(Protocol):
    """What the delivery loop needs of a channel."""

    config: ChannelConfig
    format: Format
    limits: Limits

    def send(self, message: Message) -> bool: ...


class Channel:
    """One named channel: an apprise object built from its URL or config file."""

    def __init__(self, config: ChannelConfig) -> None:
        self.config = config
        self.name = config.name
        self._apprise = apprise.Apprise()
        if config.config_file:
            self.shown = f"apprise config {config.config_file}"
            source = apprise.AppriseConfig()
            if not source.add(config.config_file) or not self._apprise.add(source):
                raise NotifyError(
                    f"channel {config.name!r}: cannot read the apprise config file "
                    f"{config.config_file}"
                )
            plugins = list(self._apprise)  # reads the file now: errors show at start
            if not plugins:
                raise NotifyError(
                    f"channel {config.name!r}: the apprise config file {config.config_file} "
                    "has no usable URL (see https://github.com/caronc/apprise/wiki/config)"
                )
            self.format: Format = _format(config.format) or "text"
        else:
            self.shown = privacy_url(config.url)
            if not self._apprise.add(config.url):
                raise NotifyError(
                    f"channel {config.name!r}: apprise does not understand {self.shown}; "
                    "see https://github.com/caronc/apprise/wiki for URL formats"
                )
            plugins = list(self._apprise)
            self.format = _format(config.format) or format_for_url(config.url)
        # The tightest limits of the services behind the channel (apprise knows them).
        self.limits = Limits(
            title=min([Limits.title, *(p.title_maxlen for p in plugins if p.title_maxlen > 0)]),
            body=min([Limits.body, *(p.body_maxlen for p in plugins if p.body_maxlen > 0)]),
        )

    def send(self, message: Message) -> bool:
        # Say what the body is, or apprise guesses: plain text read as HTML collapses its
        # line breaks, and markup from feed titles would reach an HTML part.
        result = self._apprise.notify(
            body=message.body,
            title=message.title,
            body_format=apprise.NotifyFormat(message.body_format),
        )
        return bool(result)


def _format(name: str | None) -> Format | None:
    return name if name in ("text", "email", "markdown", "json") else None  # type: ignore[return-value]


def build_channels(configs: tuple[ChannelConfig, ...]) -> tuple[dict[str, Channel], list[str]]:
    """Channels by name, and an error message for each channel that cannot be built."""
    channels: dict[str, Channel] = {}
    errors: list[str] = []
    for config in configs:
        try:
            channels[config.name] = Channel(config)
        except NotifyError as exc:
            errors.append(str(exc))
    return channels, errors
