"""The docs say what the code does: the examples in docs/rules.md are run here."""

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from monitor.cli import main
from monitor.match import Matcher, parse_query
from monitor.models import Article, Rule

ROOT = Path(__file__).parent.parent
RULES_DOC = (ROOT / "docs" / "rules.md").read_text()


def term_table() -> list[tuple[str, list[str], list[str]]]:
    section = RULES_DOC.split("## Terms", 1)[1].split("\n\n", 2)[1]
    rows = []
    for line in section.splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        example = cells[1].strip("`").replace("\\|", "|")
        quoted = [re.findall(r'"([^"]*)"', c) for c in cells[2:4]]
        rows.append((example, quoted[0], quoted[1]))
    return rows


@pytest.mark.parametrize(("query", "yes", "no"), term_table())
def test_term_examples(query: str, yes: list[str], no: list[str]) -> None:
    matcher = Matcher([Rule(name="doc", condition=parse_query(query))])
    for text in yes:
        assert matcher.match(Article(feed="f", uid="1", title=text, link="")), (query, text)
    for text in no:
        assert not matcher.match(Article(feed="f", uid="1", title=text, link="")), (query, text)


def test_near_example() -> None:
    m = Matcher([Rule(name="doc", condition=parse_query('"armoured column" NEAR/3 border'))])
    assert m.match(Article(feed="f", uid="1", title="an armoured column near the border", link=""))


def test_every_command_is_documented_with_an_example() -> None:
    readme = (ROOT / "README.md").read_text()
    for name, command in main.commands.items():
        assert f"news-monitor {name}" in readme, f"README does not mention `{name}`"
        help_text = CliRunner().invoke(main, [name, "--help"]).output
        assert "Example:" in help_text, f"`{name} --help` has no example"
        for sub in getattr(command, "commands", {}):
            assert re.search(rf"news-monitor {name}\b.*\b{sub}\b", readme), f"{name} {sub}"
            help_text = CliRunner().invoke(main, [name, sub, "--help"]).output
            assert "Example:" in help_text, f"`{name} {sub} --help` has no example"


def test_every_settings_key_is_documented() -> None:
    from monitor import config

    readme = (ROOT / "README.md").read_text()
    keys = [
        *config.TOP_KEYS,
        *config.FEED_KEYS,
        *config.FETCH_KEYS,
        *config.DELIVERY_KEYS,
        *config.CHANNEL_KEYS,
        *config.HEALTH_KEYS,
        *config.PARSE_KEYS,
        *config.STORIES_KEYS,
        *config.TEMPLATE_KEYS,
        *config.RETENTION_KEYS,
        *config.METRICS_KEYS,
    ]
    for key in keys:
        assert re.search(rf"\b{key}:", readme), f"settings key `{key}` is not in the README"


def test_every_rule_key_is_documented() -> None:
    from monitor.match import RULE_KEYS

    for key in RULE_KEYS:
        assert f"`{key}`" in RULES_DOC or f"{key}:" in RULES_DOC, key


def test_every_query_in_the_docs_parses() -> None:
    readme = (ROOT / "README.md").read_text()
    queries = re.findall(r"^\s*match: (.+)$", RULES_DOC + readme, flags=re.MULTILINE)
    queries += re.findall(r"`match: ([^`]+)`", RULES_DOC)
    assert len(queries) >= 3
    for query in queries:
        assert parse_query(query.split("  #")[0].strip()), query
