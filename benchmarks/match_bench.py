"""Matching throughput: ours (one automaton + trigger sets) against two baselines.

    .venv/bin/python benchmarks/match_bench.py [--articles 20000] [--sizes 10,1000,10000]
        [--naive-sample 200] [--seed 1] [--rounds 3] [--slow-budget 15] [--profile]

One run generates a deterministic news-like corpus (titles of 8-14 words, ledes of 40-90
words; a Zipf-distributed vocabulary of real and generated words with plurals and
inflected forms, place and person names, many accented, curly quotes, possessives,
datelines, tokens such as T-72 or $4.5bn; articles drawn around 1,000 topics) and
analyst-like rulesets of each size (any/all/none shapes, phrases, prefix*, stem~, NEAR,
title: scopes, feed scopes, min_terms, a few disabled rules, a handful of RE2 regexes),
then times three matchers that must return identical hits (article, rule name):

* ours: ``monitor.match.Matcher(rules, frequencies).match(article)``, which also builds
  each Hit's reasons and snippet (the baselines return rule names only); ``frequencies``
  come from a separate sample of 3,000 articles, as the daemon takes them from its recent
  stored articles;
* naive: one Python ``re`` pattern per rule term over the normalised text, every rule
  evaluated for every article (timed and compared on the first ``--naive-sample`` articles);
* plain: one pyahocorasick automaton of every term's surface forms (like ours), then every
  rule's boolean tree evaluated, without trigger sets. The trees are compiled into one
  generated Python function, the fastest way CPython offers to evaluate every rule, so
  this baseline is a generous one.

The baselines are written here, independently of ``monitor.match``; they share with it
only ``field_texts``, ``normalize`` and ``surface_forms`` (what a term matches, where) and RE2
(plain) or Python ``re`` (naive) for regular expressions. Ours and plain run interleaved,
chunk by chunk, over the full corpus so machine noise hits both alike. Memory is measured
in a fresh subprocess per size: RSS from /proc/self/status before and after building the
matcher (and after malloc_trim, which separates retained from transient memory), Python
allocations with tracemalloc, and peak RSS.
"""

from __future__ import annotations

import argparse
import cProfile
import ctypes
import gc
import json
import pstats
import random
import re
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

import ahocorasick

from monitor.match import Matcher, compile_regex, field_texts, parse_query, parse_term
from monitor.models import AllOf, AnyOf, Article, Condition, Near, Not, Regex, Rule, Term
from monitor.text import normalize, surface_forms, word_frequencies

DEFAULT_FIELDS = ("title", "content")
TARGET_RATE = 30_000
TARGET_VS_PLAIN = 3.0
TARGET_VS_NAIVE = 10_000.0
TARGET_COMPILE = 2.0

# --- vocabulary ------------------------------------------------------------------------------

FUNCTION_WORDS = """
the of to in and a for on said that with is was by at as from has it its his her be have
are were will after over an not but who they their this more than new year up out about
into also been would could which when two first last other had after against while three
since before under some all there we he she our one no if may most before amid
""".split()

NOUNS = """
government minister president official police court election vote party leader country
city border troop soldier army force attack missile drone tank weapon talk deal agreement
sanction price market bank rate inflation economy company share investor profit worker
union school student teacher hospital patient doctor vaccine disease climate storm flood
wildfire earthquake drought energy oil power plant reactor pipeline ship port crew refugee
migrant aid food water farmer crop wheat grain export import tariff trade law bill
parliament senate judge lawyer trial prison protest protester crowd rally campaign
candidate poll survey report study researcher scientist rocket satellite phone app
software hacker network platform child family village region province capital embassy
diplomat envoy summit ceasefire truce offensive invasion occupation territory frontline
bomb explosion shell artillery jet aircraft airport flight airline passenger train railway
bridge road car vehicle battery factory job wage pension tax budget debt loan fund bond
currency dollar euro coin exchange stock index team player coach goal league cup season
fan stadium film actor singer album concert festival museum church mosque temple priest
mayor governor council committee agency ministry spokesman spokeswoman statement warning
threat emergency evacuation casualty victim death injury arrest suspect investigation
probe charge fraud scandal resignation cabinet coalition opposition majority referendum
constitution reform policy strategy plan proposal offer demand request decision ruling
appeal veto resolution mission operation exercise drill deployment convoy column brigade
battalion unit base fleet navy submarine warship carrier radar sensor shield defence
security intelligence spy agent leak document email message video image photo post
account user customer consumer sale retailer store shop product supply shortage cost fee
salary strike border frontier memory county district town island coast valley mountain
river forest desert harbour highway tunnel hospital clinic nurse surgeon virus outbreak
""".split()

VERBS = """
warn claim deny announce report confirm reject accept approve sign launch kill wound injure
arrest accuse blame condemn urge call ask demand plan move deploy withdraw retreat advance
invade occupy capture seize bomb fire target threaten vow pledge promise agree negotiate
visit host resume suspend halt stop end start open close raise lower boost increase
decrease jump drop surge slump crash recover hire sack resign elect vote defeat score play
release publish hack investigate sue ban block impose lift ease tighten deliver supply
receive evacuate rescue help support back oppose protest march rally mobilize mobilise
train equip arm fund finance invest trade merge acquire cancel delay postpone schedule
expect forecast predict estimate fear hope worry shell sanction attack export import
rule appeal charge probe struggle welcome criticise criticize question remain return
""".split()

ADJECTIVES = """
military political economic nuclear foreign national federal local regional global
international diplomatic humanitarian civilian russian ukrainian european american chinese
british french german israeli iranian turkish polish brazilian indian japanese african
senior former major key possible imminent fresh heavy massive deadly fatal violent
peaceful illegal secret public private financial environmental digital annual strategic
""".split()

