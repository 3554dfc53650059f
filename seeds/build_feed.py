"""Build seeds/sample-feed.xml (RSS 2.0) from the five sample articles in seeds/.

Run from anywhere:  python seeds/build_feed.py

Stdlib only and deterministic: no clock, no network, no environment lookups, so two runs
write byte-identical files. Everything that needed human judgement (headline, where the
body starts and ends, lede, date, outlet) is in the SEEDS table below, one entry per file,
with the reason next to it: the articles are scraped pages with different boilerplate, and
a fixed table is easier to check than heuristics. The script refuses to run if a marker in
the table no longer begins a line of its file, instead of guessing.

The .txt articles are the client's originals and are only read, never written.
"""

from __future__ import annotations

import html
import re
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "sample-feed.xml"
CONTENT_NS = "http://purl.org/rss/1.0/modules/content/"
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@dataclass(frozen=True)
class Seed:
    """One sample article and the editorial choices made for it."""

    #: File name inside seeds/; also the stable part of the guid.
    file: str
    #: The headline shown as <title>.
    title: str
    #: How the first line of the article proper begins (skips headline and site chrome).
    body_start: str
    #: How the first line after the article (site chrome) begins, or None: end of file.
    body_end: str | None
    #: The lede for <description>: must occur verbatim (after whitespace tidying) in the body.
    lede: str
    #: Publication date; the time of day is unknown for every article, so noon UTC.
    published: datetime
    #: The weekday the article itself gives for its main event; checked against `published`.
    weekday_in_text: str
    #: Outlet name for <source>.
    outlet: str
    #: Outlet homepage for <link>: exact article URLs are unknown and none is invented.
    homepage: str
    #: Outlet's public RSS feed for <source url>, as RSS 2.0 defines that attribute.
    outlet_feed: str


def _noon(year: int, month: int, day: int) -> datetime:
    return datetime(year, month, day, 12, 0, 0, tzinfo=UTC)


