"""The parse stage against hostile feeds: parse_feed in-process, and ParsePool's workers.

Pool tests run real worker processes (forkserver) with short deadlines and small memory
caps; misbehaviour comes from :mod:`parse_hooks`, which the workers import by name.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import multiprocessing
import os
import signal
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import parse_hooks
import pytest
from conftest import Item, rss, wait_for
from hypothesis import given, settings
from hypothesis import strategies as st

import monitor.parse.clean
import monitor.parse.jsonfeed
import monitor.parse.rss
import monitor.parse.worker
import monitor.parse.xmlfeed
import monitor.parse.xmlguard
from monitor.errors import FeedError
from monitor.match import Matcher, field_texts, parse_query
from monitor.models import Article, Rule
from monitor.parse import (
    MAX_AUTHOR,
    MAX_CATEGORIES,
    MAX_CATEGORY,
    MAX_ENTITIES,
    MAX_FIELD,
    MAX_LINK,
    MAX_TITLE,
    MAX_UID,
    ParsePool,
    default_context,
    parse_feed,
)
from monitor.text import content_hash, normalize

FEEDS = Path(__file__).parent / "data" / "feeds"
URL = "https://reader:s3cret@news.example.org/feeds/wire.xml"
SHOWN = "https://***@news.example.org/feeds/wire.xml"
RSS_TYPE = {"content-type": "application/rss+xml; charset=utf-8"}


def parse(content: bytes | str, headers: dict[str, str] | None = None) -> list[Article]:
    data = content.encode("utf-8") if isinstance(content, str) else content
    return parse_feed("wire", URL, data, RSS_TYPE if headers is None else headers)


def one_item(
    title: str = "Title", extra: str = "", *, guid: str | None = "g-1", prolog: str = ""
) -> str:
    """An RSS document with one item; ``extra`` is raw XML inside the item."""
    guid_xml = f'<guid isPermaLink="false">{guid}</guid>' if guid is not None else ""
    return (
        f'<?xml version="1.0" encoding="utf-8"?>\n{prolog}<rss version="2.0"><channel>'
        f"<title>Wire</title><link>https://news.example.org/</link>"
        f"<item><title>{title}</title>{guid_xml}{extra}</item></channel></rss>"
    )


def fifty_items() -> bytes:
    start = datetime(2026, 3, 1, tzinfo=UTC)
    items = [
        Item(
            title=f"Story {i}: troops near the border, talks in Geneva",
            description=f"<p>Paragraph {i} with <b>markup</b> &amp; an entity.</p>" * 8,
            link=f"https://news.example.org/story/{i}",
            guid=f"wire-{i:04d}",
            published=start + timedelta(minutes=i),
        )
        for i in range(50)
    ]
    return rss(items).encode()


# --- JSON Feed -----------------------------------------------------------------------------


def test_json_feed_1_1_items_become_articles() -> None:
    content = (FEEDS / "jsonfeed-1.1.json").read_bytes()
    first, second, third, fourth = parse_feed(
        "wire", URL, content, {"content-type": "application/feed+json"}
    )

    assert first.uid == "wire-1001"
    assert first.link == "https://news.example.org/world/troops-border"
    assert first.title == "Troops mass near the border"
    assert first.summary == "Armoured columns seen moving toward the frontier."
    assert first.content == (
        "Satellite images show armoured columns moving.\nSecond paragraph & more."
    )
    assert first.author == "Ann Reporter, Bo Editor"
    assert first.categories == ("world", "defence")
    assert first.published == datetime(2026, 3, 1, 7, 30, tzinfo=UTC)  # date_published wins
    assert first.content_hash == content_hash(first.title, first.summary, first.content)

    assert second.uid == "1002"  # numeric ids are accepted
    assert second.link == "https://other.example.net/story"  # external_url as a fallback
    assert second.title == "(untitled)"
    assert second.content == "Plain text: 3 < 4 and <b> stays literal."  # content_text is text
    assert second.author == "Wire desk"  # the feed's authors
    assert second.published == datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # date_modified

    # A relative url is resolved against the feed's URL, without its credentials.
    assert third.uid == third.link == "https://news.example.org/local/bakery"
    # "not an item" is skipped; an item with neither id nor url gets a content hash.
    assert fourth.uid == "hash:" + content_hash("No id, no link", "", "Only text.")


def test_json_feed_1_0_author_object_and_content_text() -> None:
    content = (FEEDS / "jsonfeed-1.0.json").read_bytes()
    embargo, second = parse_feed("wire", URL, content, {"Content-Type": "application/json"})

    assert embargo.uid == "https://news.example.org/2017/embargo"
    assert embargo.author == "Cy Correspondent"
    assert embargo.content == "The embargo was extended for another year."
    assert embargo.published == datetime(2017, 5, 17, 15, 2, 12, tzinfo=UTC)
    assert second.author == "Old desk"
    assert second.content == "Feed-level author applies here."


@pytest.mark.parametrize(
    "headers",
    [
        {"content-type": "application/feed+json; charset=utf-8"},
        {"content-type": "application/json"},
        {"content-type": "text/plain"},  # sniffed: starts with { and has a JSON Feed version
        {},
    ],
)
def test_json_feed_is_recognised_by_content_type_or_by_its_version(
    headers: dict[str, str],
) -> None:
    content = (
        b'\xef\xbb\xbf  {"version": "https://jsonfeed.org/version/1.1", "items": [{"id": "a"}]}'
    )
    assert [a.uid for a in parse_feed("wire", URL, content, headers)] == ["a"]


def test_rss_served_as_json_is_still_parsed_as_rss() -> None:
    articles = parse(one_item("Mislabelled"), {"content-type": "application/json"})
    assert [a.title for a in articles] == ["Mislabelled"]


def test_an_empty_json_feed_has_no_articles() -> None:
    content = b'{"version": "https://jsonfeed.org/version/1.1", "title": "x", "items": []}'
    assert parse(content, {"content-type": "application/feed+json"}) == []


def test_an_integer_python_will_not_read_costs_only_its_item_its_id() -> None:
    """Python refuses to read an integer of more than 4,300 digits; one such id is text
    (a long id: hashed), and the feed's other items are all there."""
    huge = b"9" * 5000
    document = (
        b'{"version": "https://jsonfeed.org/version/1.1", "items": ['
        b'{"id": ' + huge + b', "title": "Troops at the border"}, ' + huge + b", "
        b'{"id": 7, "title": "Talks resume"}]}'
    )
    articles = parse(document, {"content-type": "application/feed+json"})
    assert [a.title for a in articles] == ["Troops at the border", "Talks resume"]
    assert articles[0].uid.startswith("sha256:") and articles[1].uid == "7"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b'{"version": "https://jsonfeed.org/version/1.1", "items": [', "not valid JSON"),
        (b"", "not valid JSON"),
        (b"[1, 2, 3]", "the document is a JSON list, not an object"),
        (b'{"items": []}', 'not a JSON Feed: "version" should start with'),
        (b'{"version": "2.0", "items": []}', "but is '2.0'"),
        (b'{"version": "https://jsonfeed.org/version/1.1"}', '"items" must be a list'),
        (
            b'{"version": "https://jsonfeed.org/version/1.1", "items": {"id": 1}}',
            '"items" must be a list, not dict',
        ),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ],
    ids=[
        "truncated",
        "empty",
        "list",
        "no-version",
        "wrong-version",
        "no-items",
        "items-dict",
        "deep",
    ],
)
def test_broken_json_feeds_are_feed_errors_naming_the_url(content: bytes, expected: str) -> None:
    with pytest.raises(FeedError) as caught:
        parse(content, {"content-type": "application/feed+json"})
    assert caught.value.url == SHOWN
    assert "s3cret" not in str(caught.value)
    assert expected in caught.value.message


