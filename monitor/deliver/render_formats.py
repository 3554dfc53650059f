"""What a message is and which format a channel gets (:func:`format_for_url` picks one
from the apprise scheme):

* ``text`` (console and unknown services): aligned ``Label: value`` lines.
* ``email``: a small HTML body (inline styles only, no external resources); apprise builds
  the text alternative from it, one field per line.
* ``markdown`` (chat services): bold labels, ``[title](url)`` links.
* ``json`` (webhooks): ``json.dumps`` of every field; always valid JSON, even shortened.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Format = Literal["text", "email", "markdown", "json"]
FORMATS: tuple[Format, ...] = ("text", "email", "markdown", "json")

#: How apprise must read the body of each format.
BODY_FORMATS: dict[Format, str] = {
    "text": "text",
    "email": "html",
    "markdown": "markdown",
    "json": "text",
}


@dataclass(frozen=True)
class Message:
    """An alert (or digest) as one channel gets it."""

    title: str
    body: str
    #: How apprise must read the body: "text", "html" or "markdown".
    body_format: str = "text"


@dataclass(frozen=True)
class Limits:
    """The most characters a channel takes in a title and in a body."""

    title: int = 250
    body: int = 32768


DEFAULT_LIMITS = Limits()

# apprise schemes by what their services read; the rest get text.
_EMAIL_SCHEMES = frozenset(
    """
    mailto mailtos ses sendgrid mailgun sparkpost resend smtp2go brevo postmark
    mailersend sendpulse o365 azure
    """.split()
)
_JSON_SCHEMES = frozenset("json jsons form forms xml xmls".split())
_TEXT_SCHEMES = frozenset(["console"])
_CHAT_SCHEMES = frozenset(
    """
    mmost mmosts slack discord tgram matrix matrixs rocket rockets msteams workflow
    workflows zulip gchat ntfy ntfys signal signals guilded revolt lark feishu ryver
    flock twist wxteams webex nctalk nctalks dingtalk cliq zcliq zohocliq kook whapi
    """.split()
)


def format_for_url(url: str) -> Format:
    """The message format for an apprise URL, by its scheme."""
    scheme = url.split("://", 1)[0].strip().lower() if "://" in url else ""
    if scheme in _EMAIL_SCHEMES:
        return "email"
    if scheme in _JSON_SCHEMES:
        return "json"
    if scheme in _TEXT_SCHEMES or scheme not in _CHAT_SCHEMES:
        return "text"  # the console, and every service not known to read more
    return "markdown"
