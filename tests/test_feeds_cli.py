"""`news-monitor feeds`: editing the feed lists in place, OPML import and export.

Every test runs the real command on real files in tmp_path and compares bytes: what the
command did not mean to touch must come out exactly as it was.
"""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from conftest import write_project
from hypothesis import given
from hypothesis import strategies as st

from monitor.cli.feeds import feeds
from monitor.config import FEED_NAME, load_settings
from monitor.config.feedsfile import NewFeed, add_feeds, remove_feed, set_enabled
from monitor.config.opml import OpmlFeed, feed_name, parse_opml, to_opml
from monitor.errors import ConfigError
from monitor.models import FeedConfig

ROOT = Path(__file__).parent.parent
OPML = Path(__file__).parent / "data" / "opml"
RELOAD = "systemctl reload news-monitor"

SETTINGS = """\
# Desk settings. Secrets come from the environment.
database: var/news.db
rules_dir: rules

feeds:
  # The wire we pay for; the token is in the environment.
  - name: wire
    url: https://desk:${WIRE_TOKEN:-demo}@wire.example.org/rss   # masked in listings
    interval: 5m
    tags: [wires]

  - name: local
    url: "https://local.example.org/feed.xml"
    enabled: true

feeds_from:
  - feeds/outlets.yaml      # outlets, one file per desk

channels: {}
default_channels: []
delivery:
  baseline: false
"""

OUTLETS = """\
# Outlets of the desk. Same entries as `feeds:` in the settings.

# Sputnik: state media, for what Moscow says.
- name: sputnik
  url: https://sputnikglobe.com/export/rss2/archive/index.xml
  interval: 15m
  enabled: false

# The Moscow Times, independent.
- name: moscowtimes
  url: https://www.themoscowtimes.com/rss/news
  interval: 15m   # they publish often
  tags: [russia]

- name: infobae
  url: https://www.infobae.com/arc/outboundfeeds/rss/
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project from write_project, its settings file replaced by a commented one with
    a feeds_from file; returns the settings path."""
    made = write_project(tmp_path / "desk")
    made.config.write_text(SETTINGS, encoding="utf-8")
    made.config.chmod(0o640)
    outlets = made.root / "feeds" / "outlets.yaml"
    outlets.parent.mkdir()
    outlets.write_text(OUTLETS, encoding="utf-8")
    return made.config


def outlets_of(config: Path) -> Path:
    return config.parent / "feeds" / "outlets.yaml"


def run(*args: str, config: Path | None = None) -> Result:
    """`news-monitor feeds ARGS... -c CONFIG`."""
    extra = ["-c", str(config)] if config is not None else []
    return CliRunner().invoke(feeds, [*args, *extra], catch_exceptions=False)


def names(config: Path) -> dict[str, FeedConfig]:
    return {f.name: f for f in load_settings(config, {}).feeds}


def snapshot(config: Path) -> tuple[bytes, bytes]:
    return config.read_bytes(), outlets_of(config).read_bytes()


# --- add ---------------------------------------------------------------------------------


def test_add_appends_to_the_settings_list_and_keeps_every_other_byte(project: Path) -> None:
    outlets = outlets_of(project).read_bytes()
    url = "https://kyivindependent.com/feed/"
    result = run("add", "kyiv", url, "--tag", "ukraine", config=project)
    assert result.exit_code == 0, result.output
    assert "Added feed 'kyiv' to" in result.stdout and str(project) in result.stdout
    assert RELOAD in result.stdout and "reload_interval (5s)" in result.stdout
    expected = SETTINGS.replace(
        "    enabled: true\n",
        "    enabled: true\n"
        "\n"
        "  - name: kyiv\n"
        "    url: https://kyivindependent.com/feed/\n"
        "    interval: 15m\n"
        "    tags: [ukraine]\n",
        1,
    )
    assert project.read_text() == expected
    assert outlets_of(project).read_bytes() == outlets
    assert stat.S_IMODE(project.stat().st_mode) == 0o640
    feed = names(project)["kyiv"]
    assert feed.tags == ("ukraine",) and feed.interval == 900 and feed.enabled
    # The other entry's ${ENV} reference is still a reference, not its value.
    assert "${WIRE_TOKEN:-demo}" in project.read_text()
    assert not list(project.parent.glob(".*.tmp")), "temporary file left behind"