# --- sanitising ----------------------------------------------------------------------------


def _json_item(**fields: Any) -> bytes:
    return json.dumps(
        {"version": "https://jsonfeed.org/version/1.1", "items": [{"id": "j-1", **fields}]}
    ).encode()


def _clean(text: str) -> None:
    """Storable (valid UTF-8) and free of control characters but newlines."""
    text.encode("utf-8")
    assert not any((ord(c) < 32 and c != "\n") or 0x7F <= ord(c) <= 0x9F for c in text), text


def test_control_characters_and_lone_surrogates_are_removed_from_json_fields() -> None:
    dirty = "a\u0000b\ud800c\udfffd\u0007e\u009bf\u007fg\ufffeh"
    [article] = parse(
        _json_item(
            title=dirty,
            summary=dirty,
            content_text=dirty,
            url=f"https://news.example.org/{dirty}",
            authors=[{"name": dirty}],
            tags=[dirty],
        )
    )
    for value in (article.title, article.summary, article.author, article.categories[0]):
        assert value == "abcdefgh"
    assert article.content == ""  # the same as the summary, so not kept twice
    assert article.link == "https://news.example.org/abcdefgh"


def test_control_characters_and_surrogate_references_are_removed_from_rss_fields() -> None:
    # Raw control bytes, references to surrogates and to numbers beyond U+10FFFF: expat
    # refuses them and feedparser's fallback parser used to crash on the references.
    title = "a\x01b&#xD800;c&#55296;d&#x110000;e&#0;f&#99999999999999999999;g&#x41;&#128512;"
    [article] = parse(
        one_item(title, "<description>x\x0by&#xDFFF;z</description><author>p\x02q</author>")
    )
    assert article.title == "abcdefgA😀"
    assert article.summary == "xyz"
    assert article.author == "pq"
    for field in (article.title, article.summary, article.author):
        _clean(field)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32"])
def test_bad_character_references_in_a_wide_encoding_cost_only_the_reference(
    encoding: str,
) -> None:
    """The repair reads UTF-16 and UTF-32 as text (a byte pattern never matches there)
    and writes them back as they were: one bad reference must not lose the feed."""
    title = "Troops&#xD800; cross&#x110000; the border&#233;"
    document = one_item(title).replace('encoding="utf-8"', f'encoding="{encoding[:6]}"')
    [article] = parse(document.encode(encoding), {"content-type": "application/rss+xml"})
    assert article.title == "Troops cross the borderé"


def test_invalid_utf8_bytes_do_not_break_parsing() -> None:
    content = one_item("caf\xe9 ").encode("latin-1") + b"\xed\xa0\x80\xff"
    [article] = parse(content)
    _clean(article.title)


def test_html_becomes_text_and_scripts_are_dropped() -> None:
    html = (
        "&lt;p&gt;Troops &lt;b&gt;massing&lt;/b&gt;&lt;/p&gt;&lt;script&gt;steal()&lt;/script&gt;"
        "&lt;ul&gt;&lt;li&gt;one&lt;/li&gt;&lt;li&gt;two&lt;/li&gt;&lt;/ul&gt;"
    )
    [article] = parse(
        one_item("A &lt;i&gt;bold&lt;/i&gt;\nmove", f"<description>{html}</description>")
    )
    assert article.title == "A bold move"  # one line
    assert article.summary == "Troops massing\none\ntwo"


