"""Reading the values of one settings file: typed getters that collect every error.

Any string may use ``${NAME}`` or ``${NAME:-default}`` to take a value from the
environment, or ``${credential:NAME}`` for a systemd credential, which is how secrets
(SMTP passwords, chat tokens) stay out of the file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from monitor.config.values import parse_duration
from monitor.config.yamlfile import YamlMap
from monitor.errors import ConfigError

_ENV = re.compile(r"\$\{(credential:)?([A-Za-z_][A-Za-z0-9_.-]*)(?::-([^}]*))?\}")


class Reader:
    """Collects errors while reading one file."""

    def __init__(self, path: Path, env: Mapping[str, str], secrets: bool = True) -> None:
        self.path = path
        self.env = env
        #: False: a missing environment variable or credential is left empty, not an
        #: error (commands that only read the database need no channel secrets).
        self.secrets = secrets
        self.errors: list[ConfigError] = []
        #: Where each feed read so far is named: (name, file, (line, column)).
        self.feed_places: list[tuple[str, Path, tuple[int, int]]] = []

    def error(self, message: str, pos: tuple[int, int]) -> None:
        self.errors.append(ConfigError(message, str(self.path), pos[0], pos[1]))

    def expand(self, value: str, pos: tuple[int, int]) -> str:
        def sub(m: re.Match[str]) -> str:
            credential, name, default = m.group(1), m.group(2), m.group(3)
            if credential:
                return self.credential(name, default, pos)
            if name in self.env:
                return self.env[name]
            if default is not None:
                return default
            if self.secrets:
                self.error(
                    f"environment variable {name} is not set; export it or write "
                    f"${{{name}:-default}}",
                    pos,
                )
            return ""

        return _ENV.sub(sub, value)

    def credential(self, name: str, default: str | None, pos: tuple[int, int]) -> str:
        """A systemd credential (LoadCredential=): the file ``name`` in
        ``$CREDENTIALS_DIRECTORY``, without its final newline."""
        directory = self.env.get("CREDENTIALS_DIRECTORY")
        if directory and "/" not in name:
            try:
                return (Path(directory) / name).read_text(encoding="utf-8").rstrip("\r\n")
            except OSError:
                pass
        if default is not None:
            return default
        if not self.secrets:
            return ""
        where = f"in {directory}" if directory else "(CREDENTIALS_DIRECTORY is not set)"
        self.error(
            f"credential {name} not found {where}; add LoadCredential={name}:/path/to/secret "
            "to the service unit",
            pos,
        )
        return ""

    def string(self, data: YamlMap, key: str, default: str | None = None) -> str | None:
        if key not in data:
            return default
        value = data[key]
        if not isinstance(value, str | int | float) or isinstance(value, bool) or value == "":
            self.error(f"`{key}` must be a non-empty string", data.pos(key))
            return default
        return self.expand(str(value), data.pos(key))

    def duration(self, data: YamlMap, key: str, default: float, minimum: float) -> float:
        if key not in data:
            return default
        seconds = parse_duration(data[key])
        if seconds is None or seconds < minimum:
            self.error(
                f"`{key}` must be a duration such as 30s, 15m or 2h, at least {minimum:g}s; "
                f"got {data[key]!r}",
                data.pos(key),
            )
            return default
        return seconds

    def flag(self, data: YamlMap, key: str, default: Any) -> Any:
        value = data.get(key, default)
        if value is not default and not isinstance(value, bool):
            self.error(f"`{key}` must be true or false", data.pos(key))
            return default
        return value

    def count(
        self, data: YamlMap, key: str, default: int, minimum: int, maximum: int | None = None
    ) -> int:
        value = data.get(key, default)
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or value < minimum
            or (maximum is not None and value > maximum)
        ):
            bounds = (
                f"from {minimum} to {maximum}" if maximum is not None else f"at least {minimum}"
            )
            self.error(f"`{key}` must be a whole number, {bounds}", data.pos(key))
            return default
        return value

    def unknown(self, data: YamlMap, allowed: tuple[str, ...], where: str) -> None:
        for key in data:
            if key not in allowed:
                self.error(
                    f"unknown key {key!r} in {where}; allowed: {', '.join(allowed)}",
                    data.pos(key),
                )

    def mapping(self, data: YamlMap, key: str) -> YamlMap:
        value = data.get(key)
        if value is None:
            return YamlMap.at(data.pos(key))
        if not isinstance(value, YamlMap):
            self.error(f"`{key}` must be a mapping", data.pos(key))
            return YamlMap.at(data.pos(key))
        return value

    def section(self, data: YamlMap, key: str, allowed: tuple[str, ...]) -> YamlMap:
        """The mapping under ``key`` (empty when absent), its unknown keys reported."""
        value = self.mapping(data, key)
        self.unknown(value, allowed, f"`{key}`")
        return value

    def channel_list(
        self, data: YamlMap, key: str, label: str, defined: set[str]
    ) -> tuple[str, ...]:
        """A list of channel names that must all be defined under `channels:`."""
        listed = self.names(data, key)
        for name in listed:
            if name not in defined:
                self.error(f"{label} {name!r} is not defined under `channels:`", data.pos(key))
        return listed

    def names(self, data: YamlMap, key: str) -> tuple[str, ...]:
        value = data.get(key, [])
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            self.error(f"`{key}` must be a list of names", data.pos(key))
            return ()
        return tuple(value)
