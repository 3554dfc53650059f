"""Message templates: the Jinja2 sandbox that escapes every value for its format, and
the default layouts.

The default layouts are Jinja2 templates (:data:`ALERT_TEMPLATES`, :data:`DIGEST_TEMPLATES`);
a :class:`~monitor.models.Template` from the config or a rule replaces the title and/or
the body. Templates run in Jinja2's immutable sandbox with ``trim_blocks`` and
``lstrip_blocks``; every ``{{ value }}`` is escaped for the format (one line, HTML,
Markdown; in ``json`` bodies each value becomes a JSON literal, so write
``{"headline": {{ title }}}``); the ``safe`` filter does not exist. Unknown variables
render as empty (``null`` in json). A template that fails to compile or render never
loses the alert: the default is used and the body says ``(custom template failed:
<ExceptionType>)`` (json: a ``"template_error"`` field). The footer is always appended
after the body template, and system notices (feed health...) always use the built-in
layout. Templates come from the operator's config: the sandbox keeps them away from
Python internals but does not bound their running time.

Variables of an alert (``kind`` is ``"alert"``):

* ``rule``, ``severity``, ``title`` (the article's), ``feed``, ``channel``;
* ``link``: the article URL as text (html/markdown: ``(link removed: not http/https)``
  for other schemes); ``href``: the URL when it is http(s), ready for ``href="..."`` or
  ``[..](...)``, else empty;
* ``terms`` (list), ``matched`` (the terms as one line, "+N more" past a dozen);
* ``snippet``; ``highlighted``: the snippet with the terms marked (``<mark>`` in html,
  ``**bold**`` in markdown, unmarked in text);
* ``published`` (empty when unknown), ``seen_at``;
* ``story_id`` (empty without a story), ``sources``, ``outlets`` (list), ``story``
  (``#7, 3 sources (a, b, c)``, empty without a story), ``step`` (N for the follow-up
  sent when N sources carried the story, else 0);
* ``delivery_id``, ``key``, ``footer``, ``format``.

Variables of a digest (``kind`` is ``"digest"``): ``items`` (each with the variables of
an alert, ``item.kind`` being ``"alert"`` or ``"notice"``, a notice's text in
``item.notice``), ``total``, ``more`` (alerts not listed), ``reason`` (``digest``,
``quiet-hours`` or ``storm``), ``label``, ``summary`` (``digest: 12 alerts (rule
sanctions)``), ``created_at``, ``channel``, ``delivery_id`` (the digest's id), ``key``,
``footer``, ``format``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any, Literal

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import Markup

from monitor.deliver.render_escape import (
    EscapedMarkdown,
    dumps,
    markdown_escape,
    no_mentions,
    one_line,
)
from monitor.deliver.render_formats import Format

Part = Literal["title", "body"]


def _join(values: Iterable[Any], one: Callable[[Any], str]) -> str:
    return ", ".join(one(v) for v in values)


def finalizer(fmt: Format, part: Part) -> Callable[[Any], Any]:
    """What every ``{{ value }}`` becomes in ``fmt``: escaped for it."""

    def plain(value: Any) -> str:
        if isinstance(value, jinja2.Undefined) or value is None:
            return ""
        if isinstance(value, list | tuple | set | frozenset):
            return _join(value, plain)
        return one_line(str(value), 1 << 30)

    if part == "title":
        if fmt == "markdown":
            return lambda value: markdown_escape(plain(value))
        if fmt == "text":
            return lambda value: no_mentions(plain(value))
        return plain
    if fmt == "json":

        def literal(value: Any) -> str:
            return dumps(None if isinstance(value, jinja2.Undefined) else value)

        return literal
    if fmt == "email":

        def html(value: Any) -> Markup:
            if isinstance(value, Markup):
                return value
            if isinstance(value, list | tuple | set | frozenset):
                return Markup(", ").join(html(v) for v in value)
            return Markup.escape(plain(value))

        return html
    if fmt == "markdown":

        def markdown(value: Any) -> str:
            if isinstance(value, EscapedMarkdown):
                return value
            if isinstance(value, list | tuple | set | frozenset):
                return _join(value, markdown)
            return markdown_escape(plain(value))

        return markdown
    return lambda value: no_mentions(plain(value))


@lru_cache(maxsize=16)
def _environment(fmt: Format, part: Part) -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        autoescape=fmt == "email" and part == "body",
        finalize=finalizer(fmt, part),
        undefined=jinja2.ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    # Feed values are escaped whatever the template says.
    env.filters.pop("safe", None)
    return env


@lru_cache(maxsize=512)
def compile_template(fmt: Format, part: Part, source: str) -> jinja2.Template:
    return _environment(fmt, part).from_string(source)


def check_template(source: str) -> str | None:
    """None if the Jinja2 source compiles in the sandbox; else a one-line error with the
    line number."""
    try:
        compile_template("text", "body", source)
    except jinja2.TemplateSyntaxError as exc:
        return one_line(f"line {exc.lineno}: {exc.message or type(exc).__name__}", 500)
    return None


# --- default templates -------------------------------------------------------------------

ALERT_TITLE = "[{{ rule }}] {% if step %}now {{ step }} sources: {% endif %}{{ title }}"
DIGEST_TITLE = "[news-monitor] {{ summary }}"

_TEXT_ALERT = """\
Rule:      {{ rule }} ({{ severity }})
Article:   {{ title }}
{% if story %}
Story:     {{ story }}
{% endif %}
Feed:      {{ feed }}
Link:      {{ link or "(none)" }}
Matched:   {{ matched }}
Why:       {{ snippet }}
Published: {{ published or "unknown" }}   Seen: {{ seen_at }}
"""

_EMAIL_ALERT = """\
<div style="font-family:Arial,Helvetica,sans-serif;font-size:14px;line-height:1.5">
<div><b>Rule:</b> {{ rule }} ({{ severity }})</div>
<div><b>Article:</b> {{ title }}</div>
{% if story %}
<div><b>Story:</b> {{ story }}</div>
{% endif %}
<div><b>Feed:</b> {{ feed }}</div>
<div><b>Link:</b> {% if href %}<a href="{{ href }}">{{ link }}</a>\
{% else %}{{ link or "(none)" }}{% endif %}</div>
<div><b>Matched:</b> {{ matched }}</div>
<div><b>Why:</b> {{ highlighted }}</div>
<div><b>Published:</b> {{ published or "unknown" }} · <b>Seen:</b> {{ seen_at }}</div>
</div>
"""

_MARKDOWN_ALERT = """\
**Rule:** {{ rule }} ({{ severity }})
**Article:** {% if href %}[{{ title or "(untitled)" }}]({{ href }})\
{% else %}{{ title }}{% if link %} {{ link }}{% endif %}{% endif +%}
{% if story %}
**Story:** {{ story }}
{% endif %}
**Feed:** {{ feed }}
**Matched:** {{ matched }}
**Why:** {{ highlighted }}
**Published:** {{ published or "unknown" }} · **Seen:** {{ seen_at }}
"""

_TEXT_DIGEST = """\
{{ summary }}
{% for item in items %}