# Pieces of feed HTML, plain and awkward: the fast path must agree with HTMLParser on
# every mix of them, or step aside.
_HTML_PIECES = [
    "Troops",
    " massing ",
    "near\n",
    "\t",
    "\xa0",
    "the border.",
    "&amp;",
    "&lt;",
    "&gt;",
    "&#39;",
    "&#x41;",
    "&nbsp;",
    "&eacute;",
    "&am",
    "p;",
    "&",
    "&bogus;",
    ";",
    ">",
    "=",
    "'",
    '"',
    "<p>",
    "</p>",
    "<P>",
    "</P >",
    "<br>",
    "<br/>",
    "<BR />",
    "<b>",
    "</b>",
    '<a href="https://x.example/?a=1&amp;b=2">',
    "</a>",
    "<div class='lede'>",
    "</div>",
    "<img src=x.png alt=photo>",
    '<img alt="a>b">',
    "<li>",
    "<ul>",
    "</ul>",
    "<h2>",
    "<o:p>",
    "</o:p>",
    "<my-tag>",
    "<",
    "< b",
    "<3",
    "</",
    "<!-- c -->",
    "<![CDATA[x]]>",
    "<!DOCTYPE html>",
    "<script>",
    "x<y",
    "</script>",
    "<style>",
    "p{}",
    "</style>",
    "<applet>",
    "<title>",
    "</title>",
    "<textarea>",
    "<?php x ?>",
    "<table>",
    "<tr>",
    "</tr>",
    "<a b c=d e>",
]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(_HTML_PIECES), max_size=30))
def test_fast_html_to_text_agrees_with_htmlparser(pieces: list[str]) -> None:
    value = "".join(pieces)
    fast = monitor.parse.clean._plain_html_text(value)
    if fast is not None:
        tidy = monitor.parse.clean._tidy
        assert tidy(fast, MAX_FIELD, False) == tidy(
            monitor.parse.clean._parsed_html_text(value), MAX_FIELD, False
        )


def test_fast_html_path_takes_plain_feed_html_and_leaves_the_rest() -> None:
    plain = '<p>Troops <b>massing</b> &amp; <a href="https://x.example/">more</a></p><br/>x'
    assert monitor.parse.clean._plain_html_text(plain) == "\nTroops massing & more\n\n\nx"
    for awkward in ("a <script>x</script>", "<!-- c -->", "1 < 2", "<o:p>x</o:p>"):
        assert monitor.parse.clean._plain_html_text(awkward) is None


@pytest.mark.parametrize("kind", ["rss", "json"])
def test_long_fields_are_cut_to_their_limits(kind: str) -> None:
    long = "word " * 100_000  # 500,000 characters
    body = "text " * 100_000
    link = "https://news.example.org/" + "a" * 5000
    tags = [f"tag{i} " + "x" * 300 for i in range(80)]
    if kind == "rss":
        categories = "".join(f"<category>{t}</category>" for t in tags)
        content = one_item(
            long,
            f"<link>{link}</link><description>{long}</description><author>{long}</author>"
            f"<content:encoded><![CDATA[<p>{body}</p>]]></content:encoded>{categories}",
        ).replace(
            '<rss version="2.0">',
            '<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/">',
        )
        [article] = parse(content)
    else:
        [article] = parse(
            _json_item(
                title=long,
                summary=long,
                content_html=f"<p>{body}</p>",
                url=link,
                authors=[{"name": long}],
                tags=tags,
            )
        )
    assert len(article.title) == MAX_TITLE
    assert len(article.summary) == MAX_FIELD
    assert len(article.content) == MAX_FIELD
    assert len(article.author) == MAX_AUTHOR
    assert article.link == link[:MAX_LINK]
    assert len(article.categories) == MAX_CATEGORIES
    assert all(len(c) <= MAX_CATEGORY for c in article.categories)


def test_long_guids_are_hashed_and_the_hash_is_stable() -> None:
    guid = "urn:wire:" + "x" * 5000
    [article] = parse(one_item(guid=guid))
    assert article.uid == "sha256:" + hashlib.sha256(guid.encode()).hexdigest()
    assert len(article.uid) <= MAX_UID
    [again] = parse(_json_item(id=guid))
    assert again.uid == article.uid


def test_items_without_guid_or_link_get_a_content_hash_id() -> None:
    [article] = parse(one_item("Bare item", "<description>Body</description>", guid=None))
    assert article.uid == "hash:" + content_hash("Bare item", "Body", "")
    assert parse(one_item("Bare item", "<description>Body</description>", guid=None)) == [article]


@pytest.mark.parametrize(
    ("pub_date", "expected"),
    [
        ("Mon, 02 Mar 2026 09:00:00 GMT", datetime(2026, 3, 2, 9, 0, tzinfo=UTC)),
        ("Thu, 01 Jan 1970 00:00:00 GMT", None),
        ("Sat, 01 Jan 2200 00:00:00 GMT", None),
        ("Fri, 31 Dec 9999 23:59:59 GMT", None),
        ("yesterday-ish", None),
    ],
)
def test_rss_dates_outside_a_sane_range_are_dropped(
    pub_date: str, expected: datetime | None
) -> None:
    [article] = parse(one_item(extra=f"<pubDate>{pub_date}</pubDate>"))
    assert article.published == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-03-02T09:00:00Z", datetime(2026, 3, 2, 9, 0, tzinfo=UTC)),
        ("2026-03-02T09:00:00.123456-05:00", datetime(2026, 3, 2, 14, 0, 0, 123456, tzinfo=UTC)),
        ("2026-03-02T09:00:00", datetime(2026, 3, 2, 9, 0, tzinfo=UTC)),  # no zone: UTC
        ("1900-01-01T00:00:00Z", None),
        ("9999-12-31T23:59:59-12:00", None),
        ("0001-01-01T00:00:00+14:00", None),
        ("2026-13-45T99:00:00Z", None),
        ("soon", None),
        (1772442000, None),  # a number is not an RFC 3339 date
        ("2026-03-02T09:00:00Z" + " " * 100, None),
    ],
)
def test_json_dates_outside_a_sane_range_or_invalid_are_dropped(
    value: object, expected: datetime | None
) -> None:
    [article] = parse(_json_item(date_published=value))
    assert article.published == expected