PLACES = [
    *"""
Kyiv Kharkiv Odesa Donetsk Luhansk Mariupol Kherson Zaporizhzhia Moscow Belgorod Minsk
Warsaw Kraków Gdańsk Łódź Berlin München Köln Düsseldorf Zürich Genève Paris Besançon
Orléans Brussels Amsterdam London Dublin Madrid Málaga Córdoba Lisbon Porto Rome Milan
Athens Istanbul Ankara İzmir Tbilisi Yerevan Baku Tehran Baghdad Damascus Beirut Gaza
Jerusalem Cairo Tripoli Khartoum Nairobi Lagos Abuja Dakar Yaoundé Kinshasa Johannesburg
Delhi Mumbai Karachi Kabul Beijing Shanghai Taipei Seoul Pyongyang Tokyo Manila Jakarta
Hanoi Bangkok Sydney Washington Ottawa Québec Montréal Bogotá Caracas Lima Brasília
Santiago Reykjavík Malmö Göteborg Tromsø Ukraine Russia Belarus Poland Germany France
China Taiwan Israel Iran Syria Türkiye Turkey Brazil México Crimea Donbas Bakhmut
Avdiivka Pokrovsk Kursk Sevastopol Transnistria Moldova Chișinău Bucharest Iași Sofia
""".split(),
    "New York",
    "Hong Kong",
    "Buenos Aires",
    "São Paulo",
    "Addis Ababa",
]

PEOPLE = """
Zelensky Zelenskyy Putin Lukashenko Łukaszenka Erdoğan Macron Scholz Merz Tusk Sikorski
Orbán Fico Babiš Šefčovič Borrell Kallas Stoltenberg Rutte Guterres Lula Milei Sánchez
Meloni Mitsotakis Müller Schröder Gómez Peña Núñez Ramírez François Hélène Zoë Björn Søren
Åsa Jürgen Dvořák Čapek Nguyễn Trần Modi Xi Kishida Yoon Biden Trump Harris Blinken
Lavrov Shoigu Gerasimov Peskov Kuleba Yermak Syrskyi Zaluzhnyi Budanov Netanyahu Abbas
Khamenei Assad Sisi Ruto Tinubu Ramaphosa Özdemir Gülen Ökalan Þórður
""".split()

COLLOCATIONS = """
peace talks|prime minister|foreign minister|defence minister|central bank|interest rates|
border crossing|air strike|air defence|climate change|supreme court|stock market|
oil prices|gas prices|united nations|white house|european union|security council|
human rights|martial law|state media|armed forces|ground troops|military exercises|
nuclear weapons|power plant|grain exports|trade deal|arms control|cruise missile|
ballistic missile|drone attack|prisoner swap|humanitarian aid|refugee camp|death toll|
natural gas|press conference|opinion poll|general election|tax cuts|budget deficit|
rate hike|supply chain|data breach|ransomware attack|heat wave|tropical storm|
public health|vaccine rollout|bird flu|black sea|red sea|gaza strip|west bank|
north korea|south korea|federal reserve|world bank|european commission|
kremlin spokesman|state department|foreign ministry|armoured column|front line|
security guarantees|round of talks|energy infrastructure|civilian casualties
""".replace("\n", "").split("|")

SPECIAL_TOKENS = """
T-72 T-90 T-80 F-16 F-35 Su-25 MiG-29 COVID-19 $4.5bn $120m €2bn £300m 15% 2.5% 2024 2025
1,200 3.5 U.S. EU NATO UN G7 G20 5G AI Covid-19 IMF OPEC ECB
""".split()

SYLLABLES = """
ba ker lo min tra vel sor dan pri gon mar tel ris vo nak ple stu ron fa dex cal bri mo zen
tur hal qui sen dor lim ap ex or un ta ve ni ko ru len bo gra pen sil tam cor fen dal wir
""".split()

FEEDS = tuple(f"feed{n:02d}" for n in range(24))


def _plural(word: str) -> str:
    if word.endswith("y") and word[-2:-1] not in tuple("aeiou"):
        return word[:-1] + "ies"
    if word.endswith(("s", "x", "ch", "sh", "z")):
        return word + "es"
    return word + "s"


def _verb_forms(verb: str) -> list[str]:
    if verb.endswith("e"):
        past, ing = verb + "d", verb[:-1] + "ing"
    elif verb.endswith("y") and verb[-2] not in "aeiou":
        past, ing = verb[:-1] + "ied", verb + "ing"
    elif (
        len(verb) <= 4
        and verb[-1] not in "aeiouwxy"
        and verb[-2] in "aeiou"
        and verb[-3] not in "aeiou"
    ):
        past, ing = verb + verb[-1] + "ed", verb + verb[-1] + "ing"
    else:
        past, ing = verb + "ed", verb + "ing"
    return [verb, _plural(verb), past, ing]


@dataclass
class Lemma:
    base: str
    kind: str  # function, noun, verb, adj, place, person
    forms: list[str]
    shares: list[float]


@dataclass
class Topic:
    specific: list[Lemma]  # rarer words: what rules look for
    general: list[Lemma]  # common words: what rules use as context
    forms: list[str]
    cum: list[float]
    phrases: list[list[str]]


@dataclass
class World:
    """The vocabulary, its Zipf weights and the topics news (and rules) are about."""

    lemmas: list[Lemma]
    content: list[Lemma]  # lemmas that are not function words, most frequent first
    forms: list[str]
    cum: list[float]
    phrases: list[list[str]]
    phrase_cum: list[float]
    topics: list[Topic]
    topic_cum: list[float]


def _zipf_cum(count: int, offset: float = 2.7, exponent: float = 1.0) -> list[float]:
    return list(accumulate(1.0 / (rank + offset) ** exponent for rank in range(count)))