def test_add_to_a_feeds_from_file_disabled_with_an_interval(project: Path) -> None:
    settings = project.read_bytes()
    result = run(
        "add", "meduza", "https://meduza.io/rss/all", "--interval", "1h", "--disabled",
        "--file", "feeds/outlets.yaml", config=project,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert project.read_bytes() == settings
    assert outlets_of(project).read_text() == OUTLETS + (
        "\n- name: meduza\n  url: https://meduza.io/rss/all\n  interval: 1h\n  enabled: false\n"
    )
    feed = names(project)["meduza"]
    assert feed.interval == 3600 and not feed.enabled


def test_config_given_to_the_group_or_the_subcommand(project: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(feeds, ["-c", str(project), "add", "a1", "https://a1.example/"])
    assert result.exit_code == 0, result.output
    assert "a1" in names(project)
    # The subcommand's own -c wins over the group's.
    other = write_project(tmp_path / "other").config
    result = CliRunner().invoke(
        feeds, ["-c", str(project), "add", "b1", "https://b1.example/", "-c", str(other)]
    )
    assert result.exit_code == 0, result.output
    assert "b1" in names(other) and "b1" not in names(project)


def test_a_name_taken_in_any_file_is_refused_naming_that_file(project: Path) -> None:
    before = snapshot(project)
    result = run("add", "sputnik", "https://sputnik.example/rss", config=project)
    assert result.exit_code == 1
    assert "already exists" in result.output and "feeds/outlets.yaml:4" in result.output
    assert snapshot(project) == before


def test_the_same_url_twice_is_a_warning_not_a_refusal(project: Path) -> None:
    result = run("add", "times2", "https://www.TheMoscowTimes.com/rss/news/", config=project)
    assert result.exit_code == 0, result.output
    assert "warning: feed 'moscowtimes'" in result.stderr and "outlets.yaml:10" in result.stderr
    assert "times2" in names(project)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["bad name", "https://x.example/"], "bad feed name 'bad name'"),
        (["_wire", "https://x.example/"], "bad feed name '_wire'"),
        (["x" * 81, "https://x.example/"], "at most 80 characters"),
        (["ftp", "ftp://x.example/"], "url must start with http:// or https://"),
        (["spaced", "https://x.example/a b"], "hold no spaces"),
    ],
)
def test_invalid_names_and_urls_are_refused(project: Path, args: list[str], message: str) -> None:
    before = snapshot(project)
    result = run("add", *args, config=project)
    assert result.exit_code == 1
    assert message in result.output and str(project) in result.output
    assert snapshot(project) == before


def test_a_bad_interval_is_a_usage_error(project: Path) -> None:
    before = snapshot(project)
    result = run("add", "x", "https://x.example/", "--interval", "soon", config=project)
    assert result.exit_code == 2 and "--interval" in result.output
    assert snapshot(project) == before


def test_a_value_yaml_would_misread_is_quoted(project: Path) -> None:
    result = run("add", "1.10", "https://x.example/?a=1&b=2#top", "--tag", "yes", "--tag", "a,b",
                 "--interval", "90", config=project)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "  - name: '1.10'\n" in project.read_text()
    feed = names(project)["1.10"]
    assert feed.url == "https://x.example/?a=1&b=2#top" and feed.tags == ("yes", "a,b")
    assert feed.interval == 90


