"""One exception tree for the whole daemon.

    MonitorError
    ├── ConfigError        a config or rule file is wrong (carries path, line, column)
    │   └── ConfigErrors   several ConfigErrors at once (validation reports them all)
    ├── FeedError          one feed could not be fetched or parsed (carries the URL)
    ├── StorageError       the SQLite database refused an operation
    └── NotifyError        a channel could not be built or reached

Every message names its subject (file:line, feed URL, rule, channel) and, where there is
one, says how to fix it. Third-party exceptions are chained as ``__cause__``.
"""

from __future__ import annotations

from collections.abc import Iterable


class MonitorError(Exception):
    """Base class of every error the daemon raises on purpose."""


class ConfigError(MonitorError):
    """A problem in a config or rule file, located as precisely as we can."""

    def __init__(
        self,
        message: str,
        path: str | None = None,
        line: int | None = None,
        column: int | None = None,
        rule: str | None = None,
    ) -> None:
        self.message = message
        self.path = path
        #: 1-based line and column, as editors count them.
        self.line = line
        self.column = column
        #: Name of the rule the problem belongs to, when there is one.
        self.rule = rule
        super().__init__(str(self))

    @property
    def location(self) -> str:
        parts = [self.path or "<config>"]
        if self.line is not None:
            parts.append(str(self.line))
            if self.column is not None:
                parts.append(str(self.column))
        return ":".join(parts)

    def __str__(self) -> str:
        where = f" (rule {self.rule!r})" if self.rule else ""
        return f"{self.location}: {self.message}{where}"


class ConfigErrors(ConfigError):
    """Several configuration problems, reported together."""

    def __init__(self, errors: Iterable[ConfigError]) -> None:
        self.errors = list(errors)
        first = self.errors[0] if self.errors else None
        super().__init__(
            "\n".join(str(e) for e in self.errors) or "no errors",
            path=first.path if first else None,
            line=first.line if first else None,
        )

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)


class FeedError(MonitorError):
    """A feed could not be fetched or parsed. ``url`` never carries credentials.

    The keyword attributes tell the scheduler what to do next; their defaults describe a
    plain failure (retry with backoff), so ``FeedError(url, message)`` stays valid.
    """

    def __init__(
        self,
        url: str,
        message: str,
        *,
        kind: str = "error",
        status: int | None = None,
        retry_after: float | None = None,
        gone: bool = False,
    ) -> None:
        self.url = url
        self.message = message
        #: What went wrong, for logs and the scheduler: "timeout", "too-large", "redirects",
        #: "ssrf", "scheme", "url", "http", "network", "tls", "protocol", "encoding" (the
        #: fetch stage), "error" when nothing more precise is known, "bug" for an
        #: exception that should not happen (logged as `poll_bug` with its traceback).
        self.kind = kind
        #: The HTTP status of the failing response, None when there was none.
        self.status = status
        #: Seconds the server asked us to wait (Retry-After on 429/503), already capped.
        self.retry_after = retry_after
        #: 410 Gone: the feed was removed for good and should not be polled again.
        self.gone = gone
        super().__init__(f"{url}: {message}")


class StorageError(MonitorError):
    """The database could not be opened or written."""


class StorageBusy(StorageError):
    """Another process holds the database's write lock for longer than the busy timeout
    (a long `news-monitor prune`, a backup): worth trying again."""


class NotifyError(MonitorError):
    """A notification channel is misconfigured or failed."""