def make_world(seed: int, pseudo: int = 7000, topics: int = 1000) -> World:
    rng = random.Random(f"{seed}:world")
    real: list[Lemma] = []
    for noun in dict.fromkeys(NOUNS):
        real.append(Lemma(noun, "noun", [noun, _plural(noun)], [0.6, 0.4]))
    for verb in dict.fromkeys(VERBS):
        real.append(Lemma(verb, "verb", _verb_forms(verb), [0.35, 0.2, 0.3, 0.15]))
    real += [Lemma(a, "adj", [a], [1.0]) for a in ADJECTIVES]
    real += [Lemma(p, "place", [p], [1.0]) for p in PLACES]
    real += [Lemma(p, "person", [p], [1.0]) for p in PEOPLE]
    seen = {lemma.base.lower() for lemma in real} | set(FUNCTION_WORDS)
    generated: list[Lemma] = []
    while len(generated) < pseudo:
        word = "".join(rng.choice(SYLLABLES) for _ in range(rng.choice((2, 2, 3, 3, 4))))
        if word in seen or len(word) < 4:
            continue
        seen.add(word)
        kind = rng.choices(("noun", "verb", "adj"), (55, 30, 15))[0]
        if kind == "noun":
            generated.append(Lemma(word, kind, [word, _plural(word)], [0.6, 0.4]))
        elif kind == "verb":
            generated.append(Lemma(word, kind, _verb_forms(word), [0.35, 0.2, 0.3, 0.15]))
        else:
            generated.append(Lemma(word, kind, [word], [1.0]))
    # Real words tend to be more frequent than generated ones, but the two interleave.
    spread = {"noun": 1.0, "verb": 1.0, "adj": 1.5}
    ranked = [(rng.random() * spread.get(lem.kind, 2.5), lem) for lem in real]
    ranked += [(rng.random() + 0.8, lem) for lem in generated]
    content = [lem for _, lem in sorted(ranked, key=lambda pair: pair[0])]
    functions = [Lemma(w, "function", [w], [1.0]) for w in dict.fromkeys(FUNCTION_WORDS)]
    lemmas = functions + content
    forms: list[str] = []
    weights: list[float] = []
    for rank, lemma in enumerate(lemmas):
        weight = 1.0 / (rank + 2.7) ** 1.1
        for form, share in zip(lemma.forms, lemma.shares, strict=True):
            forms.append(form)
            weights.append(weight * share)
    phrases = [p.split() for p in COLLOCATIONS]
    nouns = [lem for lem in content[:1500] if lem.kind == "noun"]
    modifiers = [lem for lem in content[:1500] if lem.kind in ("noun", "adj", "place")]
    while len(phrases) < 900:
        head = rng.choice(nouns)
        words = [rng.choice(modifiers).base, rng.choice(head.forms)]
        if rng.random() < 0.15:
            words.insert(0, rng.choice(modifiers).base)
        phrases.append(" ".join(words).split())
    topic_list = []
    for _ in range(topics):
        specific = rng.sample(content[1500:5500], 12)
        general = rng.sample(content[:1500], 10)
        chosen = [*specific, *general]
        rng.shuffle(chosen)
        topic_forms: list[str] = []
        topic_weights: list[float] = []
        for rank, lemma in enumerate(chosen):
            for form, share in zip(lemma.forms, lemma.shares, strict=True):
                topic_forms.append(form)
                topic_weights.append(share / (rank + 3))
        topic_list.append(
            Topic(
                specific,
                general,
                topic_forms,
                list(accumulate(topic_weights)),
                rng.sample(phrases, 6),
            )
        )
    return World(
        lemmas=lemmas,
        content=content,
        forms=forms,
        cum=list(accumulate(weights)),
        phrases=phrases,
        phrase_cum=_zipf_cum(len(phrases), offset=5),
        topics=topic_list,
        topic_cum=_zipf_cum(topics, offset=10, exponent=0.8),
    )


# --- corpus ------------------------------------------------------------------------------------


def _draw(rng: random.Random, world: World, topic: Topic, count: int) -> list[str]:
    common = rng.choices(world.forms, cum_weights=world.cum, k=count)
    topical = rng.choices(topic.forms, cum_weights=topic.cum, k=count)
    out: list[str] = []
    i = j = 0
    while len(out) < count:
        r = rng.random()
        if r < 0.05:
            if rng.random() < 0.5:
                out.extend(rng.choice(topic.phrases))
            else:
                out.extend(rng.choices(world.phrases, cum_weights=world.phrase_cum)[0])
        elif r < 0.17:
            out.append(topical[i])
            i += 1
        elif r < 0.174:
            out.append(rng.choice(SPECIAL_TOKENS))
        else:
            out.append(common[j])
            j += 1
    return out


_PROPER = frozenset(PLACES + PEOPLE)