def test_a_change_that_breaks_the_settings_is_rolled_back(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DESK_TOKEN_NOT_SET", raising=False)
    before = snapshot(project)
    result = run("add", "secret", "https://x.example/${DESK_TOKEN_NOT_SET}/rss", config=project)
    assert result.exit_code == 1
    assert "environment variable DESK_TOKEN_NOT_SET is not set" in result.stderr
    assert "was put back as it was" in result.stderr and str(project) in result.stderr
    assert snapshot(project) == before
    assert stat.S_IMODE(project.stat().st_mode) == 0o640


def test_settings_that_do_not_load_are_not_edited(project: Path) -> None:
    outlets_of(project).write_text(OUTLETS + "- name: broken\n  url: gopher://x/\n")
    before = snapshot(project)
    result = run("pause", "wire", config=project)
    assert result.exit_code == 1
    assert "url must start with http" in result.stderr and "fix them first" in result.stderr
    assert snapshot(project) == before


def test_a_missing_settings_file_is_an_error(tmp_path: Path) -> None:
    result = run("add", "x", "https://x.example/", config=tmp_path / "nope.yaml")
    assert result.exit_code == 1 and "settings file not found" in result.output


# --- remove, pause, resume -----------------------------------------------------------------


def test_remove_takes_the_entry_and_its_comment_only(project: Path) -> None:
    settings = project.read_bytes()
    result = run("remove", "moscowtimes", config=project)
    assert result.exit_code == 0, result.output
    assert "Removed feed 'moscowtimes' from" in result.stdout and "outlets.yaml:10" in result.stdout
    assert RELOAD in result.stdout
    gone = (
        "# The Moscow Times, independent.\n"
        "- name: moscowtimes\n"
        "  url: https://www.themoscowtimes.com/rss/news\n"
        "  interval: 15m   # they publish often\n"
        "  tags: [russia]\n"
        "\n"
    )
    assert outlets_of(project).read_text() == OUTLETS.replace(gone, "")
    assert project.read_bytes() == settings
    assert "moscowtimes" not in names(project)


def test_removing_from_the_settings_file_down_to_an_empty_list(project: Path) -> None:
    assert run("remove", "wire", config=project).exit_code == 0
    assert run("remove", "local", config=project).exit_code == 0
    head, tail = SETTINGS.split("feeds:\n", 1)[0], SETTINGS.split("    enabled: true\n", 1)[1]
    assert project.read_text() == head + "feeds: []\n" + tail  # the blank line before feeds_from
    assert tail.startswith("\nfeeds_from:")
    assert set(names(project)) == {"sputnik", "moscowtimes", "infobae"}
    # ...and back: the empty list becomes a block list again.
    assert run("add", "wire", "https://wire.example.org/rss", config=project).exit_code == 0
    assert "feeds:\n  - name: wire\n    url: https://wire.example.org/rss\n" in project.read_text()


def test_an_unknown_name_lists_the_known_ones_and_the_files(project: Path) -> None:
    before = snapshot(project)
    for command in ("remove", "pause", "resume"):
        result = run(command, "reuters", config=project)
        assert result.exit_code == 1
        assert "no feed named 'reuters'" in result.output
        assert "feeds: infobae, local, moscowtimes, sputnik, wire" in result.output
        assert "outlets.yaml" in result.output and str(project) in result.output
    assert snapshot(project) == before


def test_a_feed_a_rule_is_limited_to_cannot_be_removed(project: Path) -> None:
    (project.parent / "rules" / "scoped.yaml").write_text(
        "rules:\n  - name: russia-watch\n    any: [kremlin]\n    feeds: [russia]\n"
    )
    before = snapshot(project)
    result = run("remove", "moscowtimes", config=project)  # the only feed tagged russia
    assert result.exit_code == 1
    assert "rule 'russia-watch'" in result.output and "scoped.yaml:2" in result.output
    assert "feeds pause moscowtimes" in result.output
    assert snapshot(project) == before


def test_pause_and_resume_write_enabled_in_place(project: Path) -> None:
    settings = project.read_bytes()
    result = run("resume", "sputnik", config=project)
    assert result.exit_code == 0, result.output
    assert "Resumed feed 'sputnik'" in result.stdout and RELOAD in result.stdout
    assert outlets_of(project).read_text() == OUTLETS.replace(
        "  interval: 15m\n  enabled: false\n", "  interval: 15m\n  enabled: true\n", 1
    )
    # No `enabled:` yet: the line goes after the interval, before the tags.
    assert run("pause", "moscowtimes", config=project).exit_code == 0
    assert (
        "  interval: 15m   # they publish often\n  enabled: false\n  tags: [russia]\n"
        in outlets_of(project).read_text()
    )
    assert project.read_bytes() == settings
    state = names(project)
    assert state["sputnik"].enabled and not state["moscowtimes"].enabled
    # Pausing again changes nothing and says so.
    before = snapshot(project)
    again = run("pause", "moscowtimes", config=project)
    assert again.exit_code == 0 and "already paused" in again.stdout
    assert RELOAD not in again.stdout
    assert snapshot(project) == before


def test_editing_feeds_needs_none_of_the_daemons_secrets(project: Path) -> None:
    """The feed lists can be edited by whoever may write them: a password the settings
    take from ${NAME} or a systemd credential need not resolve for that."""
    text = project.read_text()
    assert text.count("channels: {}\n") == 1
    project.write_text(
        text.replace(
            "channels: {}\n",
            "channels:\n  mail: mailtos://u:${SMTP_PASSWORD}@smtp.example.org\n"
            "  pager: json://127.0.0.1:9/${credential:pager-token}\n",
        )
    )
    assert run("pause", "moscowtimes", config=project).exit_code == 0
    result = run("resume", "moscowtimes", config=project)
    assert result.exit_code == 0, result.output
    assert "Resumed feed 'moscowtimes'" in result.stdout


def test_pause_in_the_settings_file_keeps_env_references(project: Path) -> None:
    assert run("pause", "wire", config=project).exit_code == 0
    assert project.read_text() == SETTINGS.replace(
        "    interval: 5m\n", "    interval: 5m\n    enabled: false\n", 1
    )
    assert run("resume", "wire", config=project).exit_code == 0
    assert "    interval: 5m\n    enabled: true\n    tags: [wires]\n" in project.read_text()
    assert "${WIRE_TOKEN:-demo}" in project.read_text()


def test_write_project_layout_unindented_lists(tmp_path: Path) -> None:
    """conftest's settings (yaml.safe_dump: list items at column 0, no comments)."""
    made = write_project(tmp_path, feeds=[{"name": "a", "url": "https://a.example/"}])
    before = made.config.read_text()
    assert run("add", "b", "https://b.example/", config=made.config).exit_code == 0
    text = made.config.read_text()
    assert "- name: a\n  url: https://a.example/\n- name: b\n  url: https://b.example/\n" in text
    assert run("pause", "a", config=made.config).exit_code == 0
    assert run("resume", "a", config=made.config).exit_code == 0
    assert run("remove", "b", config=made.config).exit_code == 0
    assert made.config.read_text() == before.replace(
        "  url: https://a.example/\n", "  url: https://a.example/\n  enabled: true\n"
    )


def test_the_shipped_files_come_back_byte_for_byte(tmp_path: Path) -> None:
    """add + remove, and pause + resume, on config.example.yaml and seeds/outlets.yaml."""
    shutil.copy(ROOT / "config.example.yaml", tmp_path / "config.yaml")
    shutil.copytree(ROOT / "rules", tmp_path / "rules")
    (tmp_path / "seeds").mkdir()
    shutil.copy(ROOT / "seeds" / "outlets.yaml", tmp_path / "seeds" / "outlets.yaml")
    config = tmp_path / "config.yaml"
    outlets = tmp_path / "seeds" / "outlets.yaml"
    original = config.read_bytes(), outlets.read_bytes()
    steps = [
        ("add", "kyiv", "https://kyivindependent.com/feed/", "--tag", "ukraine"),
        ("add", "meduza", "https://meduza.io/rss/all", "--file", "seeds/outlets.yaml"),
        ("pause", "sample"),
        ("resume", "sputnik"),
        ("remove", "kyiv"),
        ("remove", "meduza"),
        ("resume", "sample"),
        ("pause", "sputnik"),
    ]
    for step in steps:
        result = run(*step, config=config)
        assert result.exit_code == 0, (step, result.output)
        load_settings(config, {})
    assert (config.read_bytes(), outlets.read_bytes()) == original


INDENTED = "  - name: n\n    url: https://n.example/\n    interval: 15m\n"
FLUSH = "- name: n\n  url: https://n.example/\n  interval: 15m\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # No `feeds:` at all: appended at the end.
        ("database: x.db\n", "database: x.db\n\nfeeds:\n" + INDENTED),
        # An empty flow list, with a comment after it.
        ("feeds: []  # none yet\n", "feeds:  # none yet\n" + INDENTED),
        # Windows line ends stay Windows line ends.
        (
            "feeds:\r\n- name: a\r\n  url: https://a.example/\r\n",
            "feeds:\r\n- name: a\r\n  url: https://a.example/\r\n" + FLUSH.replace("\n", "\r\n"),
        ),
        # The dash alone on its line.
        (
            "feeds:\n  -\n    name: a\n    url: https://a.example/\n",
            "feeds:\n  -\n    name: a\n    url: https://a.example/\n" + INDENTED,
        ),
    ],
)
def test_unusual_but_valid_layouts(tmp_path: Path, text: str, expected: str) -> None:
    made = write_project(tmp_path)
    made.config.write_bytes(text.encode())
    add_feeds(made.config, [NewFeed("n", "https://n.example/")], {})
    assert made.config.read_bytes().decode() == expected
    assert "n" in names(made.config)


