"""monitor.deliver.render_*: alert messages per channel format, escaping of hostile feed
content, shrinking to the channel's limits, user templates in the sandbox. Pure unit tests."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any

import pytest
from apprise import NotifyFormat
from apprise.conversion.format import convert_between
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.deliver.render_escape import markdown_escape, one_line
from monitor.deliver.render_formats import FORMATS, Format, Limits, Message, format_for_url
from monitor.deliver.render_message import render, render_digest
from monitor.deliver.render_templates import check_template
from monitor.deliver.render_vars import LINK_REMOVED
from monitor.models import Digest, PendingDelivery, Template

LINK = "https://news.example.org/world/troops-border?ref=rss"
SNIPPET = "Thousands of soldiers were seen moving toward the frontier on Tuesday…"
ZWSP = "\u200b"


def alert(**changes: Any) -> PendingDelivery:
    base = PendingDelivery(
        id=12,
        channel="desk",
        attempts=0,
        rule="troop-movements",
        severity="urgent",
        terms=("troops", "soldiers", "frontier"),
        snippet=SNIPPET,
        feed="wire",
        title="Troops mass near the border",
        link=LINK,
        published=datetime(2026, 3, 1, 10, 0, tzinfo=UTC),
        seen_at=datetime(2026, 3, 1, 10, 2, tzinfo=UTC),
        story_id=7,
        sources=2,
        outlets=("reuters.example", "ap.example"),
        key="hit-5-desk-0",
    )
    return replace(base, **changes)


def notice(**changes: Any) -> PendingDelivery:
    return alert(
        rule="",
        terms=(),
        snippet="",
        link="",
        story_id=None,
        sources=0,
        outlets=(),
        title="feed wire is failing",
        notice="wire failed 5 times in a row\nlast error: HTTP 503",
        key="notice-3-desk",
        **changes,
    )


def digest(count: int = 3, total: int = 12, **changes: Any) -> Digest:
    items = tuple(
        alert(
            id=100 + i,
            rule="sanctions",
            severity="normal",
            terms=("sanctions",),
            snippet=f"new sanctions package {i}",
            title=f"EU adopts sanctions package {i}",
            link=f"https://eu.example/{i}",
            story_id=None,
            outlets=(),
            key=f"hit-{i}",
        )
        for i in range(count)
    )
    base = Digest(
        id=5,
        channel="desk",
        attempts=0,
        reason="digest",
        label="rule sanctions",
        created_at=datetime(2026, 3, 1, 11, 0, tzinfo=UTC),
        items=items,
        total=total,
        key="digest-5-desk",
    )
    return replace(base, **changes)


class _Tags(HTMLParser):
    """Every start tag of an HTML document, with its attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def tags(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Tags()
    parser.feed(html)
    parser.close()
    return parser.tags


def assert_safe_html(html: str) -> None:
    """No script, no event handler, no link but http(s), nothing loaded from outside."""
    assert "<script" not in html.lower()
    for tag, attrs in tags(html):
        assert tag in {"div", "p", "b", "i", "a", "mark", "br", "ul", "li", "strong"}, tag
        assert not [name for name in attrs if name.startswith("on")], (tag, attrs)
        if tag == "a":
            assert re.match(r"https?://", attrs["href"] or ""), attrs
        assert "src" not in attrs


def footer_of(fmt: Format, number: int = 12, key: str = "hit-5-desk-0") -> str:
    if fmt == "text":
        return f"Delivery:  #{number} · key {key}"
    return f"Delivery #{number} · key {key}"


# --- default layouts ---------------------------------------------------------------------


def test_text_layout_keeps_the_plain_lines() -> None:
    message = render(alert())
    assert message == Message(
        "[troop-movements] Troops mass near the border",
        "\n".join(
            [
                "Rule:      troop-movements (urgent)",
                "Article:   Troops mass near the border",
                "Story:     #7, 2 sources (reuters.example, ap.example)",
                "Feed:      wire",
                f"Link:      {LINK}",
                "Matched:   troops, soldiers, frontier",
                f"Why:       {SNIPPET}",
                "Published: 2026-03-01T10:00:00Z   Seen: 2026-03-01T10:02:00Z",
                "Delivery:  #12 · key hit-5-desk-0",
            ]
        ),
        "text",
    )


def test_text_layout_without_story_link_or_time() -> None:
    body = render(alert(story_id=None, link="", published=None, terms=())).body
    assert "Story:" not in body
    assert "Link:      (none)" in body
    assert "Published: unknown" in body
    assert "Matched:   (no positive terms)" in body


def test_follow_up_title_and_counted_terms_and_outlets() -> None:
    many = tuple(f"term{i}" for i in range(15))
    outlets = tuple(f"outlet{i}.example" for i in range(9))
    message = render(alert(step=3, sources=9, terms=many, outlets=outlets))
    assert message.title == "[troop-movements] now 3 sources: Troops mass near the border"
    assert "term11 (+3 more)" in message.body
    assert "term12" not in message.body
    assert "Story:     #7, 9 sources (outlet0.example" in message.body
    assert "outlet5.example +3 more)" in message.body


def test_delivery_without_key_shows_the_id_only() -> None:
    assert render(alert(key="")).body.endswith("\nDelivery:  #12")
    assert render(alert(key=""), "markdown").body.endswith("\n\nDelivery #12")
    assert render(alert(key=""), "email").body.endswith(">Delivery #12</p>")


def test_email_is_small_html_that_reads_as_text() -> None:
    message = render(alert(), "email")
    assert message.body_format == "html"
    assert message.title == "[troop-movements] Troops mass near the border"
    assert_safe_html(message.body)
    assert (
        "Thousands of <mark>soldiers</mark> were seen moving toward the <mark>frontier</mark>"
        in (message.body)
    )
    assert f'<a href="{LINK}">{LINK}</a>' in message.body
    assert "http" not in message.body.replace(LINK, "")  # no external resources
    text = convert_between(NotifyFormat.HTML, NotifyFormat.TEXT, message.body)
    assert text.splitlines() == [
        "Rule: troop-movements (urgent)",
        "Article: Troops mass near the border",
        "Story: #7, 2 sources (reuters.example, ap.example)",
        "Feed: wire",
        f"Link: {LINK}",
        "Matched: troops, soldiers, frontier",
        f"Why: {SNIPPET}",
        "Published: 2026-03-01T10:00:00Z · Seen: 2026-03-01T10:02:00Z",
        "Delivery #12 · key hit-5-desk-0",
    ]


def test_markdown_has_bold_labels_bold_terms_and_a_titled_link() -> None:
    message = render(alert(), "markdown")
    assert message.body_format == "markdown"
    lines = message.body.splitlines()
    assert lines[0] == "**Rule:** troop-movements (urgent)"
    assert lines[1] == f"**Article:** [Troops mass near the border]({LINK})"
    assert "**Why:** Thousands of **soldiers** were seen moving toward the **frontier**" in (
        message.body
    )
    assert lines[-1] == "Delivery #12 · key hit-5-desk-0"


def test_json_has_every_field() -> None:
    message = render(alert(step=2), "json")
    assert message.body_format == "text"
    assert json.loads(message.body) == {
        "kind": "alert",
        "id": 12,
        "key": "hit-5-desk-0",
        "channel": "desk",
        "rule": "troop-movements",
        "severity": "urgent",
        "title": "Troops mass near the border",
        "link": LINK,
        "feed": "wire",
        "terms": ["troops", "soldiers", "frontier"],
        "snippet": SNIPPET,
        "published": "2026-03-01T10:00:00Z",
        "seen_at": "2026-03-01T10:02:00Z",
        "story": {"id": 7, "sources": 2, "outlets": ["reuters.example", "ap.example"]},
        "step": 2,
        "notice": "",
        "truncated": False,
    }


def test_highlighting_follows_the_rule_syntax() -> None:
    terms = ("title:sanction*", "embargo~", '"oil price"', "tank NEAR/3 column", "/t-?72/i")
    snippet = "Sanctioned firms face embargoes as oil prices rise; a tank column of T-72s moved."
    body = render(alert(terms=terms, snippet=snippet), "email").body
    for word in ("Sanctioned", "embargoes", "oil prices", "tank", "column"):
        assert f"<mark>{word}</mark>" in body
    assert "<mark>T-72s</mark>" not in body  # regular expressions are not highlighted
    assert "<mark>rise</mark>" not in body


@pytest.mark.parametrize("fmt", FORMATS)
def test_notices_render_in_every_format(fmt: Format) -> None:
    message = render(notice(), fmt)
    assert message.title == "[news-monitor] feed wire is failing"
    if fmt == "json":
        payload = json.loads(message.body)
        assert payload["kind"] == "notice"
        assert payload["notice"] == "wire failed 5 times in a row\nlast error: HTTP 503"
        assert (payload["id"], payload["key"]) == (12, "notice-3-desk")
        return
    assert "wire failed 5 times in a row" in message.body
    assert "last error: HTTP 503" in message.body
    assert footer_of(fmt, key="notice-3-desk") in message.body


def test_notice_text_keeps_the_old_layout() -> None:
    body = render(notice()).body
    assert body == (
        "wire failed 5 times in a row\nlast error: HTTP 503\nDelivery:  #12 · key notice-3-desk"
    )


# --- hostile feed content ----------------------------------------------------------------

HOSTILE_TITLE = "<script>alert(1)</script> **Big** `news` [x](javascript:alert(1)) @everyone"
HOSTILE_SNIPPET = (
    "soldiers <img src=x onerror=alert(1)> ![img](http://evil.example/p.png) "
    "<!channel> @here {{7*7}} {% for x in range(3) %}loop{% endfor %} "
    'mailto://user:pass@mail.example.org <a href="javascript:alert(2)">click</a>'
)


def hostile(**changes: Any) -> PendingDelivery:
    return alert(
        title=HOSTILE_TITLE,
        snippet=HOSTILE_SNIPPET,
        link="javascript:alert(document.cookie)",
        feed="wire <b>",
        terms=("soldiers", "<i>x</i>"),
        outlets=("evil.example <script>",),
        **changes,
    )


def test_html_escapes_feed_values_and_drops_other_links() -> None:
    body = render(hostile(), "email").body
    assert_safe_html(body)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "&lt;img src=x onerror=alert(1)&gt;" in body
    assert not [t for t, _ in tags(body) if t == "a"]  # the only link was javascript:
    assert "&lt;a href=&#34;javascript:alert(2)&#34;&gt;click&lt;/a&gt;" in body
    assert LINK_REMOVED in body
    assert "javascript:alert(document.cookie)" not in body
    assert "&lt;i&gt;x&lt;/i&gt;" in body and "wire &lt;b&gt;" in body
    # The text part apprise derives from the HTML shows the markup as text.
    text = convert_between(NotifyFormat.HTML, NotifyFormat.TEXT, body)
    assert "Article: <script>alert(1)</script>" in text


def test_html_never_links_a_hostile_url_even_if_it_looks_http() -> None:
    body = render(alert(link='https://ok.example/" onmouseover="alert(1)'), "email").body
    assert_safe_html(body)
    [(_, attrs)] = [t for t in tags(body) if t[0] == "a"]
    assert attrs["href"] == "https://ok.example/%22%20onmouseover=%22alert%281%29"


def test_markdown_escapes_metacharacters_and_mentions() -> None:
    message = render(hostile(), "markdown")
    body = message.body
    assert r"\[x\](javascript:alert(1))" in body
    assert r"!\[img\](http://evil.example/p.png)" in body
    assert r"\*\*Big\*\* \`news\`" in body
    assert r"\<script\>alert(1)\</script\>" in body
    assert f"@{ZWSP}everyone" in body and f"@{ZWSP}here" in body
    assert f"\\<!{ZWSP}channel\\>" in body
    assert "@everyone" not in body and "@here" not in body and "<!channel>" not in body
    assert f"**Article:** {markdown_escape(HOSTILE_TITLE)} {LINK_REMOVED}" in body
    assert "](javascript" not in body.replace(r"\](javascript", "")
    # The title may be blended into the body by apprise: it is escaped the same way.
    assert message.title == "[troop-movements] " + markdown_escape(HOSTILE_TITLE)
    # Rendered the way apprise renders Markdown, nothing active is left.
    html = convert_between(NotifyFormat.MARKDOWN, NotifyFormat.HTML, body)
    assert_safe_html(html)
    assert "<img" not in html and "<code>" not in html


def test_markdown_link_urls_are_percent_encoded() -> None:
    body = render(alert(link="https://x.example/a (b) <c>|d"), "markdown").body
    assert "(https://x.example/a%20%28b%29%20%3Cc%3E%7Cd)" in body


@pytest.mark.parametrize("fmt", FORMATS)
def test_titles_are_one_line_without_control_characters(fmt: Format) -> None:
    title = "Breaking\r\nBcc: victim@example.org\u2028X\x00\x07\u202eY\x1b[31m"
    message = render(alert(title=title), fmt)
    assert not re.search(r"[\r\n\x00-\x1f\x7f\u2028\u2029\u202e]", message.title)
    assert "Breaking Bcc: victim@example.org X" in message.title


@pytest.mark.parametrize("fmt", FORMATS)
def test_template_tokens_in_articles_stay_literal(fmt: Format) -> None:
    body = "{{ title }} {{ snippet }}" if fmt != "json" else '{"s": {{ snippet }}}'
    for template in (None, Template(title="{{ title }} {{ snippet }}", body=body)):
        message = render(hostile(), fmt, template=template)
        text = message.title + message.body
        if fmt == "json":
            text = message.title + json.dumps(json.loads(message.body), ensure_ascii=False)
        literal = "{{7\\*7}}" if fmt == "markdown" else "{{7*7}}"
        assert literal in text
        assert "{% for x in range(3) %}loop{% endfor %}" in text
        assert "49" not in text and "looploop" not in text


@pytest.mark.parametrize("fmt", FORMATS)
def test_apprise_urls_in_articles_are_text(fmt: Format) -> None:
    body = render(hostile(), fmt).body
    assert "mailto://user:pass@mail.example.org" in body
    if fmt == "email":
        assert not [a for t, a in tags(body) if t == "a"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_huge_titles_and_snippets_fit(fmt: Format) -> None:
    message = render(alert(title="T" * 10_000, snippet="s " * 5_000), fmt)
    assert len(message.title) == 250 and message.title.endswith("…")
    assert len(message.body) <= 32768
    assert "T" * 600 not in message.body
    if fmt == "json":
        assert json.loads(message.body)["id"] == 12
    else:
        assert message.body.endswith(footer_of(fmt) + ("</p>" if fmt == "email" else ""))


@pytest.mark.parametrize("fmt", FORMATS)
def test_small_limits_shrink_the_snippet_first_and_keep_the_footer(fmt: Format) -> None:
    limits = Limits(title=40, body=700)
    message = render(alert(snippet="word " * 1000, title="Title " * 100), fmt, limits=limits)
    assert len(message.title) <= 40
    assert len(message.body) <= 700
    if fmt == "json":
        payload = json.loads(message.body)
        assert (payload["id"], payload["key"], payload["truncated"]) == (12, "hit-5-desk-0", True)
        assert payload["rule"] == "troop-movements"
    else:
        assert footer_of(fmt) in message.body
        assert "troop-movements" in message.body  # short fields survive
        if fmt == "email":
            assert_safe_html(message.body)


@pytest.mark.parametrize("fmt", FORMATS)
def test_tiny_limits_cut_the_body_but_keep_the_footer(fmt: Format) -> None:
    message = render(alert(), fmt, limits=Limits(body=150))
    assert len(message.body) <= 150
    if fmt == "json":
        assert json.loads(message.body)["id"] == 12
    else:
        assert footer_of(fmt) in message.body
    if fmt == "email":
        assert_safe_html(message.body)


def test_last_resort_cut_leaves_no_open_markdown() -> None:
    body = render(alert(), "markdown", limits=Limits(body=150)).body
    assert (
        body
        == "**Rule:** troop-movements (urgent)\n**Article:** …\n\nDelivery #12 · key hit-5-desk-0"
    )


def test_last_resort_cut_closes_html_tags() -> None:
    long_template = Template(body="<div><b>" + "x" * 2000 + "</b></div>")
    body = render(alert(), "email", limits=Limits(body=300), template=long_template).body
    assert len(body) <= 300
    assert body.count("<div>") == body.count("</div>") and "</b></div><p" in body
    assert footer_of("email") in body


HOSTILE_TEXT = st.one_of(
    st.text(),
    st.text(alphabet=st.sampled_from(list("<>\"'&*_[]()`!@#\\{}%\r\n\x00\u2028 :/javscriptJ"))),
    st.sampled_from([HOSTILE_TITLE, HOSTILE_SNIPPET, "\ud800x", "é" * 3000]),
)
LINKS = st.one_of(
    st.sampled_from(
        [LINK, "", "javascript:alert(1)", " JavaScript:alert(1)", "data:text/html,<script>"]
    ),
    st.text().map(lambda s: "https://x.example/" + s),
    st.text(),
)


@settings(
    max_examples=150,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    title=HOSTILE_TEXT,
    snippet=HOSTILE_TEXT,
    link=LINKS,
    fmt=st.sampled_from(FORMATS),
    body_limit=st.integers(min_value=200, max_value=4000),
    title_limit=st.integers(min_value=20, max_value=300),
)
def test_any_article_text_renders_safely(
    title: str, snippet: str, link: str, fmt: Format, body_limit: int, title_limit: int
) -> None:
    limits = Limits(title=title_limit, body=body_limit)
    d = alert(title=title, snippet=snippet, link=link, terms=("soldiers", title[:20]))
    for message in (render(d, fmt, limits=limits), render_digest(digest(), fmt, limits=limits)):
        assert "\r" not in message.title and "\n" not in message.title
        assert len(message.title) <= title_limit
        assert len(message.body) <= body_limit
        if fmt == "json":
            payload = json.loads(message.body)
            assert payload["id"] in (12, 5)
        else:
            assert "#12 · key hit-5-desk-0" in message.body or "#5 · key digest-5" in message.body
        if fmt == "email":
            assert_safe_html(message.body)
            assert not re.search(r"href=\"\s*javascript", message.body, re.IGNORECASE)


# --- user templates ----------------------------------------------------------------------


def test_custom_templates_per_format_escape_values() -> None:
    template = Template(
        title="{{ severity|upper }}: {{ title }}",
        body="{{ title }} | {{ highlighted }} | {{ terms|join(' / ') }} | {{ nothing }}.",
    )
    d = alert(title="A <b>*bold*</b> @everyone")
    text = render(d, "text", template=template)
    assert text.title == f"URGENT: A <b>*bold*</b> @{ZWSP}everyone"
    assert text.body.startswith(f"A <b>*bold*</b> @{ZWSP}everyone | {SNIPPET} | troops / ")
    assert text.body.endswith(" | .\nDelivery:  #12 · key hit-5-desk-0")

    email = render(d, "email", template=template)
    assert email.title == "URGENT: A <b>*bold*</b> @everyone"  # a subject is plain text
    assert email.body.startswith("A &lt;b&gt;*bold*&lt;/b&gt; @everyone | Thousands of <mark>")
    assert footer_of("email") in email.body

    markdown = render(d, "markdown", template=template)
    assert markdown.title == rf"URGENT: A \<b\>\*bold\*\</b\> @{ZWSP}everyone"
    assert markdown.body.startswith(
        rf"A \<b\>\*bold\*\</b\> @{ZWSP}everyone | Thousands of **soldiers**"
    )
    assert markdown.body.endswith("\n\nDelivery #12 · key hit-5-desk-0")


def test_custom_json_body_turns_values_into_literals() -> None:
    template = Template(body='{"text": {{ title }}, "terms": {{ terms }}, "n": {{ sources }}}')
    message = render(alert(title='He said "hi"\n{{x}}'), "json", template=template)
    assert json.loads(message.body) == {
        "text": 'He said "hi" {{x}}',
        "terms": ["troops", "soldiers", "frontier"],
        "n": 2,
        "id": 12,
        "key": "hit-5-desk-0",
    }


def test_custom_json_body_that_is_not_json_falls_back() -> None:
    message = render(alert(), "json", template=Template(body="Alert: {{ title }}"))
    payload = json.loads(message.body)
    assert payload["kind"] == "alert" and payload["template_error"] == "JSONDecodeError"


def test_custom_html_cannot_switch_escaping_off() -> None:
    for source in (
        "{% autoescape false %}{{ title }}{% endautoescape %}",
        "{{ title|e|e }}{{ title|lower }}",
    ):
        body = render(
            alert(title="<script>x</script>"), "email", template=Template(body=source)
        ).body
        assert "<script" not in body
    assert check_template("{{ title|safe }}") == "line 1: No filter named 'safe'."


def test_custom_html_links_use_href() -> None:
    source = '<a href="{{ href }}">{{ title }}</a>'
    ok = render(alert(), "email", template=Template(body=source)).body
    assert ok.startswith(f'<a href="{LINK}">Troops mass near the border</a>')
    bad = render(alert(link="javascript:alert(1)"), "email", template=Template(body=source)).body
    assert bad.startswith('<a href="">Troops')


@pytest.mark.parametrize(
    ("source", "error"),
    [
        ("{{ ().__class__.__base__.__subclasses__() }}", "SecurityError"),
        ("{{ 1 / 0 }}", "ZeroDivisionError"),
        ("{{ title|frobnicate }}", "TemplateAssertionError"),
        ("{% for %}", "TemplateSyntaxError"),
        ("{{ range(10**9)|list }}", "OverflowError"),
    ],
)
@pytest.mark.parametrize("fmt", FORMATS)
def test_failing_custom_body_falls_back_with_a_note(fmt: Format, source: str, error: str) -> None:
    message = render(alert(), fmt, template=Template(body=source))
    default = render(alert(), fmt)
    if fmt == "json":
        payload = json.loads(message.body)
        assert payload.pop("template_error") == error
        assert payload == json.loads(default.body)
        return
    note = f"(custom template failed: {error})"
    assert (markdown_escape(note) if fmt == "markdown" else note) in message.body
    assert message.body.startswith(default.body.rsplit("Delivery", 1)[0].rstrip()[:200])
    assert footer_of(fmt) in message.body


def test_failing_custom_title_falls_back_with_a_note() -> None:
    message = render(alert(), template=Template(title="{{ 1 / 0 }}", body="{{ title }}"))
    assert message.title == "[troop-movements] Troops mass near the border"
    assert message.body == (
        "Troops mass near the border\n(custom template failed: ZeroDivisionError)\n"
        "Delivery:  #12 · key hit-5-desk-0"
    )


def test_empty_custom_title_uses_the_default() -> None:
    message = render(alert(), template=Template(title="{{ nothing }}  "))
    assert message.title == "[troop-movements] Troops mass near the border"


def test_unknown_variables_render_empty() -> None:
    body = render(alert(), template=Template(body="[{{ nope }}][{{ nope.deeper }}]")).body
    assert body.startswith("[][]\n")


def test_notices_ignore_custom_templates() -> None:
    template = Template(title="{{ 1/0 }}", body="custom")
    assert render(notice(), "text", template=template) == render(notice(), "text")


def test_check_template() -> None:
    assert check_template("[{{ rule }}] {{ title|upper }}{% if step %}!{% endif %}") is None
    assert check_template("ok\n{% if x %}\nno end") is not None
    error = check_template("line one\n{{ title ")
    assert error is not None and error.startswith("line 2: ") and "\n" not in error
    assert check_template("{{ x|nope }}") == "line 1: No filter named 'nope'."


# --- channel formats ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "fmt"),
    [
        ("mailto://user:pass@example.org", "email"),
        ("mailtos://user:pass@example.org?to=desk@example.org", "email"),
        ("SES://key/secret/region/from@example.org", "email"),
        ("sendgrid://key:from@example.org", "email"),
        ("mailgun://user@example.org/key", "email"),
        ("json://hooks.example.org/alerts", "json"),
        ("jsons://hooks.example.org/alerts", "json"),
        ("form://hooks.example.org", "json"),
        ("xmls://hooks.example.org", "json"),
        ("console://", "text"),
        ("slack://T1/B1/abc", "markdown"),
        ("discord://id/token", "markdown"),
        ("tgram://bot/chat", "markdown"),
        ("mmosts://host/token", "markdown"),
        ("matrixs://user:pass@host", "markdown"),
        ("ntfy://topic", "markdown"),
        ("pover://user@token", "text"),
        ("something-new://x", "text"),
        ("not a url", "text"),
    ],
)
def test_format_for_url(url: str, fmt: Format) -> None:
    assert format_for_url(url) == fmt


def test_one_line() -> None:
    assert one_line("a\r\nb\tc\x00d\u2028e", 100) == "a b cd e"
    assert one_line("abcdef", 4) == "abc…"
    assert one_line("abcdef", 0) == ""


# --- digests -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "title"),
    [
        ({}, "[news-monitor] digest: 12 alerts (rule sanctions)"),
        ({"label": "channel desk"}, "[news-monitor] digest: 12 alerts (channel desk)"),
        ({"reason": "quiet-hours", "total": 5}, "[news-monitor] quiet hours ended: 5 alerts"),
        (
            {"reason": "storm", "label": "wire", "total": 240},
            "[news-monitor] storm: 240 hits from feed wire",
        ),
        ({"total": 1}, "[news-monitor] digest: 1 alert (rule sanctions)"),
    ],
)
def test_digest_titles(changes: dict[str, Any], title: str) -> None:
    assert render_digest(digest(**changes)).title == title