def _render(rng: random.Random, words: list[str], title: bool) -> str:
    parts = list(words)
    for j in range(len(parts)):
        if parts[j] in _PROPER and rng.random() < 0.12:
            parts[j] += rng.choice(("’s", "'s"))
    parts[0] = parts[0][:1].upper() + parts[0][1:]
    if title and rng.random() < 0.3:
        parts = [w[:1].upper() + w[1:] if len(w) > 3 else w for w in parts]
    if not title:
        for j in range(len(parts) - 1):
            if rng.random() < 0.07:
                parts[j] += ","
    if len(parts) > 4 and rng.random() < 0.1:
        start = rng.randrange(len(parts) - 2)
        end = min(len(parts) - 1, start + rng.randint(1, 4))
        left, right = ("“", "”") if rng.random() < 0.5 else ('"', '"')
        if title and rng.random() < 0.5:
            left, right = "‘", "’"
        parts[start] = left + parts[start]
        parts[end] += right
    if rng.random() < 0.03:
        j = rng.randrange(len(parts) - 1)
        parts[j : j + 2] = [parts[j] + "-" + parts[j + 1]]
    if title:
        if len(parts) > 5 and rng.random() < 0.15:
            parts[1] += ":"
        if len(parts) > 5 and rng.random() < 0.1:
            parts.insert(len(parts) // 2, "–")
        return " ".join(parts)
    return " ".join(parts) + rng.choice(".......?!")


def news_text(
    rng: random.Random, world: World, topic: Topic, words: tuple[int, int]
) -> tuple[str, str]:
    """A headline and sentences of ``words`` (low, high) words in all on ``topic``."""
    title = _render(rng, _draw(rng, world, topic, rng.randint(8, 14)), title=True)
    drawn = _draw(rng, world, topic, rng.randint(*words))
    sentences = []
    pos = 0
    while pos < len(drawn):
        length = rng.randint(10, 24)
        if len(drawn) - pos - length < 6:
            length = len(drawn) - pos
        sentences.append(_render(rng, drawn[pos : pos + length], title=False))
        pos += length
    return title, " ".join(sentences)


def make_corpus(world: World, count: int, seed: int) -> list[Article]:
    rng = random.Random(f"{seed}:corpus")
    articles = []
    for index in range(count):
        topic = rng.choices(world.topics, cum_weights=world.topic_cum)[0]
        title, summary = news_text(rng, world, topic, (40, 90))
        if rng.random() < 0.15:
            place = rng.choice(PLACES).upper()
            summary = f"{place}, {rng.randint(1, 28)} March (Reuters) – {summary}"
        feed = FEEDS[rng.randrange(len(FEEDS))]
        articles.append(
            Article(
                feed=feed,
                uid=str(index),
                title=title,
                link=f"https://news.example/{feed}/{index}",
                summary=summary,
            )
        )
    return articles


# --- rulesets ----------------------------------------------------------------------------------

REGEXES = (
    "/t-?(?:72|80|90)/i",
    "/[0-9]+(?:[.][0-9]+)? ?(?:bn|billion)/i",
    "/covid-?19/i",
    "/(?:su|mig)-[0-9]{2}/i",
    "/£[0-9]+m/",
    "/[A-Z]{2,5}-[0-9]{2}/",
)


class RuleMaker:
    """Rules as analysts write them: topic words, context words, exclusions."""

    def __init__(self, world: World, count: int, seed: int) -> None:
        self.world = world
        self.count = count
        self.rng = random.Random(f"{seed}:rules:{count}")
        self.context_pool = world.content[:400]
        self.exclusion_pool = world.content[100:2500]
        #: Rules without context words name something rarer (a person, a weapon system).
        self.rare_pool = world.content[5500:]
        self.rare_phrases = world.phrases[len(COLLOCATIONS) :]

    def word(self, lemma: Lemma, allow_modes: bool = True) -> str:
        rng = self.rng
        r = rng.random() if allow_modes else 1.0
        single = " " not in lemma.base
        if r < 0.10 and single and len(lemma.base) >= 6:
            return lemma.base[: rng.randint(5, len(lemma.base) - 1)] + "*"
        if r < 0.20 and single and lemma.kind in ("verb", "noun"):
            return lemma.base + "~"
        text = rng.choice(lemma.forms) if lemma.kind == "noun" else lemma.base
        return f'"{text}"' if " " in text else text

    def phrase(self, topic: Topic, rare: bool = False) -> str:
        rng = self.rng
        if rare:
            words = rng.choice(self.rare_phrases)
        else:
            words = rng.choice(topic.phrases if rng.random() < 0.6 else self.world.phrases)
        if rng.random() < 0.05 and len(words[-1]) >= 6:
            return f'"{" ".join([*words[:-1], words[-1][:-2]])}"*'
        return f'"{" ".join(words)}"'

    def term(self, topic: Topic, rare: bool = False) -> Condition:
        """A topic term: a specific word (70%), a phrase (25%), a NEAR (3%)."""
        rng = self.rng
        r = rng.random()
        if rare:
            text = self.phrase(topic, rare) if r < 0.28 else self.word(rng.choice(self.rare_pool))
            return parse_term(text)
        if r < 0.03:
            left = self.word(rng.choice(topic.specific), allow_modes=False)
            right = self.word(rng.choice(topic.specific + topic.general), allow_modes=False)
            query = f"{left} NEAR/{rng.randint(3, 10)} {right}"
            return parse_query(f"title:({query})" if rng.random() < 0.2 else query)
        text = self.phrase(topic) if r < 0.28 else self.word(rng.choice(topic.specific))
        if rng.random() < 0.04:
            text = "title:" + text
        return parse_term(text)

    def simple(self, pool: Sequence[Lemma]) -> Condition:
        return parse_term(self.word(self.rng.choice(pool)))

    def group(self, cls: type[AnyOf], items: list[Condition]) -> Condition:
        return items[0] if len(items) == 1 else cls(tuple(items))

    def condition(self, topic: Topic) -> Condition:
        rng = self.rng
        shape = rng.random()
        topic_terms = AnyOf(tuple(self.term(topic) for _ in range(rng.randint(2, 5))))
        context = self.group(
            AnyOf,
            [
                self.simple(self.context_pool if rng.random() < 0.5 else topic.general)
                for _ in range(rng.randint(1, 3))
            ],
        )
        exclusion = Not(
            AnyOf(tuple(self.simple(self.exclusion_pool) for _ in range(rng.randint(1, 3))))
        )
        if shape < 0.45:  # any + all: [[context]]
            return AllOf((topic_terms, context))
        if shape < 0.75:  # any + all + none
            return AllOf((topic_terms, context, exclusion))
        if shape < 0.90:  # any (or any + none) of rarer names
            names = AnyOf(tuple(self.term(topic, rare=True) for _ in range(rng.randint(2, 4))))
            return names if shape < 0.83 else AllOf((names, exclusion))
        if shape < 0.93:  # match: a NEAR/n b (with context words half the time)
            left = self.word(rng.choice(topic.general), allow_modes=False)
            right = self.word(rng.choice(topic.specific), allow_modes=False)
            near = parse_query(f"{left} NEAR/{rng.randint(3, 8)} {right}")
            return near if rng.random() < 0.5 else AllOf((near, context))
        # all: [a, b, [c, d]]
        return AllOf((self.term(topic), self.term(topic), topic_terms))

    def regex_condition(self, topic: Topic, nth: int) -> Condition:
        regex = parse_term(REGEXES[nth % len(REGEXES)])
        if nth % 4 == 1:  # no word to go with: evaluated for every article
            return AnyOf((regex, self.term(topic)))
        return AllOf((AnyOf(tuple(self.term(topic) for _ in range(3))), regex))

    def rules(self) -> list[Rule]:
        rng = self.rng
        n_regex = max(1, self.count // 2000)
        regex_at = {int((k + 0.5) * self.count / n_regex): k for k in range(n_regex)}
        out = []
        for index in range(self.count):
            topic = rng.choice(self.world.topics)
            if index in regex_at:
                cond = self.regex_condition(topic, regex_at[index])
            else:
                cond = self.condition(topic)
            feeds = tuple(rng.sample(FEEDS, 3)) if rng.random() < 0.03 else ()
            min_terms = 2 if isinstance(cond, AnyOf) and rng.random() < 0.1 else 0
            out.append(
                Rule(
                    name=f"rule-{index:05d}",
                    condition=cond,
                    feeds=feeds,
                    min_terms=min_terms,
                    enabled=rng.random() >= 0.01,
                )
            )
        return out


def make_rules(world: World, count: int, seed: int) -> list[Rule]:
    return RuleMaker(world, count, seed).rules()


# --- shared helpers of the two baselines --------------------------------------------------------


def raw_fields(article: Article) -> dict[str, str]:
    # What each field holds is part of what a term matches, shared like normalize().
    return field_texts(article)


def fields_of(name: str | None) -> tuple[str, ...]:
    return DEFAULT_FIELDS if name is None else (name,)


def term_pattern(term: Term) -> str:
    """The term as a regex over normalised text: " form " (or " prefix" for prefix terms)."""
    forms = "|".join(re.escape(f) for f in surface_forms(term.keys, term.mode))
    return f" (?:{forms})" + ("" if term.mode == "prefix" else "(?= )")


def word_positions(finder: re.Pattern[str], normal: str) -> list[int]:
    """Word indices where a term starts, from a zero-width ``(?=...)`` pattern."""
    return [normal.count(" ", 0, m.start()) for m in finder.finditer(normal)]


def near_holds(
    normal: dict[str, str],
    left: tuple[re.Pattern[str], tuple[str, ...], int],
    right: tuple[re.Pattern[str], tuple[str, ...], int],
    distance: int,
) -> bool:
    (left_rx, left_fields, a_len), (right_rx, right_fields, b_len) = left, right
    for name in left_fields:
        if name not in right_fields:
            continue
        text = normal[name]
        a_positions = word_positions(left_rx, text)
        if not a_positions:
            continue
        for b in word_positions(right_rx, text):
            for a in a_positions:
                # from the start of the last word of the earlier term to the later term
                gap = b - (a + a_len - 1) if b >= a else a - (b + b_len - 1)
                if gap <= distance:
                    return True
    return False


def positive(cond: Condition) -> list[Condition]:
    if isinstance(cond, Term | Regex | Near):
        return [cond]
    if isinstance(cond, Not):
        return []
    return [t for c in cond.children for t in positive(c)]


def term_fields(rules: Sequence[Rule]) -> set[str]:
    found = set(DEFAULT_FIELDS)

    def walk(cond: Condition) -> None:
        if isinstance(cond, Term | Regex):
            if cond.field:
                found.add(cond.field)
        elif isinstance(cond, Near):
            walk(cond.left)
            walk(cond.right)
        elif isinstance(cond, Not):
            walk(cond.child)
        else:
            for child in cond.children:
                walk(child)

    for rule in rules:
        walk(rule.condition)
    return found


# --- baseline (b): naive per-rule regular expressions -------------------------------------------


class Naive:
    """What most feed readers do: per rule, per term, a regex over the normalised text."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = [(rule, self._compile(rule.condition)) for rule in rules if rule.enabled]
        self.fields = sorted(term_fields(rules))

    def _compile(self, cond: Condition) -> Any:
        if isinstance(cond, Term):
            return ("term", re.compile(term_pattern(cond)), fields_of(cond.field), cond.text)
        if isinstance(cond, Regex):
            flags = re.IGNORECASE if cond.ignore_case else 0
            return ("regex", re.compile(cond.pattern, flags), fields_of(cond.field), cond.text)
        if isinstance(cond, Near):
            sides = tuple(
                (re.compile(f"(?={term_pattern(t)})"), fields_of(t.field), len(t.keys))
                for t in (cond.left, cond.right)
            )
            return ("near", sides, cond.distance, cond.text)
        if isinstance(cond, Not):
            return ("not", self._compile(cond.child))
        kind = "any" if isinstance(cond, AnyOf) else "all"
        return (kind, tuple(self._compile(c) for c in cond.children))

    def _eval(self, node: Any, normal: dict[str, str], raw: dict[str, str]) -> bool:
        kind = node[0]
        if kind == "term":
            return any(node[1].search(normal[f]) for f in node[2])
        if kind == "any":
            return any(self._eval(c, normal, raw) for c in node[1])
        if kind == "all":
            return all(self._eval(c, normal, raw) for c in node[1])
        if kind == "not":
            return not self._eval(node[1], normal, raw)
        if kind == "regex":
            return any(node[1].search(raw[f]) for f in node[2])
        return near_holds(normal, node[1][0], node[1][1], node[2])

    def _reasons(self, node: Any) -> list[Any]:
        if node[0] in ("term", "regex", "near"):
            return [node]
        if node[0] == "not":
            return []
        return [r for c in node[1] for r in self._reasons(c)]

    def match(self, article: Article) -> list[str]:
        raw = raw_fields(article)
        normal = {name: normalize(raw[name]) for name in self.fields}
        hits = []
        for rule, node in self.rules:
            if rule.feeds and article.feed not in rule.feeds:
                continue
            if not self._eval(node, normal, raw):
                continue
            if rule.min_terms:
                texts = {r[-1] for r in self._reasons(node) if self._eval(r, normal, raw)}
                if len(texts) < rule.min_terms:
                    continue
            hits.append(rule.name)
        return hits


# --- baseline (c): plain Aho-Corasick, every rule evaluated ------------------------------------


@dataclass
class _PlainArticle:
    raw: dict[str, str]
    normal: dict[str, str]
    present: dict[str, set[int]]
    near_cache: dict[int, bool] = field(default_factory=dict)
    regex_cache: dict[int, bool] = field(default_factory=dict)


class PlainAC:
    """One automaton over every term's surface forms, then every rule's tree, no indexing.

    The trees are compiled into one generated Python function (``if <rule 0>: add(0)`` ...),
    which is several times faster than walking them: a generous baseline.
    """

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = [r for r in rules if r.enabled]
        self.fields = sorted(term_fields(self.rules))
        self.ids: dict[tuple[str, tuple[str, ...]], int] = {}
        self.nears: list[Any] = []
        self.regexes: list[tuple[Any, tuple[str, ...]]] = []
        lines = [
            "def evaluate(u, t, c, present, feed, near, regex, count):",
            "    hits = []",
            "    add = hits.append",
        ]
        for index, rule in enumerate(self.rules):
            tests = [self._expr(rule.condition)]
            if rule.feeds:
                tests.insert(0, f"feed in {frozenset(rule.feeds)!r}")
            if rule.min_terms:
                pairs = ", ".join(
                    f"({t.text!r}, {self._expr(t)})" for t in positive(rule.condition)
                )
                tests.append(f"count(({pairs},)) >= {rule.min_terms}")
            lines.append(f"    if {' and '.join(tests)}:\n        add({index})")
        lines.append("    return hits")
        namespace: dict[str, Any] = {}
        exec(compile("\n".join(lines), "<plain-ac-rules>", "exec"), namespace)
        self._evaluate: Callable[..., list[int]] = namespace["evaluate"]
        by_form: dict[str, list[int]] = {}
        for (mode, keys), tid in self.ids.items():
            for form in surface_forms(keys, mode):  # type: ignore[arg-type]
                pattern = f" {form}" if mode == "prefix" else f" {form} "
                by_form.setdefault(pattern, []).append(tid)
        self.automaton = ahocorasick.Automaton()
        for pattern, tids in by_form.items():
            self.automaton.add_word(pattern, tuple(tids))
        self.automaton.make_automaton()
        self.pattern_count = len(by_form)

    def _tid(self, term: Term) -> int:
        return self.ids.setdefault((term.mode, term.keys), len(self.ids))

    def _expr(self, cond: Condition) -> str:
        if isinstance(cond, Term):
            tid = self._tid(cond)
            local = {None: "u", "title": "t", "content": "c"}.get(cond.field)
            return f"{tid} in {local}" if local else f"{tid} in present[{cond.field!r}]"
        if isinstance(cond, AnyOf):
            return "(" + " or ".join(self._expr(c) for c in cond.children) + ")"
        if isinstance(cond, AllOf):
            return "(" + " and ".join(self._expr(c) for c in cond.children) + ")"
        if isinstance(cond, Not):
            return f"not {self._expr(cond.child)}"
        if isinstance(cond, Regex):
            flags_fields = (compile_regex(cond.pattern, cond.ignore_case), fields_of(cond.field))
            self.regexes.append(flags_fields)
            return f"regex({len(self.regexes) - 1})"
        sides = []
        for t in (cond.left, cond.right):
            sides.append(
                (
                    self._tid(t),
                    re.compile(f"(?={term_pattern(t)})"),
                    fields_of(t.field),
                    len(t.keys),
                )
            )
        self.nears.append((sides, cond.distance))
        return f"near({len(self.nears) - 1})"

    def match(self, article: Article) -> list[str]:
        raw = raw_fields(article)
        normal: dict[str, str] = {}
        present: dict[str, set[int]] = {}
        scan = self.automaton.iter
        for name in self.fields:
            normal[name] = text = normalize(raw[name])
            found: set[int] = set()
            for tids in {tids for _, tids in scan(text)}:
                found.update(tids)
            present[name] = found
        state = _PlainArticle(raw, normal, present)
        t, c = present["title"], present["content"]

        def near(k: int) -> bool:
            if k not in state.near_cache:
                (left, right), distance = self.nears[k]
                both = [
                    name
                    for name in left[2]
                    if name in right[2] and left[0] in present[name] and right[0] in present[name]
                ]
                state.near_cache[k] = bool(both) and near_holds(
                    {n: normal[n] for n in both},
                    (left[1], tuple(both), left[3]),
                    (right[1], tuple(both), right[3]),
                    distance,
                )
            return state.near_cache[k]

        def regex(k: int) -> bool:
            if k not in state.regex_cache:
                compiled, names = self.regexes[k]
                state.regex_cache[k] = any(compiled.search(raw[n]) for n in names)
            return state.regex_cache[k]

        hits = self._evaluate(t | c, t, c, present, article.feed, near, regex, _count_terms)
        return [self.rules[i].name for i in hits]


def _count_terms(pairs: tuple[tuple[str, bool], ...]) -> int:
    return len({text for text, ok in pairs if ok})


# --- measurement -------------------------------------------------------------------------------


def proc_status(key: str) -> int:
    """A memory figure from /proc/self/status, in bytes (0 where there is no /proc)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def sample_frequencies(world: World, seed: int) -> dict[str, float]:
    """Word frequencies from a separate sample of 3,000 articles: what the daemon takes
    from its most recent stored articles to index each rule by its rarest terms."""
    sample = make_corpus(world, 3000, seed + 7919)
    return word_frequencies(f"{a.title}\n{a.summary}" for a in sample)


def memory_probe(size: int, seed: int) -> dict[str, float]:
    """Run in a fresh process: what building the matcher costs in memory."""
    world = make_world(seed)
    rules = make_rules(world, size, seed)
    frequencies = sample_frequencies(world, seed)
    gc.collect()
    before = proc_status("VmRSS")
    start = time.perf_counter()
    matcher = Matcher(rules, frequencies)
    elapsed = time.perf_counter() - start
    gc.collect()
    after = proc_status("VmRSS")
    peak = proc_status("VmHWM")
    trimmed = after
    try:  # glibc: give freed heap back to the OS, to tell retained memory from transient
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        trimmed = proc_status("VmRSS")
    except (OSError, AttributeError):
        pass
    tracemalloc.start()
    second = Matcher(rules, frequencies)
    traced, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del second
    return {
        "compile": elapsed,
        "rss_growth": after - before,
        "rss_trimmed": trimmed - before,
        "rss_peak": peak,
        "traced": traced,
        "traced_peak": traced_peak,
        "patterns": matcher.pattern_count,
    }


def measure_memory(size: int, seed: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--memory-probe", str(size), "--seed", str(seed)],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def interleaved(
    articles: list[Article],
    runners: dict[str, Callable[[Article], Any]],
    rounds: int,
    slow_budget: float,
    chunk: int = 500,
) -> tuple[dict[str, list[float]], dict[str, list[Any]]]:
    """Time each runner over the corpus, alternating chunk by chunk; keep round 1's output.

    A runner whose first round took longer than ``slow_budget`` seconds runs only once.
    """
    times: dict[str, list[float]] = {name: [] for name in runners}
    outputs: dict[str, list[Any]] = {name: [] for name in runners}
    active = list(runners)
    for round_no in range(rounds):
        gc.collect()
        totals = dict.fromkeys(active, 0.0)
        for number, start in enumerate(range(0, len(articles), chunk)):
            part = articles[start : start + chunk]
            for name in active if number % 2 == 0 else active[::-1]:
                run = runners[name]
                began = time.perf_counter()
                result = [run(a) for a in part]
                totals[name] += time.perf_counter() - began
                if round_no == 0:
                    outputs[name].extend(result)
        for name, total in totals.items():
            times[name].append(total)
        if round_no == 0:
            active = [name for name in active if totals[name] <= slow_budget]
    return times, outputs


def hit_set(outputs: list[list[str]]) -> set[tuple[int, str]]:
    return {(index, name) for index, names in enumerate(outputs) for name in names}


@dataclass
class Result:
    size: int
    enabled: int
    patterns: int
    plain_patterns: int
    compile: float
    ours: float
    ours_median: float
    #: ours over the rounds plain also ran (the paired figure for the ratio)
    ours_paired: float
    plain: float
    plain_rounds: int
    naive: float
    naive_articles: int
    hits_per_article: float
    articles_hit: float
    identical: bool
    memory: dict[str, float]


def bench_size(
    size: int,
    world: World,
    articles: list[Article],
    args: argparse.Namespace,
) -> Result:
    rules = make_rules(world, size, args.seed)
    enabled = sum(r.enabled for r in rules)
    frequencies = sample_frequencies(world, args.seed)
    gc.collect()
    start = time.perf_counter()
    matcher = Matcher(rules, frequencies)
    compile_time = time.perf_counter() - start
    plain = PlainAC(rules)
    naive = Naive(rules)

    def ours(article: Article) -> list[str]:
        return [hit.rule for hit in matcher.match(article)]

    times, outputs = interleaved(
        articles, {"ours": ours, "plain": plain.match}, args.rounds, args.slow_budget
    )
    sample = articles[: args.naive_sample]
    gc.collect()
    start = time.perf_counter()
    naive_out = [naive.match(a) for a in sample]
    naive_time = time.perf_counter() - start

    ours_hits = hit_set(outputs["ours"])
    plain_hits = hit_set(outputs["plain"])
    naive_hits = hit_set(naive_out)
    ours_sample = {h for h in ours_hits if h[0] < len(sample)}
    identical = ours_hits == plain_hits and ours_sample == naive_hits
    if not identical:
        for label, other, mine in (
            ("plain", plain_hits, ours_hits),
            ("naive", naive_hits, ours_sample),
        ):
            only_ours, only_other = sorted(mine - other), sorted(other - mine)
            if only_ours or only_other:
                print(
                    f"  MISMATCH ours vs {label}: {len(only_ours)} only in ours, "
                    f"{len(only_other)} only in {label}"
                )
                for index, name in only_ours[:3] + only_other[:3]:
                    rule = next(r for r in rules if r.name == name)
                    print(f"    article {index} rule {name}: {rule.condition}")
                    print(f"      title: {articles[index].title!r}")
                    print(f"      summary: {articles[index].summary!r}")

    memory = measure_memory(size, args.seed)
    per_article = len(ours_hits) / len(articles)
    return Result(
        size=size,
        enabled=enabled,
        patterns=matcher.pattern_count,
        plain_patterns=plain.pattern_count,
        compile=compile_time,
        ours=len(articles) / min(times["ours"]),
        ours_median=len(articles) / statistics.median(times["ours"]),
        ours_paired=len(articles) / min(times["ours"][: len(times["plain"])]),
        plain=len(articles) / min(times["plain"]),
        plain_rounds=len(times["plain"]),
        naive=len(sample) / naive_time,
        naive_articles=len(sample),
        hits_per_article=per_article,
        articles_hit=len({i for i, _ in ours_hits}) / len(articles),
        identical=identical,
        memory=memory,
    )


def _mib(value: float) -> str:
    return f"{value / 2**20:.1f}"


def report(results: list[Result], rounds: int) -> None:
    print()
    print(f"Throughput, articles/s. ours, plain AC: best of {rounds} rounds over the full corpus,")
    print("run interleaved chunk by chunk (a matcher slower than --slow-budget runs one round;")
    print("ours/plain then compares the paired round). naive: one pass over the first")
    print(f"{results[0].naive_articles} articles. hit%: articles with at least one hit.")
    head = (
        f"{'rules':>6} {'ours':>8} {'(median)':>8} {'plain AC':>8} {'naive':>8} "
        f"{'ours/plain':>10} {'ours/naive':>10} {'hits/art':>8} {'hit%':>6}"
    )
    print(head)
    print("-" * len(head))
    for r in results:
        note = "" if r.plain_rounds == rounds else f"  (plain: {r.plain_rounds} round)"
        print(
            f"{r.size:>6} {r.ours:>8,.0f} {r.ours_median:>8,.0f} {r.plain:>8,.0f} "
            f"{r.naive:>8,.1f} {r.ours_paired / r.plain:>9.1f}x {r.ours / r.naive:>9,.0f}x "
            f"{r.hits_per_article:>8.2f} {100 * r.articles_hit:>5.1f}%{note}"
        )
    print()
    print("Compilation and memory of ours (memory: a fresh process per size; RSS from")
    print("/proc/self/status; 'trimmed' is the growth left after malloc_trim(0), i.e. what the")
    print("matcher keeps; py alloc: tracemalloc, retained and peak during the build)")
    head = (
        f"{'rules':>6} {'enabled':>7} {'patterns':>8} {'compile s':>9} {'RSS +MiB':>8} "
        f"{'trimmed':>7} {'py alloc':>8} {'py peak':>7} {'peak RSS':>8}"
    )
    print(head)
    print("-" * len(head))
    for r in results:
        m = r.memory
        print(
            f"{r.size:>6} {r.enabled:>7} {r.patterns:>8} {r.compile:>9.3f} "
            f"{_mib(m['rss_growth']):>8} {_mib(m['rss_trimmed']):>7} {_mib(m['traced']):>8} "
            f"{_mib(m['traced_peak']):>7} {_mib(m['rss_peak']):>8}"
        )
        if r.patterns != r.plain_patterns:
            print(f"       (plain AC has {r.plain_patterns} patterns)")
    print(f"\nbenchmark process peak RSS: {_mib(proc_status('VmHWM'))} MiB")
    print(f"identical: {'yes' if all(r.identical for r in results) else 'NO'}")

    largest = max(results, key=lambda r: r.size)
    vs_plain = largest.ours_paired / largest.plain
    vs_naive = largest.ours / largest.naive
    print(f"\nTargets at {largest.size:,} rules:")
    checks = (
        (
            f"ours >= {TARGET_RATE:,} articles/s",
            f"{largest.ours:,.0f}",
            largest.ours >= TARGET_RATE,
        ),
        (f"ours >= {TARGET_VS_PLAIN:g}x plain AC", f"{vs_plain:.1f}x", vs_plain >= TARGET_VS_PLAIN),
        (
            f"ours >= {TARGET_VS_NAIVE:,.0f}x naive",
            f"{vs_naive:,.0f}x",
            vs_naive >= TARGET_VS_NAIVE,
        ),
        (
            f"compile < {TARGET_COMPILE:g} s",
            f"{largest.compile:.2f} s",
            largest.compile < TARGET_COMPILE,
        ),
    )
    for label, value, ok in checks:
        print(f"  {label:<30} {value:>10}  {'met' if ok else 'NOT MET'}")


def profile(world: World, articles: list[Article], size: int, seed: int) -> None:
    matcher = Matcher(make_rules(world, size, seed), sample_frequencies(world, seed))
    profiler = cProfile.Profile()
    profiler.enable()
    for article in articles:
        matcher.match(article)
    profiler.disable()
    print(f"\ncProfile of ours, {size:,} rules, {len(articles):,} articles (top 25 by tottime)")
    stats = pstats.Stats(profiler, stream=sys.stdout)
    stats.sort_stats("tottime").print_stats(25)
    # Generated code (one function per rule) is spread over thousands of entries: sum it.
    generated: dict[str, list[float]] = {}
    for (filename, _, _), (_, calls, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        if filename.startswith("<") and filename not in ("<string>", "~"):
            entry = generated.setdefault(filename, [0, 0.0])
            entry[0] += calls
            entry[1] += tottime
    for filename, (calls, tottime) in generated.items():
        print(f"generated code {filename}: {int(calls):,} calls, {tottime:.3f} s tottime in all")


def corpus_stats(articles: list[Article]) -> str:
    lengths = [len(a.title) + 1 + len(a.summary) for a in articles]
    words = [len(normalize(a.title).split()) + len(normalize(a.summary).split()) for a in articles]
    non_ascii = sum(not (a.title + a.summary).isascii() for a in articles)
    return (
        f"{len(articles):,} articles, {statistics.mean(lengths):.0f} chars "
        f"(p5 {sorted(lengths)[len(lengths) // 20]}, p95 {sorted(lengths)[-len(lengths) // 20]}), "
        f"{statistics.mean(words):.0f} words on average; "
        f"{100 * non_ascii / len(articles):.0f}% contain non-ASCII characters"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--articles", type=int, default=20_000)
    parser.add_argument("--sizes", default="10,1000,10000")
    parser.add_argument("--naive-sample", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3, help="timing rounds (ours, plain)")
    parser.add_argument(
        "--slow-budget",
        type=float,
        default=15.0,
        help="a matcher whose first round over the corpus takes longer runs only once",
    )
    parser.add_argument("--profile", action="store_true", help="cProfile ours at the largest size")
    parser.add_argument(
        "--profile-articles", type=int, default=5000, help="articles to profile over"
    )
    parser.add_argument("--memory-probe", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_probe is not None:
        print(json.dumps(memory_probe(args.memory_probe, args.seed)))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    began = time.perf_counter()
    world = make_world(args.seed)
    articles = make_corpus(world, args.articles, args.seed)
    vocabulary = len({w for lemma in world.lemmas for w in lemma.forms})
    print(
        f"vocabulary: {len(world.lemmas):,} lemmas, {vocabulary:,} word forms, "
        f"{len(world.phrases)} collocations, {len(world.topics)} topics"
    )
    print(f"corpus: {corpus_stats(articles)} (built in {time.perf_counter() - began:.1f} s)")
    results = []
    for size in sizes:
        began = time.perf_counter()
        result = bench_size(size, world, articles, args)
        results.append(result)
        print(
            f"{size:>6} rules: ours {result.ours:,.0f}/s, plain {result.plain:,.0f}/s, "
            f"naive {result.naive:,.1f}/s, identical: {'yes' if result.identical else 'NO'} "
            f"({time.perf_counter() - began:.0f} s)",
            flush=True,
        )
    report(results, args.rounds)
    if args.profile:
        profile(world, articles[: args.profile_articles], max(sizes), args.seed)
    if not all(r.identical for r in results):
        raise SystemExit("hits differ between matchers")


if __name__ == "__main__":
    main()
