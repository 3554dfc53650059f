"""Shortening a message to fit its channel's :class:`~monitor.deliver.render_formats.Limits`.

The snippet and long fields shrink first (digests also list fewer items), so the footer
always survives; as a last resort the body is cut before the footer, still well-formed.
A body is rendered at each step of :data:`STEPS` in turn, each value capped by
:class:`Caps`, until it fits. Titles and bodies come from the custom template, else the
default: a template that fails never loses the alert.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup

from monitor.deliver.render_escape import dumps, markdown_escape, one_line, strip_surrogates
from monitor.deliver.render_formats import Format
from monitor.deliver.render_templates import compile_template

#: Matched terms shown in an alert; the rest are counted ("+7 more").
TERMS_SHOWN = 12
#: Outlets named in a story line; the rest are counted.
OUTLETS_SHOWN = 6


#: How far a message is shrunk: (share of the snippet, share of the other long values).
Step = tuple[float, float]


@dataclass(frozen=True)
class Caps:
    """How long each value may be at one step of shrinking a message to fit."""

    title: int
    snippet: int
    field: int
    link: int
    notice: int
    terms: int
    outlets: int

    @classmethod
    def at(cls, step: Step, *, item: bool = False) -> Caps:
        def cap(base: int, least: int, scale: float = step[1]) -> int:
            return max(least, int(base * scale))

        if item:  # one entry of a digest
            return cls(
                cap(200, 30), cap(300, 1, step[0]), cap(120, 20), cap(1000, 60), cap(500, 60), 6, 3
            )
        return cls(
            cap(500, 40),
            cap(600, 1, step[0]),
            cap(300, 30),
            cap(2000, 60),
            cap(4000, 80),
            cap(TERMS_SHOWN, 1),
            cap(OUTLETS_SHOWN, 1),
        )


#: The steps of shrinking a message: the shares of their usual length left to the snippet
#: and to the other long values (and of the items of a digest). The snippet goes first.
STEPS: tuple[Step, ...] = (
    (1.0, 1.0),
    (0.5, 1.0),
    (0.25, 1.0),
    (0.1, 0.5),
    (0.0, 0.25),
    (0.0, 0.1),
    (0.0, 0.0),
)
FULL, LAST = STEPS[0], STEPS[-1]


_SEPARATORS: dict[Format, str] = {"text": "\n", "email": "", "markdown": "\n\n", "json": ""}
_PARTIAL_TAG = re.compile(r"<[^>]*$|&#?\w*$")
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9]*)\b[^>]*?(/?)>")
_OPEN_LINK = re.compile(r"(?<!\\)\[(?:\\.|[^\\\]])*(?:\](?:\([^)]*)?)?$")
_BOLD = re.compile(r"(?<!\\)\*\*")
_VOID = frozenset("area base br col embed hr img input link meta source track wbr".split())


def _note_line(failures: Sequence[str], fmt: Format) -> str:
    if not failures:
        return ""
    note = f"(custom template failed: {', '.join(dict.fromkeys(failures))})"
    if fmt == "email":
        return str(Markup('<p style="margin:12px 0 0;color:#777"><i>%s</i></p>') % note)
    return markdown_escape(note) if fmt == "markdown" else note


def _assemble(fmt: Format, *parts: str) -> str:
    return _SEPARATORS[fmt].join(p for p in parts if p)


def _close_tags(html: str) -> str:
    """Closing tags for the elements ``html`` leaves open (after a cut)."""
    open_tags: list[str] = []
    for closing, name, self_closing in _TAG.findall(html):
        name = name.lower()
        if name in _VOID or self_closing:
            continue
        if closing:
            if name in open_tags:
                del open_tags[len(open_tags) - 1 - open_tags[::-1].index(name) :]
        else:
            open_tags.append(name)
    return "".join(f"</{name}>" for name in reversed(open_tags))


def _tidy_markdown(text: str) -> str:
    """The start of a Markdown text without the constructs the cut left open: a lone
    trailing backslash, a link without its end, bold without its end."""
    text = text[: len(text) - (len(text) - len(text.rstrip("\\"))) % 2]
    text = _OPEN_LINK.sub("", text)
    last = text.rsplit("\n", 1)[-1]
    marks = [m.start() for m in _BOLD.finditer(last)]
    if len(marks) % 2:
        at = len(text) - len(last) + marks[-1]
        text = text[:at] + text[at + 2 :]
    return text


def _cut(raw: str, room: int, fmt: Format) -> str:
    """The start of a rendered body in at most ``room`` characters, still well-formed."""
    size = room
    while size > 0:
        text = raw[: size - 1]
        if fmt == "email":
            text = _PARTIAL_TAG.sub("", text)
            text = text + "…" + _close_tags(text)
        elif fmt == "markdown":
            text = _tidy_markdown(text) + "…"
        else:
            text = text + "…"
        if len(text) <= room:
            return text
        size -= len(text) - room
    return ""


def fit(
    fmt: Format,
    limit: int,
    render_at: Callable[[Step], str],
    note: str,
    footer: str,
) -> str:
    """The body rendered at the first shrinking step that fits in ``limit``; else cut."""
    raw = ""
    for step in STEPS:
        raw = render_at(step).strip()
        body = _assemble(fmt, raw, note, footer)
        if len(body) <= limit:
            return body
    tail = _assemble(fmt, note, footer)
    room = limit - len(tail) - len(_SEPARATORS[fmt])
    if room <= 0:
        return footer[:limit]
    return _assemble(fmt, _cut(raw, room, fmt), note, footer)


def render_title(
    fmt: Format,
    limit: int,
    default: str,
    custom: str | None,
    variables: Mapping[str, Any],
    failures: list[str],
) -> str:
    """The title from the ``custom`` template, else (failing or empty) the default, one
    line of at most ``limit``; a failure's type is added to ``failures``."""
    if custom is not None:
        try:
            title = one_line(compile_template(fmt, "title", custom).render(variables), limit)
            if title:
                return title
        except Exception as exc:  # a broken template must not lose the alert
            failures.append(type(exc).__name__)
    return one_line(compile_template(fmt, "title", default).render(variables), limit)