def test_digest_text_lists_items_and_counts_the_rest() -> None:
    body = render_digest(digest()).body
    assert body.splitlines()[:5] == [
        "digest: 12 alerts (rule sanctions)",
        "",
        "- [sanctions] (normal) EU adopts sanctions package 0",
        "  Link:    https://eu.example/0",
        "  Feed:    wire · Matched: sanctions",
    ]
    assert body.endswith("\n+9 more\nDigest:    #5 · key digest-5-desk")
    assert "+" not in render_digest(digest(total=3)).body.replace("+9", "")


@pytest.mark.parametrize("fmt", FORMATS)
def test_digest_formats(fmt: Format) -> None:
    message = render_digest(digest(), fmt)
    if fmt == "json":
        payload = json.loads(message.body)
        assert payload["kind"] == "digest"
        assert (payload["id"], payload["key"], payload["reason"]) == (5, "digest-5-desk", "digest")
        assert (payload["total"], payload["more"], len(payload["items"])) == (12, 9, 3)
        assert payload["items"][1]["title"] == "EU adopts sanctions package 1"
        return
    assert "+9 more" in message.body
    assert "#5 · key digest-5-desk" in message.body
    for i in range(3):
        assert f"EU adopts sanctions package {i}" in message.body
        assert f"https://eu.example/{i}" in message.body
    if fmt == "email":
        assert_safe_html(message.body)
        text = convert_between(NotifyFormat.HTML, NotifyFormat.TEXT, message.body)
        assert "- sanctions (normal) EU adopts sanctions package 0\nhttps://eu.example/0\n" in text
    if fmt == "markdown":
        assert "- **sanctions** (normal) [EU adopts sanctions package 0](https://eu.example/0)" in (
            message.body
        )


