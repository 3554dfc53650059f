"""What the daemon runs with, built from its files: the compiled rules and the channels,
with every error found at once. `news-monitor check`, the start and a reload all use
these, so that what check accepts is what the daemon starts with."""

from __future__ import annotations

from collections.abc import Mapping

from monitor.config import Settings
from monitor.deliver import Channel, build_channels
from monitor.errors import ConfigError, ConfigErrors
from monitor.match import Matcher, load_rules, resolve_references


def load_matcher(
    settings: Settings, frequencies: Mapping[str, float] | None = None
) -> tuple[Matcher, list[ConfigError]]:
    """The rules of ``settings.rules_dir`` compiled, or the errors that prevent it.

    ``frequencies`` (word -> share of recent articles) lets the matcher index each rule
    by its rarest terms."""
    ruleset = load_rules(settings.rules_dir)
    rules, errors = resolve_references(
        ruleset.rules,
        {f.name: f.tags for f in settings.feeds},
        {c.name: c.tags for c in settings.channels},
    )
    errors = list(ruleset.errors) + errors
    if errors:
        return Matcher(()), errors
    try:
        return Matcher(rules, frequencies), []
    except ValueError as exc:  # a phrase with too many word forms
        return Matcher(()), [ConfigError(str(exc), str(settings.rules_dir))]


def validate(settings: Settings) -> tuple[Matcher, dict[str, Channel]]:
    """Load rules and build channels; raise ConfigErrors listing every problem."""
    matcher, errors = load_matcher(settings)
    channels, channel_errors = settings_channels(settings)
    errors += channel_errors
    if errors:
        raise ConfigErrors(errors)
    return matcher, channels


def settings_channels(settings: Settings) -> tuple[dict[str, Channel], list[ConfigError]]:
    """The settings' channels built, and an error naming the file and line of each one
    apprise cannot use."""
    channels: dict[str, Channel] = {}
    errors: list[ConfigError] = []
    for config in settings.channels:
        built, messages = build_channels((config,))
        channels.update(built)
        errors += [ConfigError(m, str(settings.path), *config.pos) for m in messages]
    return channels, errors