@pytest.mark.parametrize(
    ("link", "expected"),
    [
        ("https://news.example.org/a", "https://news.example.org/a"),
        ("  http://news.example.org/b \n", "http://news.example.org/b"),
        ("/relative/c", "https://news.example.org/relative/c"),
        ("d?x=1", "https://news.example.org/feeds/d?x=1"),
        ("javascript:alert(document.cookie)", ""),
        ("JaVaScRiPt:alert(1)", ""),
        ("data:text/html,<script>alert(1)</script>", ""),
        ("file:///etc/passwd", ""),
        ("https://news.example.org/with space", "https://news.example.org/with%20space"),
    ],
)
def test_only_http_links_are_kept_and_relative_ones_are_resolved_without_credentials(
    link: str, expected: str
) -> None:
    [article] = parse(one_item(extra=f"<link>{link.replace('<', '&lt;')}</link>"))
    assert article.link == expected


def test_relative_links_follow_a_content_location_header() -> None:
    headers = {**RSS_TYPE, "Content-Location": "/archive/2026/feed.xml"}
    [article] = parse(one_item(extra="<link>story</link>"), headers)
    assert article.link == "https://news.example.org/archive/2026/story"


def test_a_guid_is_used_as_the_link_only_when_it_is_a_full_url() -> None:
    [number] = parse(one_item().replace('<guid isPermaLink="false">', "<guid>"))
    assert number.uid == "g-1" and number.link == ""
    [url] = parse(one_item(guid="https://news.example.org/x").replace(' isPermaLink="false"', ""))
    assert url.link == "https://news.example.org/x"


def test_entries_beyond_the_limit_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    # Each reader looks the limit up in its own module.
    monkeypatch.setattr(monitor.parse.xmlfeed, "MAX_ENTRIES", 3)
    monkeypatch.setattr(monitor.parse.jsonfeed, "MAX_ENTRIES", 3)
    assert len(parse(fifty_items())) == 3
    items = [{"id": str(i)} for i in range(10)]
    content = json.dumps({"version": "https://jsonfeed.org/version/1", "items": items}).encode()
    assert [a.uid for a in parse(content)] == ["0", "1", "2"]


def test_content_that_looks_like_a_path_is_never_opened(tmp_path: Path) -> None:
    # feedparser given plain bytes tries open(content) first: a server answering with a
    # local path (/etc/passwd, /dev/zero) would make it read that file.
    local = tmp_path / "local-feed.xml"
    local.write_text(one_item("Local secret"), encoding="utf-8")
    with pytest.raises(FeedError, match="not an RSS or Atom feed"):
        parse(str(local).encode())


# --- nothing is fetched ---------------------------------------------------------------------


