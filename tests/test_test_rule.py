"""`news-monitor test-rule` on a real database: counts, lost/gained, highlighting."""

import json
from datetime import UTC, datetime
from pathlib import Path

from click.testing import CliRunner

from monitor.cli import main
from monitor.match import load_rule_file
from monitor.models import Article
from monitor.store import Store

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def setup(tmp_path: Path) -> Path:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "troops.yaml").write_text("rules:\n  - name: troops\n    any: [troops]\n")
    config = tmp_path / "config.yaml"
    config.write_text("database: db.sqlite\nrules_dir: rules\n")
    store = Store(tmp_path / "db.sqlite")
    titles = ["Troops mass at border", "Soldiers seen near Kharkiv", "Tanks and troops", "Weather"]
    store.save(
        [
            (Article(feed="wire", uid=str(i), title=t, link=f"http://x/{i}"), [])
            for i, t in enumerate(titles)
        ],
        NOW,
    )
    live, _ = load_rule_file(rules / "troops.yaml")
    store.record_rules(live, NOW)
    store.close()
    return config


def run(*args: str) -> str:
    result = CliRunner().invoke(main, ["test-rule", *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_edit_reports_lost_and_gained_against_the_live_version(tmp_path: Path) -> None:
    config = setup(tmp_path)
    edit = tmp_path / "edit.yaml"
    edit.write_text("rules:\n  - name: troops\n    any: [soldiers, tanks]\n")
    out = run("-c", str(config), str(edit), "--since", "all")
    assert "over 4 articles (all stored)" in out
    assert "would fire 2 times; live version" in out and "fired 2; 1 lost, 1 gained" in out
    assert "lost (showing 1 of 1):\n    [wire] Troops mass at border" in out
    assert "gained (showing 1 of 1):\n    [wire] Soldiers seen near Kharkiv" in out
    assert "[Soldiers]" in out  # highlighted (no terminal: brackets)


def test_new_rule_and_count_only_and_json(tmp_path: Path) -> None:
    config = setup(tmp_path)
    new = tmp_path / "new.yaml"
    new.write_text("rules:\n  - name: armour\n    match: tanks OR tank~\n    enabled: false\n")
    out = run("-c", str(config), str(new), "--since", "all", "--count-only")
    assert "would fire 1 times; not live yet (a new rule)" in out
    assert "hits" not in out
    data = json.loads(run("-c", str(config), str(new), "--since", "all", "--json"))
    assert data[0]["fires"] == 1 and data[0]["hits"][0]["title"] == "Tanks and troops"


def test_live_rule_by_name_and_since_window(tmp_path: Path) -> None:
    config = setup(tmp_path)
    out = run("-c", str(config), "troops", "--since", "all")
    assert "fires 2 times; same as the live version" in out
    # Articles were stored "now" by the fake clock in 2026-11-20; a 1-minute window from
    # the real clock finds none of them.
    out = run("-c", str(config), "troops", "--since", "1m")
    assert "over 0 articles" in out


def test_article_file_and_errors(tmp_path: Path) -> None:
    config = setup(tmp_path)
    draft = tmp_path / "draft.txt"
    draft.write_text("Troops cross the river\n\nMore troops followed.\n")
    out = run("-c", str(config), "troops", "--article", str(draft))
    assert "over 1 articles" in out and "Troops cross the river" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - name: x\n    match: troops NEAR/5\n")
    result = CliRunner().invoke(main, ["test-rule", "-c", str(config), str(bad)])
    assert result.exit_code == 1
    assert "bad.yaml:3:19: NEAR needs a term on both sides" in result.output
    result = CliRunner().invoke(main, ["test-rule", "-c", str(config), "nosuch"])
    assert result.exit_code == 1 and "no rule named 'nosuch'; rules: troops" in result.output