def test_a_flow_style_list_is_refused_untouched(tmp_path: Path) -> None:
    made = write_project(tmp_path)
    made.config.write_text("feeds: [{name: a, url: 'https://a.example/'}]\n")
    before = made.config.read_bytes()
    with pytest.raises(ConfigError, match="flow style"):
        add_feeds(made.config, [NewFeed("n", "https://n.example/")], {})
    with pytest.raises(ConfigError, match="flow style"):
        set_enabled(made.config, "a", False, {})
    with pytest.raises(ConfigError, match="flow style"):
        remove_feed(made.config, "a", {})
    assert made.config.read_bytes() == before


def test_a_settings_symlink_stays_a_symlink(tmp_path: Path) -> None:
    made = write_project(tmp_path / "real", feeds=[{"name": "a", "url": "https://a.example/"}])
    link = tmp_path / "config.yaml"
    link.symlink_to(made.config)
    assert run("pause", "a", config=link).exit_code == 0
    assert link.is_symlink() and "enabled: false" in made.config.read_text()


# --- listing -------------------------------------------------------------------------------


def test_listing_is_the_default_and_masks_credentials(project: Path) -> None:
    result = run("--json", config=project)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["name"] for r in rows] == ["wire", "local", "sputnik", "moscowtimes", "infobae"]
    assert rows[0]["url"] == "https://***@wire.example.org/rss"
    assert rows[0]["health"] == "never polled" and rows[2]["health"] == "disabled in config"
    text = run(config=project)
    assert text.exit_code == 0 and "moscowtimes" in text.stdout and "demo" not in text.stdout