class Tripwire:
    """An HTTP server that counts every request; nothing should ever reach it."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        tripwire = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                tripwire.requests.append(self.path)
                body = b'<!ENTITY y "PWNED">' if self.path.endswith(".dtd") else b"PWNED"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"


@pytest.fixture
def tripwire() -> Iterator[Tripwire]:
    server = Tripwire()
    server.thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
        server.thread.join(timeout=5)


def hostile_documents(base: str) -> dict[str, str]:
    return {
        "external-entity": one_item(
            "&x;", prolog=f'<!DOCTYPE rss [\n<!ENTITY x SYSTEM "{base}/entity">\n]>\n'
        ),
        "external-entity-one-line": one_item(
            "&x;", prolog=f'<!DOCTYPE rss [<!ENTITY x SYSTEM "{base}/entity1">]>'
        ),
        "external-dtd": one_item("&y;", prolog=f'<!DOCTYPE rss SYSTEM "{base}/external.dtd">\n'),
        "parameter-entity": one_item(
            "&y;", prolog=f'<!DOCTYPE rss [<!ENTITY % p SYSTEM "{base}/param.dtd"> %p;]>\n'
        ),
        "xinclude": one_item(
            "x",
            f'<description><xi:include xmlns:xi="http://www.w3.org/2001/XInclude" '
            f'href="{base}/xinclude" parse="text"/></description>',
        ),
        "xml-stylesheet": one_item(
            "x", prolog=f'<?xml-stylesheet type="text/xsl" href="{base}/style.xsl"?>\n'
        ),
        "atom-xinclude": (
            '<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom" '
            'xmlns:xi="http://www.w3.org/2001/XInclude"><title>t</title>'
            f'<entry><id>e</id><title>x</title><content type="xhtml"><div '
            f'xmlns="http://www.w3.org/1999/xhtml"><xi:include href="{base}/atom"/></div>'
            "</content></entry></feed>"
        ),
    }


def test_the_tripwire_counts_requests(tripwire: Tripwire) -> None:
    with urllib.request.urlopen(f"{tripwire.base}/control") as response:
        assert response.read() == b"PWNED"
    assert tripwire.requests == ["/control"]


@pytest.mark.parametrize(
    "name",
    [
        "external-entity",
        "external-entity-one-line",
        "external-dtd",
        "parameter-entity",
        "xinclude",
        "xml-stylesheet",
        "atom-xinclude",
    ],
)
def test_nothing_a_feed_points_at_is_ever_fetched(tripwire: Tripwire, name: str) -> None:
    document = hostile_documents(tripwire.base)[name]
    articles = parse(document)
    # parse_feed is synchronous: a fetch it made would have been served (and counted,
    # before the answer went out) by the time it returned.
    assert tripwire.requests == []
    assert articles and all("PWNED" not in a.title + a.summary + a.content for a in articles)


# --- XML bombs ------------------------------------------------------------------------------


def billion_laughs(*, one_line: bool = False) -> str:
    lines = ['<!ENTITY lol "lol">']
    lines += [
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'
        for i in range(1, 10)
    ]
    sep = "" if one_line else "\n"
    return one_item("&lol9;", prolog=f"<!DOCTYPE rss [{sep}{sep.join(lines)}{sep}]>\n")


def quadratic_blowup(value: int = 100_000, references: int = 20_000) -> str:
    """One "safe" entity referenced many times: feedparser's lenient parser expands it
    with no bound (the default makes a 2 GB title)."""
    return one_item(
        "&a;" * references, prolog=f'<!DOCTYPE rss [\n<!ENTITY a "{"A" * value}">\n]>\n'
    )


@pytest.mark.parametrize("one_line", [False, True])
def test_billion_laughs_is_not_expanded(one_line: bool) -> None:
    # Multi-line: feedparser strips the nested declarations; one line: expat's
    # amplification limit stops it. Either way nothing is expanded.
    [article] = parse(billion_laughs(one_line=one_line))
    assert len(article.title) < 100


def test_a_quadratic_blowup_is_refused_before_parsing() -> None:
    # Small enough (2 MB) to be harmless should the check ever regress.
    with pytest.raises(FeedError, match=r"entities expanding to 2\.0 MB \(an 'XML bomb'\)"):
        parse(quadratic_blowup(100_000, 20))
    # Below the limit: expanded as usual.
    [article] = parse(quadratic_blowup(1_000, 5))
    assert article.title == "A" * MAX_TITLE


def test_a_quadratic_blowup_in_utf16_is_refused() -> None:
    content = quadratic_blowup(100_000, 20).replace('encoding="utf-8"', 'encoding="utf-16"')
    with pytest.raises(FeedError, match="XML bomb"):
        parse(content.encode("utf-16"))


def test_too_many_entity_declarations_are_refused() -> None:
    declarations = "\n".join(f'<!ENTITY e{i} "expanding text {i}">' for i in range(100))
    assert MAX_ENTITIES < 100
    with pytest.raises(FeedError, match="declares 100 entity declarations"):
        parse(one_item("&e1;", prolog=f"<!DOCTYPE rss [\n{declarations}\n]>\n"))


# --- the worker pool ------------------------------------------------------------------------


run = asyncio.run


@pytest.fixture
def no_leaks() -> Iterator[None]:
    yield
    # close() waits for its workers: nothing may be left running, not even briefly.
    assert multiprocessing.active_children() == []


@pytest.fixture
def pool(no_leaks: None) -> Iterator[ParsePool]:
    with ParsePool(2, deadline=2.0, memory_limit=256 * 2**20, target=parse_hooks.misbehave) as p:
        yield p


def pid_of(pool: ParsePool) -> int:
    [article] = run(pool.parse("wire", URL, b"PID", {}))
    return int(article.title)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead too (forkserver reaps its children when told to).
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_feed_parses_through_the_pool_exactly_as_in_process(no_leaks: None) -> None:
    content = fifty_items()
    with ParsePool(1) as real:
        through_pool = run(real.parse("wire", URL, content, RSS_TYPE))
    assert len(through_pool) == 50
    assert through_pool == parse_feed("wire", URL, content, RSS_TYPE)


def test_workers_run_at_a_lower_cpu_priority_than_the_daemon(no_leaks: None) -> None:
    import os

    content = fifty_items()
    own = os.getpriority(os.PRIO_PROCESS, 0)
    with ParsePool(1, nice=7) as lowered, ParsePool(1) as level:
        for pool in (lowered, level):
            assert len(run(pool.parse("wire", URL, content, RSS_TYPE))) == 50
        [worker] = [p.pid for p in lowered.processes]
        [same] = [p.pid for p in level.processes]
        assert os.getpriority(os.PRIO_PROCESS, worker or 0) == min(own + 7, 19)
        assert os.getpriority(os.PRIO_PROCESS, same or 0) == own


def matcher_of(*queries: str) -> Matcher:
    return Matcher(
        [
            Rule(name=f"r{i}", condition=parse_query(q), channels=("desk",))
            for i, q in enumerate(queries)
        ]
    )


def test_workers_match_exactly_as_the_daemon_would(no_leaks: None) -> None:
    content = fifty_items()
    matcher = matcher_of("troops AND geneva", '"paragraph 17"', "markup NOT entity")
    local = parse_feed("wire", URL, content, RSS_TYPE)
    known = frozenset(a.uid for a in local[:10])
    with ParsePool(2) as real:
        matched = run(real.parse_matched("wire", URL, content, RSS_TYPE, matcher, known))
    assert [a for a, _ in matched] == local
    assert all(a.normalized is None for a, _ in matched)  # used there, not sent back
    # The known (stored) articles are left unmatched; the others carry their hits.
    assert [hits for _, hits in matched[:10]] == [None] * 10
    assert [hits for _, hits in matched[10:]] == [matcher.match(a) for a in local[10:]]
    assert {h.rule for _, hits in matched[10:] for h in hits or ()} == {"r0", "r1"}
    assert [h.rule for h in matched[17][1] or ()] == ["r0", "r1"]


def test_a_worker_gets_the_matcher_once_and_each_new_one(no_leaks: None) -> None:
    content = fifty_items()
    first, second = matcher_of("troops"), matcher_of("nothing-like-this")
    with ParsePool(1) as real:
        sent: list[bool] = []  # per parse: was the matcher sent to the worker it ran on?
        original_run, original_acquire = real._run, real._acquire
        token: list[Any] = [None]

        def run_spy(job: Any, request: Any, matching: Any) -> Any:
            token[0] = matching[0].token
            return original_run(job, request, matching)

        def acquire_spy(job: Any, shown: str) -> Any:
            worker = original_acquire(job, shown)
            sent.append(worker.matcher != token[0])
            return worker

        real._run = run_spy  # type: ignore[method-assign]
        real._acquire = acquire_spy  # type: ignore[method-assign]
        for matcher in (first, first, second, second, first):
            matched = run(real.parse_matched("wire", URL, content, RSS_TYPE, matcher))
            assert all(bool(hits) == (matcher is first) for _, hits in matched)
        [process] = real.processes
        pid = process.pid
        assert sent == [True, False, True, False, True]
        # A worker that is replaced gets the matcher again (killed while idle, and gone
        # before the next parse: a kill the pool may or may not see first is a race).
        process.kill()
        process.join(30)
        matched = run(real.parse_matched("wire", URL, content, RSS_TYPE, first))
        assert all(hits for _, hits in matched)
        assert [p.pid for p in real.processes] != [pid]
        assert sent[-1:] == [True]


def test_feed_errors_come_back_as_feed_errors(pool: ParsePool) -> None:
    with pytest.raises(FeedError) as caught:
        run(pool.parse("wire", URL, b"<html><body>Not a feed</body></html>", {}))
    assert caught.value.url == SHOWN
    assert "not an RSS or Atom feed" in caught.value.message
    assert pool.stats.crashes == 0


def test_a_parse_past_the_deadline_is_killed_and_the_worker_replaced(pool: ParsePool) -> None:
    before = pid_of(pool)
    started = time.monotonic()
    with pytest.raises(FeedError) as caught:
        run(pool.parse("wire", URL, b"SLEEP 60", {}))
    assert time.monotonic() - started < 10  # killed at the deadline, not after the sleep
    assert caught.value.url == SHOWN
    assert caught.value.message == "parsing took longer than 2s; the feed was skipped"
    assert not alive(before)
    after = pid_of(pool)
    assert after != before and alive(after)
    assert pool.stats.timeouts == 1


def test_a_worker_that_exceeds_its_memory_limit_is_replaced(pool: ParsePool) -> None:
    before = pid_of(pool)
    with pytest.raises(FeedError, match=r"parsing ran out of memory \(256 MiB\); the feed was"):
        run(pool.parse("wire", URL, b"ALLOC 600000000", {}))
    assert not alive(before)
    assert pid_of(pool) != before
    assert pool.stats.out_of_memory == 1


def test_a_real_xml_bomb_through_the_pool(pool: ParsePool) -> None:
    bomb = quadratic_blowup().encode()  # 100 KB x 20,000: a 2 GB title
    # parse_feed refuses it outright...
    with pytest.raises(FeedError, match="XML bomb"):
        run(pool.parse("wire", URL, bomb, {}))
    # ... and feedparser on its own, without that check, is stopped by the memory cap.
    with pytest.raises(FeedError, match="ran out of memory"):
        run(pool.parse("wire", URL, b"RAW " + bomb, {}))
    [article] = run(pool.parse("wire", URL, one_item("Fine").encode(), {}))
    assert article.title == "Fine"


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (b"EXIT 3", "the parser process crashed (exit status 3); the feed was skipped"),
        (b"SIGNAL SIGSEGV", "the parser process crashed (signal SIGSEGV); the feed was skipped"),
        (
            b"SIGNAL SIGKILL",
            "the parser process was killed (most likely by the kernel, out of memory); "
            "the feed was skipped",
        ),
    ],
)
def test_a_worker_that_dies_is_replaced(pool: ParsePool, command: bytes, message: str) -> None:
    before = pid_of(pool)
    with pytest.raises(FeedError) as caught:
        run(pool.parse("wire", URL, command, {}))
    assert caught.value.message == message
    assert pid_of(pool) != before
    assert pool.stats.crashes == 1


def test_a_worker_killed_while_idle_costs_no_feed_an_error(pool: ParsePool) -> None:
    """kill -9 on an idle worker (an operator, a watchdog): the next feeds parse on
    fresh workers, none of them blamed for it."""
    pid_of(pool)  # warm
    for process in pool.processes:
        process.kill()
        process.join(5)
    for _ in range(3):
        [article] = run(pool.parse("wire", URL, one_item("Fine").encode(), {}))
        assert article.title == "Fine"
    assert pool.stats.crashes == 0
    assert all(process.is_alive() for process in pool.processes)


def test_a_parser_bug_is_a_feed_error_and_keeps_the_worker(pool: ParsePool) -> None:
    before = pid_of(pool)
    with pytest.raises(FeedError, match=r"the parser failed \(ZeroDivisionError: a bug"):
        run(pool.parse("wire", URL, b"RAISE", {}))
    assert pid_of(pool) == before


def test_a_reply_that_cannot_be_sent_is_a_feed_error_and_keeps_the_worker(
    pool: ParsePool,
) -> None:
    before = pid_of(pool)
    with pytest.raises(FeedError, match=r"the parser failed \(the reply could not be sent"):
        run(pool.parse("wire", URL, b"UNPICKLABLE", {}))
    assert pid_of(pool) == before


def test_a_sandbox_that_forbids_limits_is_reported_not_fatal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def forbidden(which: int, limits: tuple[int, int]) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(monitor.parse.worker.resource, "setrlimit", forbidden)
    monitor.parse.worker._limit(monitor.parse.worker.resource.RLIMIT_AS, 2**29, "memory")
    assert "could not limit memory ([Errno 1] Operation not permitted)" in capsys.readouterr().err


def test_parses_on_other_workers_are_not_disturbed(no_leaks: None) -> None:
    # The slow parse's deadline is far away: it is still running when the fine one ends,
    # however long this machine takes to start the second worker.
    with ParsePool(2, deadline=60.0, target=parse_hooks.misbehave) as pool:

        async def both() -> tuple[list[Article], bool]:
            slow = asyncio.ensure_future(pool.parse("slow", URL, b"SLEEP 60", {}))
            await asyncio.to_thread(wait_for, lambda: pool.busy == 1)
            fine = await pool.parse("fine", URL, fifty_items(), RSS_TYPE)
            running = not slow.done()  # on the other worker
            slow.cancel()
            await asyncio.gather(slow, return_exceptions=True)
            return fine, running

        fine, running = run(both())
    assert len(fine) == 50 and running


def test_two_parses_run_in_parallel_on_two_workers(tmp_path: Path, no_leaks: None) -> None:
    # Each parse waits until both are running: one worker at a time would never finish.
    with ParsePool(2, deadline=30.0, target=parse_hooks.rendezvous) as pool:
        request = f"{tmp_path} 2".encode()

        async def both() -> list[list[Article]]:
            return list(await asyncio.gather(*(pool.parse("w", URL, request, {}) for _ in "ab")))

        first, second = run(both())
    assert first[0].title != second[0].title
    assert len(os.listdir(tmp_path)) == 2


def test_parses_beyond_the_worker_count_queue(no_leaks: None) -> None:
    with ParsePool(1, deadline=30.0, target=parse_hooks.misbehave) as pool:

        async def many() -> list[list[Article]]:
            return list(await asyncio.gather(*(pool.parse("w", URL, b"PID", {}) for _ in "abcd")))

        results = run(many())
        assert len({r[0].title for r in results}) == 1  # one worker did them all, in turn
        assert pool.stats.started == 1 and pool.stats.parses == 4


def test_a_cancelled_parse_kills_its_worker_and_the_pool_goes_on(no_leaks: None) -> None:
    # A deadline far away: the worker must die because of the cancellation, not of it.
    with ParsePool(1, deadline=60.0, target=parse_hooks.misbehave) as pool:
        before = pid_of(pool)

        async def cancel() -> None:
            task = asyncio.ensure_future(pool.parse("wire", URL, b"SLEEP 60", {}))
            await asyncio.to_thread(wait_for, lambda: pool.busy == 1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        run(cancel())
        wait_for(lambda: not alive(before), message="the cancelled worker to die")
        assert pid_of(pool) != before


def test_close_ends_every_worker_even_in_the_middle_of_a_parse(no_leaks: None) -> None:
    pool = ParsePool(2, deadline=30.0, target=parse_hooks.misbehave)

    async def close_while_busy() -> tuple[list[int], BaseException | list[Article]]:
        busy = asyncio.ensure_future(pool.parse("wire", URL, b"SLEEP 60", {}))
        await asyncio.to_thread(wait_for, lambda: pool.busy == 1)
        await pool.parse("wire", URL, b"PID", {})  # on the second worker
        pids = [p.pid or 0 for p in pool.processes]
        started = time.monotonic()
        await asyncio.to_thread(pool.close)
        assert time.monotonic() - started < 10
        [result] = await asyncio.gather(busy, return_exceptions=True)
        return pids, result

    pids, result = run(close_while_busy())
    assert isinstance(result, FeedError) and "shutting down" in result.message
    assert len(pids) == 2 and not any(alive(pid) for pid in pids)
    with pytest.raises(FeedError, match="closed"):
        run(pool.parse("wire", URL, b"PID", {}))
    pool.close()  # idempotent


def test_the_cpu_limit_stops_a_busy_worker_even_without_the_parent(no_leaks: None) -> None:
    # The second guard: a worker whose parent cannot kill it (frozen, gone) is stopped by
    # the kernel once the parse has used its CPU budget (here 1 s).
    context = default_context()
    parent, child = context.Pipe()
    worker = context.Process(  # type: ignore[attr-defined]
        target=monitor.parse.worker._worker_main,
        args=(child, parse_hooks.misbehave, None, 1, 0),
        daemon=True,
    )
    worker.start()
    child.close()
    try:
        parent.send(("wire", URL, b"SPIN 60", {}, None))
        worker.join(30)
        assert worker.exitcode == -signal.SIGXCPU
    finally:
        if worker.exitcode is None:
            worker.kill()
            worker.join()
        parent.close()
        worker.close()


def test_constructor_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="workers"):
        ParsePool(0)
    with pytest.raises(ValueError, match="deadline"):
        ParsePool(1, deadline=0)


# --- monitor.parse.rss: the fast RSS 2.0 reader gives exactly what feedparser gives ---------


def both_ways(
    content: bytes, headers: dict[str, str] | None = None
) -> tuple[list[Article], list[Article], bool]:
    """parse_feed's articles through monitor.parse.rss and through feedparser alone, and
    whether monitor.parse.rss read the document at all."""
    headers = RSS_TYPE if headers is None else headers
    fast = parse_feed("wire", URL, content, headers)
    repaired = monitor.parse.xmlguard._repair_charrefs(content)
    read = monitor.parse.rss.read_rss(repaired, dict(headers)) is not None
    # Taken away where the XML reader looks it up, so that feedparser reads everything.
    original = monitor.parse.xmlfeed.read_rss
    monitor.parse.xmlfeed.read_rss = lambda content, headers: None  # type: ignore[assignment]
    try:
        slow = parse_feed("wire", URL, content, headers)
    finally:
        monitor.parse.xmlfeed.read_rss = original
    return fast, slow, read


SAMPLE_FEEDS = [
    Path(__file__).parent.parent / "seeds" / "sample-feed.xml",
    *sorted((Path(__file__).parent / "data").rglob("*.xml")),
]


@pytest.mark.parametrize("path", SAMPLE_FEEDS, ids=lambda p: p.name)
def test_the_fast_reader_reads_the_sample_feeds_as_feedparser_does(path: Path) -> None:
    fast, slow, _ = both_ways(path.read_bytes())
    assert fast == slow


def test_the_fast_reader_reads_plain_rss_and_leaves_the_rest_to_feedparser() -> None:
    for plain in (fifty_items(), (SAMPLE_FEEDS[0]).read_bytes(), one_item().encode()):
        fast, slow, read = both_ways(plain)
        assert read and fast == slow and fast
    others = {
        "atom": b'<feed xmlns="http://www.w3.org/2005/Atom"><entry><id>1</id></entry></feed>',
        "media": one_item(extra="<media:title>T</media:title>").replace(
            "<rss ", '<rss xmlns:media="http://search.yahoo.com/mrss/" '
        ),
        "doctype": one_item(prolog='<!DOCTYPE rss [<!ENTITY a "b">]>'),
        "base": one_item(extra='<link xml:base="https://a.example/">x</link>'),
        "typed": one_item(extra='<description type="text/plain">x</description>'),
        "nested": one_item(extra="<description><b>x</b></description>"),
        "twice": one_item(extra="<title>again</title>"),
        "rdf": one_item().replace("<item>", '<item rdf:about="x">'),
        "broken": b"<rss><channel><item><title>x</item></channel></rss>",
    }
    for name, document in others.items():
        data = document.encode() if isinstance(document, str) else document
        assert monitor.parse.rss.read_rss(data, RSS_TYPE) is None, name
    fast, slow, read = both_ways(others["media"].encode())  # type: ignore[union-attr]
    assert not read and fast == slow


_TEXT = st.lists(
    st.sampled_from(
        [
            "a",
            "Z",
            " ",
            "\n",
            "\t",
            "é",
            "Ã©",
            "€",
            "&amp;",
            "&lt;",
            "&gt;",
            "&#128;",
            "&#150;",
            "&#x9f;",
            "<![CDATA[<b>x</b> & y]]>",
            "&amp;amp;",
            "&quot;",
            "/",
            ":",
            "http://",
            "https:///x",
            "?a=1&amp;b=2",
            "&amp;c;",
            "\u2028",
            "Київ",
            "1",
            "'s",
            "’s",
            "ﬁ",
        ]
    ),
    max_size=12,
).map("".join)
_DATES = st.sampled_from(
    [
        "Mon, 02 Mar 2026 10:00:00 GMT",
        "2026-03-02T10:00:00+02:00",
        "yesterday",
        "",
        "Tue, 31 Feb 2026 10:00:00 +0000",
        "Sun, 01 Mar 9999 00:00:00 GMT",
    ]
)


@st.composite
def _item_xml(draw: st.DrawFn) -> str:
    children = draw(
        st.lists(
            st.one_of(
                st.tuples(st.sampled_from(["title", "link", "description", "author"]), _TEXT),
                st.tuples(st.just("content:encoded"), _TEXT),
                st.tuples(st.just("dc:creator"), _TEXT),
                st.tuples(st.sampled_from(["pubDate", "dc:date"]), _DATES),
                st.tuples(st.sampled_from(["guid", 'guid isPermaLink="false"']), _TEXT),
                st.tuples(st.just('guid isPermaLink="true"'), _TEXT),
                st.tuples(st.sampled_from(["category", 'category domain="d"']), _TEXT),
                st.tuples(st.sampled_from(["comments", "source", "x:extra", "foo"]), _TEXT),
                st.tuples(st.just('enclosure url="https://a.example/a.mp3"'), st.just("")),
            ),
            max_size=9,
            # Each element once (feedparser keeps the last, this reader gives up), but for
            # categories and the elements not read.
            unique_by=lambda c: c if c[0].startswith(("category", "x:", "foo")) else c[0][:4],
        )
    )
    parts = []
    for tag, text in children:
        name = tag.split(" ")[0]
        parts.append(f"<{tag}>{text}</{name}>")
    return "<item>" + "".join(parts) + "</item>"


_HEADERS = st.sampled_from(
    [
        RSS_TYPE,
        {"content-type": "text/xml"},  # RFC 3023: us-ascii unless a charset is given
        {"content-type": "application/xml; charset=iso-8859-1"},
        {"Content-Type": "application/rss+xml"},
        {},
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(_item_xml(), max_size=4),
    st.sampled_from(["utf-8", "UTF-8", "windows-1252", None]),
    _HEADERS,
)
def test_the_fast_reader_agrees_with_feedparser_on_any_item(
    items: list[str], encoding: str | None, headers: dict[str, str]
) -> None:
    declaration = f'<?xml version="1.0" encoding="{encoding}"?>' if encoding else ""
    document = (
        f'{declaration}<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/'
        'content/" xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:x="urn:x">'
        f"<channel><title>T</title>{''.join(items)}</channel></rss>"
    )
    fast, slow, _ = both_ways(document.encode(), headers)
    assert fast == slow
    # What the parser hands the matcher is what the matcher would make of the article.
    for article in fast + slow:
        content = field_texts(article)["content"]
        assert article.normalized == (normalize(article.title), normalize(content))
