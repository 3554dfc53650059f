from pathlib import Path

import pytest

from monitor.config import PARSE_NICE, Settings, load_settings, parse_duration
from monitor.errors import ConfigErrors

ROOT = Path(__file__).parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def errors_of(path: Path, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigErrors) as info:
        load_settings(path, env or {})
    return [str(e) for e in info.value.errors]


def test_durations() -> None:
    assert parse_duration("90s") == 90
    assert parse_duration("15m") == 900
    assert parse_duration("1.5h") == 5400
    assert parse_duration("2d") == 172800
    assert parse_duration("250ms") == 0.25
    assert parse_duration(45) == 45
    assert parse_duration("soon") is None
    assert parse_duration(True) is None


def test_shipped_example_config_is_valid() -> None:
    settings = load_settings(ROOT / "config.example.yaml", {"SAMPLE_FEED_PORT": "9999"})
    sample = next(f for f in settings.feeds if f.name == "sample")
    assert sample.url == "http://127.0.0.1:9999/sample-feed.xml" and sample.enabled
    outlets = [f for f in settings.feeds if f.name != "sample"]
    assert outlets and not any(f.enabled for f in outlets)
    assert settings.default_channels == ("terminal",)
    assert settings.rules_dir == ROOT / "rules"


def test_paths_are_relative_to_the_file_and_env_fills_secrets(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "database: data/x.db\n"
        "channels:\n  mail: mailto://u:${SMTP_PASSWORD}@127.0.0.1:2525\n"
        "  hook: json://127.0.0.1:${HOOK_PORT:-8080}/\n",
    )
    settings = load_settings(path, {"SMTP_PASSWORD": "s3cret"})
    assert settings.database == tmp_path / "data" / "x.db"
    assert settings.channel("mail").url == "mailto://u:s3cret@127.0.0.1:2525"  # type: ignore[union-attr]
    assert settings.channel("hook").url == "json://127.0.0.1:8080/"  # type: ignore[union-attr]


def test_every_error_at_once_with_file_and_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "databse: x.db\n"  # 1: typo
        "feeds:\n"
        "  - name: wire\n"
        "    url: ftp://example.org/feed\n"  # 4: bad scheme
        "    interval: soon\n"  # 5: bad duration
        "    colour: red\n"  # 6: unknown key
        "  - name: wire\n"  # 7: duplicate name
        "    url: https://example.org/b\n"
        "channels:\n"
        "  mail: mailto://u:${SMTP_PASSWORD}@host\n"  # 10: env var missing
        "default_channels: [pager]\n",  # 11: unknown channel
    )
    errors = "\n".join(errors_of(path))
    assert "config.yaml:1:1: unknown key 'databse'" in errors
    assert "config.yaml:4:5: feed 'wire': url must start with http:// or https://" in errors
    assert "config.yaml:5:5: `interval` must be a duration" in errors
    assert "config.yaml:6:5: unknown key 'colour' in a feed" in errors
    assert "duplicate feed name 'wire'" in errors
    assert "config.yaml:10:3: environment variable SMTP_PASSWORD is not set" in errors
    assert "config.yaml:11:1: default channel 'pager' is not defined" in errors


def test_feed_urls_the_fetcher_would_refuse_are_errors_with_their_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "feeds:\n"
        "  - name: dots\n"
        "    url: http://news..example.org/feed\n"  # 3: an empty label
        "  - name: port\n"
        "    url: https://example.org:70000/feed\n"  # 5: no such port
        "  - name: spaced\n"
        "    url: http://reader:${FEED_PASSWORD}@example.org/feed\n"  # 7: a blank in it
        "  - name: slash\n"
        "    url: http://reader:pa/${SLASHED}@example.org/feed\n"  # 9: unparsable
        "  - name: after-port\n"
        "    url: https://reader:/${SLASHED}@example.org/feed\n"  # 11: password in the path
        "  - name: fine\n"
        "    url: https://medium.com/feed/@newsroom\n"
        "  - name: fine-too\n"
        "    url: https://social.example.org:8443/@newsroom.rss\n"
        "  - name: emoji\n"
        "    url: http://xn--ls8h.la/feed\n",  # 17: httpx cannot send it
    )
    errors = "\n".join(errors_of(path, {"FEED_PASSWORD": "s3cret word", "SLASHED": "s3cret"}))
    assert "config.yaml:3:5: feed 'dots': invalid host name 'news..example.org'" in errors
    assert "config.yaml:5:5: feed 'port': invalid port 70000" in errors
    assert "config.yaml:7:5: feed 'spaced': the url has a space" in errors
    assert "config.yaml:9:5: feed 'slash': invalid URL: it does not parse" in errors
    assert "config.yaml:11:5: feed 'after-port': the url can be read two ways" in errors
    assert "percent-encode @ / ? # in a user name or password" in errors
    assert "config.yaml:17:5: feed 'emoji': host name 'xn--ls8h.la' cannot be used" in errors
    assert "'fine'" not in errors and "'fine-too'" not in errors
    assert "s3cret" not in errors and "pa/" not in errors