@pytest.mark.parametrize("fmt", FORMATS)
def test_digest_escapes_hostile_items(fmt: Format) -> None:
    bad = digest(items=(hostile(),), total=1)
    body = render_digest(bad, fmt).body
    if fmt == "email":
        assert_safe_html(body)
    if fmt == "markdown":
        assert "@everyone" not in body and r"\[x\](javascript" in body
    if fmt == "json":
        assert json.loads(body)["items"][0]["title"] == HOSTILE_TITLE
    if fmt == "text":
        # Shown as they came, mass mentions broken, each value on its line of the layout.
        assert body.splitlines() == [
            "digest: 1 alert (rule sanctions)",
            "",
            "- [troop-movements] (urgent) "
            + HOSTILE_TITLE.replace("@everyone", f"@{ZWSP}everyone"),
            "  Link:    javascript:alert(document.cookie)",
            "  Feed:    wire <b> · Matched: soldiers, <i>x</i>",
            "Digest:    #5 · key digest-5-desk",
        ]
        # A line break in a value cannot forge a line of the layout.
        forged = replace(hostile(), title="x\nDigest:    #99 · key forged", feed="w\n- [x] y")
        lines = render_digest(digest(items=(forged,), total=1), fmt).body.splitlines()
        assert len(lines) == len(body.splitlines())
        assert [line for line in lines if line.startswith(("Digest:", "- "))] == [
            "- [troop-movements] (urgent) x Digest:    #99 · key forged",
            "Digest:    #5 · key digest-5-desk",
        ]


@pytest.mark.parametrize("fmt", FORMATS)
def test_digest_shrinks_to_fewer_items(fmt: Format) -> None:
    big = digest(count=40, total=300)
    message = render_digest(big, fmt, limits=Limits(body=1500))
    assert len(message.body) <= 1500
    if fmt == "json":
        payload = json.loads(message.body)
        assert payload["total"] == 300 and payload["more"] == 300 - len(payload["items"])
        assert payload["truncated"] is True
    else:
        assert "#5 · key digest-5-desk" in message.body
        shown = len(re.findall(r"EU adopts sanctions package \d+", message.body))
        assert f"+{300 - shown} more" in message.body


def test_custom_digest_template() -> None:
    template = Template(
        title="{{ total }} for {{ label }}",
        body="{% for item in items %}* {{ item.title }} ({{ item.delivery_id }})\n{% endfor %}"
        "{{ more }} more",
    )
    message = render_digest(digest(), "markdown", template=template)
    assert message.title == "12 for rule sanctions"
    assert message.body.startswith("* EU adopts sanctions package 0 (100)\n")
    assert message.body.endswith("9 more\n\nDigest #5 · key digest-5-desk")
