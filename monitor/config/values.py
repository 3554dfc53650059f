"""Single values of the settings and rule files: durations, sizes, time zones, cron
schedules and message templates.

The parsers return None for a value they cannot read; the readers that take an
:data:`ErrorSink` report the problem there (with its line and column) and go on, so that
a file's errors are all listed at once.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from monitor.config.yamlfile import YamlMap
from monitor.deliver.render_templates import check_template
from monitor.models import Template
from monitor.schedule import cron_error, zone

TEMPLATE_KEYS = ("title", "body")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|KiB|MB|MiB|GB|GiB)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1,
    "kb": 1000,
    "kib": 1024,
    "mb": 10**6,
    "mib": 2**20,
    "gb": 10**9,
    "gib": 2**30,
    None: 1,
}
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}

#: Where a reader reports a problem: the message and the (line, column) it is about.
ErrorSink = Callable[[str, tuple[int, int]], None]


def parse_duration(value: Any) -> float | None:
    """'90s', '15m', '1.5h', '2d', '250ms' or a plain number of seconds; None if invalid."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and (m := _DURATION.match(value)):
        return float(m.group(1)) * _UNITS[m.group(2)]
    return None


def parse_size(value: Any) -> int | None:
    """'15MiB', '500 kB', '1GiB' or a plain number of bytes; None if invalid."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and (m := _SIZE.match(value)):
        unit = m.group(2).lower() if m.group(2) else None
        return int(float(m.group(1)) * _SIZE_UNITS[unit])
    return None


def read_template(data: YamlMap, key: str, error: ErrorSink) -> Template | None:
    """`template: {title: ..., body: ...}` (Jinja2), checked to compile."""
    if key not in data:
        return None
    spec = data[key]
    if not isinstance(spec, YamlMap) or not spec or set(spec) - set(TEMPLATE_KEYS):
        error(f"`{key}` must be a mapping with `title` and/or `body` (Jinja2)", data.pos(key))
        return None
    parts: dict[str, str] = {}
    for part in TEMPLATE_KEYS:
        if part not in spec:
            continue
        source = spec[part]
        if not isinstance(source, str):
            error(f"`{key}.{part}` must be a string", spec.pos(part))
            continue
        if (problem := check_template(source)) is not None:
            error(f"`{key}.{part}`: {problem}", spec.pos(part))
            continue
        parts[part] = source
    return Template(title=parts.get("title"), body=parts.get("body")) if parts else None


def check_timezone(timezone: str, pos: tuple[int, int], error: ErrorSink, prefix: str = "") -> str:
    """``timezone`` if it is an IANA time zone name, else "UTC" and an error."""
    if zone(timezone) is None:
        error(
            f"{prefix}unknown time zone {timezone!r}; use an IANA name such as Europe/Kyiv or UTC",
            pos,
        )
        return "UTC"
    return timezone


def read_cron(data: YamlMap, key: str, timezone: str, error: ErrorSink) -> str | None:
    """A five-field cron schedule such as "0 8 * * mon-fri"."""
    if key not in data:
        return None
    value = data[key]
    problem = cron_error(value, timezone) if isinstance(value, str) else "not a string"
    if problem is not None:
        error(
            f'`{key}` must be a cron schedule such as "0 8 * * mon-fri" (minute hour day '
            f"month weekday): {problem}",
            data.pos(key),
        )
        return None
    return str(value)