def test_every_command_has_an_example() -> None:
    assert "Example:" in CliRunner().invoke(feeds, ["--help"]).output
    assert set(feeds.commands) == {"add", "remove", "pause", "resume", "import", "export"}
    for name in feeds.commands:
        result = CliRunner().invoke(feeds, [name, "--help"])
        assert result.exit_code == 0 and "Example:" in result.output, name
        assert "--config" in result.output, name


def test_through_the_main_command(project: Path) -> None:
    from monitor.cli import main

    # The regression this test is for: `news-monitor feeds` is missing or another group.
    assert main.commands.get("feeds") is feeds
    result = CliRunner().invoke(
        main, ["feeds", "add", "kyiv", "https://kyivindependent.com/feed/", "-c", str(project)]
    )
    assert result.exit_code == 0, result.output
    assert "kyiv" in names(project)
    result = CliRunner().invoke(main, ["feeds", "-c", str(project), "pause", "kyiv"])
    assert result.exit_code == 0, result.output
    assert not names(project)["kyiv"].enabled


# --- OPML ----------------------------------------------------------------------------------


def test_parse_opml_flattens_folders_into_tags() -> None:
    found = parse_opml((OPML / "subscriptions.opml").read_bytes(), "subscriptions.opml")
    assert found[0] == OpmlFeed(
        "The Kyiv Independent",
        "https://kyivindependent.com/feed/",
        "https://kyivindependent.com/",
        ("Ukraine",),
    )
    assert found[2].title == "Meduza & friends"
    assert found[2].tags == ("Ukraine", "Russian-language", "Exile media", "independent")
    assert [f.url for f in found if "liveuamap" in f.url] == []  # a link, not a feed
    assert len(found) == 7