SEEDS: tuple[Seed, ...] = (
    Seed(
        file="000_1d7927602993bdb3.txt",
        # The first line, "Russian military in exercises in Rostov (Reuters)", is a photo
        # caption, not a headline: "(Reuters)" is the photo credit, like the two other
        # captions further down, and the drills in the story are in Crimea and Krasnodar,
        # not Rostov. The headline below restates the first sentence of the body.
        title="Hundreds of Russian paratroopers to hold exercises near Ukrainian border",
        # The lead-photo caption is kept in the body like the other captions.
        body_start="Russian military in exercises in Rostov (Reuters)",
        # "KEEP READING:" (Infobae's "SEGUIR LEYENDO:") starts the related-links box.
        body_end="KEEP READING:",
        lede=(
            "Hundreds of Russian paratroopers will effect exercises near the Ukrainian border"
            " this week, the news agency reported on Thursday Interfax, citing the Russian"
            " Defense Ministry, amid the confrontation between Moscow and the West over"
            " Kiev’s NATO aspirations."
        ),
        # Thursday 2021-12-23: Putin's "vehement" speech to the defence chiefs was on
        # Tuesday 2021-12-21, the US statement "on Wednesday" (12-22), and Interfax reported
        # the paratrooper drills "on Thursday"; the related link (security talks with the
        # US and NATO to begin in January) is from the same days.
        published=_noon(2021, 12, 23),
        weekday_in_text="Thursday",
        outlet="Infobae",
        homepage="https://www.infobae.com/",
        outlet_feed="https://www.infobae.com/arc/outboundfeeds/rss/",
    ),
    Seed(
        file="001_124d80c53135ee10.txt",
        # The file opens with Sputnik's section header ("- Sputnik International / Russia /
        # The latest news ..."); the real headline is the first line after it.
        title="NATO Chief Says Russian Troops Moving Closer to Ukrainian Border",
        # The standfirst; "Subscribe" above it is a button label.
        body_start="NATO Secretary General Jens Stoltenberg claimed",
        # "Newsfeed / 0 / To participate in the discussion ..." is the comments widget.
        body_end="Newsfeed",
        lede=(
            "BRUSSELS, November 4 (RIA Novosti) — NATO has recently been seeing Russian troops"
            " approaching the Ukrainian border, alliance's Secretary General Jens Stoltenberg"
            " said Tuesday."
        ),
        # Tuesday 2014-11-04: dateline "BRUSSELS, November 4 (RIA Novosti)"; Stoltenberg
        # (NATO chief from 2014-10-01) and Mogherini (EU foreign policy chief from
        # 2014-11-01) together, the Rostov withdrawal "On October 12" (2014) and the
        # "28-member" alliance fix the year; 4 November 2014 was a Tuesday.
        published=_noon(2014, 11, 4),
        weekday_in_text="Tuesday",
        outlet="Sputnik International",
        homepage="https://sputnikglobe.com/",
        outlet_feed="https://sputnikglobe.com/export/rss2/archive/index.xml",
    ),
    Seed(
        file="002_6e1d9f0e23a31894.txt",
        # The first line is " date 2021-12-02 " (scraper metadata) glued to the headline.
        title=(
            "Blinken urges Russia to ‘reduce escalation’ at border as fighting continues"
            " in eastern Ukraine"
        ),
        body_start="US Secretary of State Antony Blinken on Thursday",
        # The article runs to the end of the file, credit line "( Jowharwith AFP,
        # REUTERS)" included.
        body_end=None,
        lede=(
            "US Secretary of State Antony Blinken on Thursday urged Russia to “reduce” a"
            " military concentration on its border with Ukraine, reiterating his threat of"
            " “serious consequences” if Russia resorts to “aggression” amidst the Bilateral"
            " talks scheduled in Sweden."
        ),
        # Thursday 2021-12-02: the file says "date 2021-12-02", and the Blinken-Lavrov
        # meeting at the OSCE ministerial in Stockholm was that day.
        published=_noon(2021, 12, 2),
        weekday_in_text="Thursday",
        # AFP copy (an "AFP tally", AFP quotes) republished by an outlet credited only as
        # "Jowhar"; France 24 is an AFP-fed stand-in. Low confidence, see outlets.yaml.
        outlet="France 24 (AFP)",
        homepage="https://www.france24.com/en/",
        outlet_feed="https://www.france24.com/en/rss",
    ),
    Seed(
        file="003_f2be1da87209a174.txt",
        # No headline in the file: it starts with the first sentence of the story. This
        # headline restates that sentence.
        title=("Kremlin says US is escalating tensions by sending weapons and advisers to Ukraine"),
        body_start="The United States is “escalating”",
        # The Moscow Times' donation appeal follows the article.
        body_end="A Message from The Moscow Times:",
        lede=(
            "The United States is “escalating” the tense situation between Kiev and Moscow by"
            " sending weapons and military advisers to Ukraine, the Kremlin said Tuesday."
        ),
        # Tuesday 2021-11-23: Peskov spoke "Tuesday", after CNN's report (2021-11-21) that
        # the Biden administration was weighing Javelins, Stingers and advisers for
        # Ukraine, and the day after the SVR statement "on Monday" (2021-11-22).
        published=_noon(2021, 11, 23),
        weekday_in_text="Tuesday",
        outlet="The Moscow Times",
        homepage="https://www.themoscowtimes.com/",
        outlet_feed="https://www.themoscowtimes.com/rss/news",
    ),
    Seed(
        file="004_92d78c0ed7dfad75.txt",
        # First line; it is repeated after the blog's author line "admin".
        title="Russia will engage in US security talks as tensions escalate over Ukraine",
        body_start="Russia on Wednesday said",
        # "Source link" is the republishing blog's footer.
        body_end="Source link",
        lede=(
            "Russia on Wednesday said it will engage the U.S. in security talks at the start"
            " of the new year to discuss guarantees it wants from the West as tensions"
            " continue to escalate over Ukraine."
        ),
        # Wednesday 2021-12-22: Lavrov spoke "on Wednesday", "just one day after" Putin's
        # threat, and the photo caption dates Putin's Defence Ministry Board speech
        # "Tuesday, Dec. 21, 2021".
        published=_noon(2021, 12, 22),
        weekday_in_text="Wednesday",
        outlet="Fox News",
        homepage="https://www.foxnews.com/",
        outlet_feed="https://moxie.foxnews.com/google-publisher/world.xml",
    ),
)

CHANNEL_TITLE = "news-monitor sample feed (Ukraine crisis, five outlets)"
# The feed has no website of its own; example.org is reserved for such placeholders
# (RFC 2606), so it can never point at somebody's real page.
CHANNEL_LINK = "https://example.org/"
CHANNEL_DESCRIPTION = (
    "Five news articles about the Russia-Ukraine crisis (2014 and 2021) from five outlets,"
    " packaged as RSS 2.0 so news-monitor can be tried offline. Built by seeds/build_feed.py"
    " from the client's sample articles in seeds/*.txt."
)