{% if item.kind == "notice" %}
- {{ item.title }}: {{ item.notice }}
{% else %}
- [{{ item.rule }}] ({{ item.severity }}) {{ item.title }}
  Link:    {{ item.link or "(none)" }}
  Feed:    {{ item.feed }} · Matched: {{ item.matched }}
{% endif %}
{% endfor %}
{% if more %}

+{{ more }} more
{% endif %}
"""

_EMAIL_DIGEST = """\
<div style="font-family:Arial,Helvetica,sans-serif;font-size:14px;line-height:1.5">
<div><b>{{ summary }}</b></div>
<ul style="padding-left:18px">
{% for item in items %}
{% if item.kind == "notice" %}
<li>{{ item.title }}: {{ item.notice }}</li>
{% else %}
<li><b>{{ item.rule }}</b> ({{ item.severity }}) {{ item.title }}
<br>{% if item.href %}<a href="{{ item.href }}">{{ item.link }}</a>\
{% else %}{{ item.link or "(no link)" }}{% endif %}
<br>Feed: {{ item.feed }} · Matched: {{ item.matched }}</li>
{% endif %}
{% endfor %}
</ul>
{% if more %}
<div>+{{ more }} more</div>
{% endif %}
</div>
"""

_MARKDOWN_DIGEST = """\
**{{ summary }}**
{% for item in items %}
{% if item.kind == "notice" %}
- {{ item.title }}: {{ item.notice }}
{% else %}
- **{{ item.rule }}** ({{ item.severity }}) \
{% if item.href %}[{{ item.title or "(untitled)" }}]({{ item.href }}){% else %}{{ item.title }}\
{% if item.link %} {{ item.link }}{% endif %}{% endif %} · {{ item.feed }} · \
matched: {{ item.matched }}
{% endif %}
{% endfor %}
{% if more %}

+{{ more }} more
{% endif %}
"""


def _compact(html: str) -> str:
    """The template without the line breaks between its tags: apprise turns the HTML into
    the text part of the mail, where each would become an empty line."""
    return re.sub(r"(?<=[>}])\n(?=<|\{%)", "", html)


#: The default body template of an alert, per format (json bodies are built, not templated).
ALERT_TEMPLATES: dict[Format, str] = {
    "text": _TEXT_ALERT,
    "email": _compact(_EMAIL_ALERT),
    "markdown": _MARKDOWN_ALERT,
}
#: The default body template of a digest, per format.
DIGEST_TEMPLATES: dict[Format, str] = {
    "text": _TEXT_DIGEST,
    "email": _compact(_EMAIL_DIGEST),
    "markdown": _MARKDOWN_DIGEST,
}