@pytest.mark.parametrize(
    ("data", "message", "line"),
    [
        (b"<opml><body><outline text='x'", "not well-formed XML", 1),
        (b"<?xml version='1.0'?>\n<opml>\n<body>\n</opml>", "not well-formed XML", 4),
        (b"<rss version='2.0'><channel/></rss>", "not an OPML file", 1),
        (b"<opml><body><outline text='folder'/></body></opml>", "lists no feeds", None),
        (b"<opml><body>&lol;</body></opml>", "undefined entity", 1),
    ],
)
def test_parse_opml_errors_name_the_file_and_line(
    data: bytes, message: str, line: int | None
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_opml(data, "in.opml")
    assert message in info.value.message and info.value.path == "in.opml"
    assert info.value.line == line


@pytest.mark.parametrize("name", ["entities.opml", "external.opml"])
def test_entity_and_dtd_attacks_are_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="DTD") as info:
        parse_opml((OPML / name).read_bytes(), name)
    assert info.value.line == 2


def test_import_names_tags_and_skips(project: Path) -> None:
    settings = project.read_bytes()
    opml = str(OPML / "subscriptions.opml")
    dry = run("import", opml, "--file", "feeds/outlets.yaml", "--dry-run", "--json", config=project)
    assert dry.exit_code == 0, dry.output
    plan = json.loads(dry.stdout)
    assert snapshot(project) == (settings, OUTLETS.encode())  # --dry-run writes nothing
    assert plan["dry_run"] and plan["file"].endswith("outlets.yaml")
    added = {a["name"]: a for a in plan["added"]}
    assert list(added) == ["the-kyiv-independent", "novayagazeta.eu", "meduza-friends",
                           "bbc-news-world"]  # fmt: skip
    assert added["meduza-friends"]["tags"] == [
        "Ukraine", "Russian-language", "Exile media", "independent"
    ]  # fmt: skip
    # Listed twice (trailing / aside): one feed, with the tags of both folders.
    assert added["the-kyiv-independent"]["tags"] == ["Ukraine", "Wires"]
    reasons = {s["url"]: s["reason"] for s in plan["skipped"]}
    assert (
        "already configured as 'sputnik'"
        in reasons["https://sputnikglobe.com/export/rss2/archive/index.xml"]
    )
    assert "not an http:// or https:// URL" in reasons["feed://example.org/rss"]
    assert "listed twice" in reasons["https://kyivindependent.com/feed"]

    text_dry = run("import", opml, "--dry-run", config=project)
    assert text_dry.exit_code == 0 and "Dry run: nothing was written." in text_dry.stdout
    assert snapshot(project) == (settings, OUTLETS.encode())

    done = run("import", opml, "--file", "feeds/outlets.yaml", "--interval", "30m", config=project)
    assert done.exit_code == 0, done.output
    assert "4 feed(s) added to" in done.stdout and RELOAD in done.stdout
    assert project.read_bytes() == settings
    assert outlets_of(project).read_text().startswith(OUTLETS)
    state = names(project)
    assert state["bbc-news-world"].url == "http://feeds.bbci.co.uk/news/world/rss.xml"
    assert state["bbc-news-world"].interval == 1800
    assert state["novayagazeta.eu"].tags == ("Ukraine", "Russian-language")

    # Importing the same file again adds nothing.
    again = run("import", opml, "--json", config=project)
    assert again.exit_code == 0
    assert json.loads(again.stdout)["added"] == []
    assert outlets_of(project).read_text().count("- name:") == 7


def test_import_refuses_an_entity_attack_and_writes_nothing(project: Path) -> None:
    before = snapshot(project)
    result = run("import", str(OPML / "entities.opml"), config=project)
    assert result.exit_code == 1 and "DTD" in result.output and "entities.opml:2" in result.output
    assert snapshot(project) == before