def test_feed_list_mistakes_are_located_in_the_file_that_has_them(tmp_path: Path) -> None:
    (tmp_path / "more.yaml").write_text(
        "- name: tass\n  url: https://tass.com/rss/v2.xml\n"
        "- name: wire\n  url: https://news.example.org/b.xml\n"  # 3: wire again
    )
    (tmp_path / "wrapped.yaml").write_text("feeds:\n  - name: x\n    url: https://x.org/\n")
    path = write(
        tmp_path,
        "feeds:\n"
        "  - name: wire\n"  # 2: the first wire
        "    url: https://news.example.org/a.xml\n"
        "  - name: tass\n"  # 4: tass, again in more.yaml:1
        "    url: https://tass.com/rss/v2.xml\n"
        "feeds_from: [more.yaml, wrapped.yaml, missing.yaml]\n",  # 6
    )
    errors = "\n".join(errors_of(path))
    more, wrapped = tmp_path / "more.yaml", tmp_path / "wrapped.yaml"
    first = tmp_path / "config.yaml"
    assert f"{more}:1:3: duplicate feed name 'tass' (first at {first}:4:5)" in errors
    assert f"{more}:3:3: duplicate feed name 'wire' (first at {first}:2:5)" in errors
    assert f"{wrapped}:1:1: a feeds_from file is the list itself" in errors
    assert "take out the `feeds:` line and unindent the entries" in errors
    assert f"{first}:6:1: feeds_from file {tmp_path / 'missing.yaml'} does not exist" in errors


def test_a_channel_apprise_cannot_use_is_reported_at_its_line(tmp_path: Path) -> None:
    from monitor.daemon.loading import validate

    path = write(
        tmp_path,
        "rules_dir: rules\n"
        "channels:\n"
        "  chat: json://127.0.0.1:9/hook\n"
        "  pager: jsonx://127.0.0.1:9/hook\n",  # 4: no such apprise scheme
    )
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "main.yaml").write_text("rules:\n  - name: troops\n    any: [troops]\n")
    with pytest.raises(ConfigErrors) as info:
        validate(load_settings(path, {}))
    [error] = info.value.errors
    assert str(error).startswith(f"{path}:4:3: channel 'pager': apprise does not understand")


def test_a_memory_limit_that_is_not_a_size_is_an_error_not_no_cap(tmp_path: Path) -> None:
    for value in ("512M", "lots", "1TB"):
        errors = "\n".join(errors_of(write(tmp_path, f"parse:\n  memory_limit: {value}\n")))
        assert "config.yaml:2:3: `memory_limit` must be a size such as 512MiB" in errors
    assert (
        load_settings(write(tmp_path, "parse:\n  memory_limit: 0\n"), {}).parse_memory_limit is None
    )
    sized = load_settings(write(tmp_path, "parse:\n  memory_limit: 1GiB\n"), {})
    assert sized.parse_memory_limit == 2**30


def test_parse_worker_priority_is_a_nice_increment(tmp_path: Path) -> None:
    assert load_settings(write(tmp_path, "parse:\n  nice: 0\n"), {}).parse_nice == 0
    assert load_settings(write(tmp_path, "database: x.db\n"), {}).parse_nice == PARSE_NICE
    errors = "\n".join(errors_of(write(tmp_path, "parse:\n  nice: 20\n")))
    assert "config.yaml:2:3: `nice` must be a whole number, from 0 to 19" in errors


def test_the_poll_benchmark_parses_with_the_daemons_defaults() -> None:
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import poll_bench  # it cannot import monitor at the top: reader's venv runs it too

    assert poll_bench.PARSE_NICE == PARSE_NICE == Settings.parse_nice
    assert Settings.parse_memory_limit == poll_bench.PARSE_MEMORY_LIMIT


def test_missing_secret_is_named_but_never_shown(tmp_path: Path) -> None:
    path = write(tmp_path, "channels:\n  mail: mailto://u:${PW}@host\n")
    [error] = errors_of(path)
    assert "PW" in error and "mailto" not in error
