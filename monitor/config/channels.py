"""The channels of the settings (`channels:`): an apprise URL each, or a mapping with
`url` or `config` and the channel's format, template, quiet hours and digest schedule."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from monitor.config.reader import Reader
from monitor.config.values import check_timezone, read_cron, read_template
from monitor.config.yamlfile import YamlMap
from monitor.models import ChannelConfig, QuietHours
from monitor.schedule import parse_quiet_hours

CHANNEL_KEYS = (
    "url",
    "config",
    "tags",
    "format",
    "template",
    "quiet_hours",
    "timezone",
    "digest",
)
FORMATS = ("email", "markdown", "json", "text")


def read_channels(reader: Reader, data: YamlMap) -> list[ChannelConfig]:
    """The channels under `channels:` that could be read, each located at its name."""
    channels: list[ChannelConfig] = []
    chans = reader.mapping(data, "channels")
    for name in chans:
        channel = read_channel(reader, name, chans[name], chans)
        if channel is not None:
            channels.append(replace(channel, pos=chans.pos(name)))
    return channels


def read_channel(reader: Reader, name: str, spec: Any, where: YamlMap) -> ChannelConfig | None:
    """A channel: an apprise URL, or a mapping with `url` or `config` and options."""
    if not isinstance(spec, YamlMap):
        url = reader.string(where, name)
        return ChannelConfig(name, _channel_url(reader, name, url, where, name)) if url else None
    reader.unknown(spec, CHANNEL_KEYS, f"channel {name!r}")
    if ("url" in spec) == ("config" in spec):
        reader.error(
            f"channel {name!r} needs either `url` (an apprise URL) or `config` (an apprise "
            "config file), not both",
            where.pos(name),
        )
        return None
    url = ""
    if "url" in spec:
        url = _channel_url(reader, name, reader.string(spec, "url"), spec, "url")
    config_file = ""
    if "config" in spec:
        config_file = str(reader.path.parent / (reader.string(spec, "config") or ""))
    fmt = _channel_format(reader, name, spec)
    timezone = check_timezone(
        reader.string(spec, "timezone", "UTC") or "UTC",
        spec.pos("timezone"),
        reader.error,
        f"channel {name!r}: ",
    )
    quiet = _quiet_hours(reader, name, spec, timezone)
    return ChannelConfig(
        name,
        url or "",
        reader.names(spec, "tags"),
        config_file=config_file,
        format=fmt,
        template=read_template(spec, "template", reader.error),
        quiet_hours=quiet,
        digest=read_cron(spec, "digest", timezone, reader.error),
        timezone=timezone,
    )


def _channel_url(reader: Reader, name: str, url: str | None, data: YamlMap, key: str) -> str:
    if url is not None and "://" not in url:
        reader.error(
            f"channel {name!r} must be an apprise URL such as mailto://... or "
            "json://host/path (see https://github.com/caronc/apprise/wiki)",
            data.pos(key),
        )
    return url or ""


def _channel_format(reader: Reader, name: str, spec: YamlMap) -> str | None:
    """The channel's `format`, if it names one of :data:`FORMATS`."""
    fmt = reader.string(spec, "format")
    if fmt is not None and fmt not in FORMATS:
        reader.error(
            f"channel {name!r}: `format` must be one of {', '.join(FORMATS)}",
            spec.pos("format"),
        )
        return None
    return fmt


def _quiet_hours(reader: Reader, name: str, spec: YamlMap, timezone: str) -> QuietHours | None:
    if "quiet_hours" not in spec:
        return None
    quiet = parse_quiet_hours(str(spec["quiet_hours"]), timezone)
    if quiet is None:
        reader.error(
            f"channel {name!r}: `quiet_hours` must be a span such as 22:00-07:00",
            spec.pos("quiet_hours"),
        )
    return quiet