def test_export_round_trips_and_masks_credentials(project: Path, tmp_path: Path) -> None:
    result = run("export", config=project)
    assert result.exit_code == 0, result.output
    assert "demo" not in result.stdout and "1 feed URL(s) carry credentials" in result.stderr
    found = parse_opml(result.stdout_bytes, "export")
    configured = load_settings(project, {}).feeds
    assert [(f.title, f.tags) for f in found] == [(f.name, f.tags) for f in configured]
    assert found[0].url == "https://***@wire.example.org/rss"
    assert [f.url for f in found[1:]] == [f.url for f in configured[1:]]

    out = tmp_path / "feeds.opml"
    with_secrets = run("export", "-o", str(out), "--include-credentials", config=project)
    assert with_secrets.exit_code == 0, with_secrets.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert parse_opml(out.read_bytes(), str(out))[0].url == "https://desk:demo@wire.example.org/rss"

    # A masked export imported back skips the masked feed instead of adding `***`.
    other = write_project(tmp_path / "other").config
    (tmp_path / "masked.opml").write_bytes(result.stdout_bytes)
    back = run("import", str(tmp_path / "masked.opml"), "--json", config=other)
    assert back.exit_code == 0, back.output
    plan = json.loads(back.stdout)
    assert "credentials were masked" in plan["skipped"][0]["reason"]
    assert [a["name"] for a in plan["added"]] == ["local", "sputnik", "moscowtimes", "infobae"]


def test_to_opml_escapes_and_groups_by_first_tag() -> None:
    feeds_ = [
        FeedConfig("a", "https://a.example/?x=1&y=<2>", 900, tags=('R&D "lab"', "b")),
        FeedConfig("b", "https://b.example/", 900, tags=('R&D "lab"',)),
        FeedConfig("c", "https://c.example/", 900),
    ]
    data = to_opml(feeds_, "Desk <feeds> & more")
    assert b"&amp;y=&lt;2&gt;" in data and b"R&amp;D &quot;lab&quot;" in data
    assert data.count(b'text="R&amp;D &quot;lab&quot;"') == 1  # one folder for both
    back = parse_opml(data, "x")
    assert [(f.title, f.url, f.tags) for f in back] == [(f.name, f.url, f.tags) for f in feeds_]


@pytest.mark.parametrize(
    ("title", "url", "taken", "expected"),
    [
        ("BBC News - World", "https://bbc.co.uk/rss", set(), "bbc-news-world"),
        ("Le Monde à la une", "https://lemonde.fr/rss", set(), "le-monde-a-la-une"),
        ("Новости", "https://www.kommersant.ru/RSS/news.xml", set(), "kommersant.ru"),
        ("", "https://www.Example.org/feed", set(), "example.org"),
        ("!!!", "not a url", set(), "feed"),
        ("", "https://[broken/feed", set(), "feed"),
        ("Reuters", "https://r.example/", {"reuters", "Reuters-2"}, "reuters-3"),
        ("x" * 200, "https://x.example/", {"x" * 80}, "x" * 78 + "-2"),
    ],
)
def test_feed_name(title: str, url: str, taken: set[str], expected: str) -> None:
    assert feed_name(title, url, taken) == expected


@given(st.text(max_size=120), st.text(max_size=40), st.sets(st.text(max_size=85), max_size=5))
def test_feed_name_is_always_valid_and_new(title: str, host: str, taken: set[str]) -> None:
    name = feed_name(title, f"https://{host}/feed", taken)
    assert FEED_NAME.match(name), name
    assert name.lower() not in {t.lower() for t in taken}


def test_atomic_write_keeps_mode_and_leaves_no_temporary(project: Path) -> None:
    outlets = outlets_of(project)
    outlets.chmod(0o604)
    assert run("pause", "infobae", config=project).exit_code == 0
    assert stat.S_IMODE(outlets.stat().st_mode) == 0o604
    assert sorted(p.name for p in outlets.parent.iterdir()) == ["outlets.yaml"]
