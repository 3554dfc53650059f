"""Why a fetch gives up, and how text from the network is shown in that reason.

Every part of a fetch (the URL checks, the address guard, the body decoder, the hop
loop) raises :class:`_Stop` deep down; only the hop loop turns it into the
:class:`~monitor.errors.FeedError` the caller sees, because only it knows the redirect
chain to name in the message.
"""

from __future__ import annotations


class _Stop(Exception):
    """A reason to give up, raised deep down and turned into a FeedError at the top."""

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        gone: bool = False,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status
        self.retry_after = retry_after
        self.gone = gone


def _short(text: str, limit: int = 200) -> str:
    """``text`` fit for a log line: a server's words can be long or hold control bytes."""
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= limit else text[: limit - 1] + "…"