_SPACES = re.compile(r"\s+")  # str patterns: \s includes the no-break spaces of 001 and 004


def tidy(line: str) -> str:
    """One line with runs of whitespace (no-break spaces too) as one space, ends trimmed.

    The no-break spaces in 001 and 004 would otherwise split phrases such as
    "the border with Ukraine" for a matcher that only treats ASCII blanks as spaces.
    """
    return _SPACES.sub(" ", line).strip()


def body_paragraphs(seed: Seed, text: str) -> list[str]:
    """The article's non-empty lines between the seed's start and end markers, tidied."""
    lines = [tidy(line) for line in text.split("\n")]
    start = _index(seed, lines, tidy(seed.body_start), "body_start")
    end = (
        len(lines)
        if seed.body_end is None
        else _index(seed, lines, tidy(seed.body_end), "body_end")
    )
    if end <= start:
        sys.exit(f"{seed.file}: body_end comes before body_start; fix SEEDS in {__file__}")
    return [line for line in lines[start:end] if line]


def _index(seed: Seed, lines: list[str], wanted: str, field: str) -> int:
    """Index of the first line that begins with `wanted`; exit if there is none."""
    for index, line in enumerate(lines):
        if line.startswith(wanted):
            return index
    sys.exit(f"{seed.file}: no line begins with {field} {wanted[:60]!r}; fix SEEDS in {__file__}")


def build_item(seed: Seed) -> ET.Element:
    text = (HERE / seed.file).read_text(encoding="utf-8")
    paragraphs = body_paragraphs(seed, text)
    lede = tidy(seed.lede)
    if lede not in " ".join(paragraphs):
        sys.exit(f"{seed.file}: the lede is not in the article body; fix SEEDS in {__file__}")
    if WEEKDAYS[seed.published.weekday()] != seed.weekday_in_text:
        sys.exit(f"{seed.file}: {seed.published:%Y-%m-%d} is not a {seed.weekday_in_text}")

    item = ET.Element("item")
    ET.SubElement(item, "title").text = tidy(seed.title)
    ET.SubElement(item, "link").text = seed.homepage
    ET.SubElement(item, "description").text = lede
    # HTML escaped once here; ElementTree escapes the markup again as XML text, which is
    # how RSS carries HTML (feedparser unescapes it back to the <p> markup).
    body_html = "\n".join(f"<p>{html.escape(p, quote=False)}</p>" for p in paragraphs)
    ET.SubElement(item, f"{{{CONTENT_NS}}}encoded").text = body_html
    guid = f"news-monitor-seed:{Path(seed.file).stem}"
    ET.SubElement(item, "guid", isPermaLink="false").text = guid
    ET.SubElement(item, "pubDate").text = format_datetime(seed.published)
    ET.SubElement(item, "source", url=seed.outlet_feed).text = seed.outlet
    return item


def build_feed() -> str:
    ET.register_namespace("content", CONTENT_NS)
    rss = ET.Element("rss", version="2.0")
    channel = ET.SubElement(rss, "channel")
    ET.SubElement(channel, "title").text = CHANNEL_TITLE
    ET.SubElement(channel, "link").text = CHANNEL_LINK
    ET.SubElement(channel, "description").text = CHANNEL_DESCRIPTION
    ET.SubElement(channel, "language").text = "en"
    # The newest article's date, not the clock, so that rebuilding changes nothing.
    newest = max(seed.published for seed in SEEDS)
    ET.SubElement(channel, "lastBuildDate").text = format_datetime(newest)
    ET.SubElement(channel, "generator").text = "seeds/build_feed.py"
    for seed in SEEDS:
        channel.append(build_item(seed))
    ET.indent(rss, space="  ")
    header = (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        "<!-- Generated by seeds/build_feed.py from seeds/*.txt; edit that script, not this"
        " file. -->\n"
    )
    return header + ET.tostring(rss, encoding="unicode") + "\n"


def main() -> None:
    OUTPUT.write_text(build_feed(), encoding="utf-8", newline="\n")
    print(f"wrote {OUTPUT} ({len(SEEDS)} items)")


if __name__ == "__main__":
    main()