def render_body(
    fmt: Format,
    limit: int,
    default: str,
    custom: str | None,
    variables_at: Callable[[Step], dict[str, Any]],
    footer: str,
    failures: list[str],
) -> str:
    """The body from the ``custom`` template, else the default, shrunk to fit ``limit``
    with the note of ``failures`` and the footer after it."""

    def render_with(source: str) -> Callable[[Step], str]:
        template = compile_template(fmt, "body", source)
        return lambda step: template.render(variables_at(step))

    if custom is not None:
        try:
            # A failure at any shrinking step falls back to the default body.
            return fit(fmt, limit, render_with(custom), _note_line(failures, fmt), footer)
        except Exception as exc:  # a broken template must not lose the alert
            failures.append(type(exc).__name__)
    return fit(fmt, limit, render_with(default), _note_line(failures, fmt), footer)


def json_body(
    limit: int,
    build_at: Callable[[Step], dict[str, Any]],
    custom: str | None,
    variables_at: Callable[[Step], dict[str, Any]],
    failures: list[str],
) -> str:
    """Valid JSON in at most ``limit`` characters: fields are shortened, never the text."""
    ident = build_at(LAST)
    if custom is not None:
        try:
            template = compile_template("json", "body", custom)
            for step in STEPS:
                text = template.render(variables_at(step))
                value = json.loads(text)
                if isinstance(value, dict):
                    value.setdefault("id", ident["id"])
                    value.setdefault("key", ident["key"])
                    text = dumps(strip_surrogates(value))
                if len(text) <= limit:
                    return text
            failures.append("body too long")
        except Exception as exc:  # a broken template must not lose the alert
            failures.append(type(exc).__name__)
    extra = {"template_error": ", ".join(dict.fromkeys(failures))} if failures else {}
    for step in STEPS:
        value = build_at(step) | {"truncated": step != FULL} | extra
        text = dumps(strip_surrogates(value))
        if len(text) <= limit:
            return text
    minimal: dict[str, Any] = {
        key: ident[key] for key in ("kind", "id", "key", "channel") if key in ident
    }
    minimal["truncated"] = True
    text = dumps(strip_surrogates(minimal))
    room = limit - len(text) - len(', "title": ""')
    title = str(ident.get("title", ""))
    if room > 1 and title:
        minimal["title"] = title[: room - 1] + "…"
        fitted = dumps(strip_surrogates(minimal))
        while len(fitted) > limit and len(minimal["title"]) > 1:
            minimal["title"] = minimal["title"][: -1 - (len(fitted) - limit)] + "…"
            fitted = dumps(strip_surrogates(minimal))
        if len(fitted) <= limit:
            return fitted
    return text
