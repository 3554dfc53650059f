from pathlib import Path

from monitor.match import load_rule_file, load_rules, resolve_references
from monitor.models import AnyOf, Term


def write(dir: Path, name: str, text: str | bytes) -> Path:
    path = dir / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def messages(dir: Path) -> list[str]:
    return [str(e) for e in load_rules(dir).errors]


def test_valid_rule_loads_with_version_and_location(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "rules:\n  - name: talks\n    any: [talks, negotiations]\n")
    ruleset = load_rules(tmp_path)
    assert ruleset.errors == ()
    [rule] = ruleset.rules
    assert rule.name == "talks" and rule.line == 2 and rule.path.endswith("a.yaml")
    assert isinstance(rule.condition, AnyOf)
    assert len(rule.version) == 12


def test_version_changes_when_the_rule_changes(tmp_path: Path) -> None:
    path = write(tmp_path, "a.yaml", "rules:\n  - name: t\n    any: [talks]\n")
    [before], _ = load_rule_file(path)
    write(tmp_path, "a.yaml", "rules:\n  - name: t\n    any: [talks, summit]\n")
    [after], _ = load_rule_file(path)
    assert before.version != after.version


def test_every_error_is_reported_with_file_line_and_rule(tmp_path: Path) -> None:
    write(
        tmp_path,
        "bad.yaml",
        "rules:\n"
        "  - name: one\n"
        "    any: []\n"  # line 3: empty group
        "    colour: red\n"  # line 4: unknown key
        "  - name: two\n"
        "    severity: critical\n"  # line 6: bad severity
        "    all: [x]\n"
        "  - any: [x]\n",  # line 8: no name
    )
    errors = messages(tmp_path)
    text = "\n".join(errors)
    assert "bad.yaml:3:5: `any` is empty" in text and "(rule 'one')" in text
    assert "bad.yaml:4:5: unknown key 'colour'" in text
    assert "bad.yaml:6:5: severity must be one of low, normal, urgent" in text
    assert "bad.yaml:8:5: rule has no `name`" in text
    assert len(errors) == 4


def test_duplicate_rule_names_across_files(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "rules:\n  - name: same\n    any: [x]\n")
    write(tmp_path, "b.yaml", "rules:\n\n  - name: same\n    any: [y]\n")
    [error] = messages(tmp_path)
    assert "b.yaml:3" in error and "duplicate rule name (also defined at" in error
    assert "a.yaml:2" in error


def test_rule_needs_terms(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "rules:\n  - name: t\n    none: [x]\n")
    assert any("rule needs terms" in m for m in messages(tmp_path))


def test_yaml_hazards(tmp_path: Path) -> None:
    write(tmp_path, "dupkey.yaml", "rules:\n  - name: a\n    any: [x]\n    any: [y]\n")
    write(tmp_path, "python.yaml", "rules: !!python/object/apply:os.system ['true']\n")
    write(tmp_path, "multi.yaml", "rules: []\n---\nrules: []\n")
    write(tmp_path, "syntax.yaml", "rules:\n  - name: [unclosed\n")
    text = "\n".join(messages(tmp_path))
    assert "dupkey.yaml:4:5: duplicate key 'any' (first defined on line 3)" in text
    assert "python.yaml:1:8" in text and "!!python" in text
    assert "multi.yaml:2" in text and "several YAML documents" in text
    assert "syntax.yaml:3" in text


def test_yaml_11_booleans_stay_words(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "rules:\n  - name: nordic\n    any: [NO, yes, on, off]\n")
    [rule] = load_rules(tmp_path).rules
    assert isinstance(rule.condition, AnyOf)
    assert [t.text for t in rule.condition.children if isinstance(t, Term)] == [
        "NO",
        "yes",
        "on",
        "off",
    ]


def test_real_booleans_as_terms_are_refused(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "rules:\n  - name: t\n    any: [true]\n")
    assert any('quote it ("true")' in m for m in messages(tmp_path))


def test_alias_bomb_is_refused(tmp_path: Path) -> None:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines.append(f"{chr(97 + i)}: &{chr(97 + i)} [" + ", ".join([f"*{chr(96 + i)}"] * 10) + "]")
    lines.append("rules:\n  - name: bomb\n    any: *i")
    write(tmp_path, "bomb.yaml", "\n".join(lines) + "\n")
    errors = messages(tmp_path)
    assert len(errors) == 1
    assert "alias bomb" in errors[0] and "bomb.yaml:4:" in errors[0]


def test_small_anchors_still_work(tmp_path: Path) -> None:
    write(
        tmp_path,
        "a.yaml",
        "rules:\n  - name: a\n    any: &words [troops, soldiers]\n"
        "  - name: b\n    any: *words\n    all: [border]\n",
    )
    assert [r.name for r in load_rules(tmp_path).rules] == ["a", "b"]


def test_bom_and_utf16_files_load(tmp_path: Path) -> None:
    text = "rules:\n  - name: kyiv\n    any: [Київ]\n"
    write(tmp_path, "bom.yaml", b"\xef\xbb\xbf" + text.replace("kyiv", "kyiv8").encode())
    write(tmp_path, "u16.yaml", text.encode("utf-16"))
    ruleset = load_rules(tmp_path)
    assert ruleset.errors == ()
    assert sorted(r.name for r in ruleset.rules) == ["kyiv", "kyiv8"]


def test_empty_file_holds_no_rules_and_empty_dir_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, "empty.yaml", "")
    [error] = messages(tmp_path)
    assert "no rules found" in error


def test_references_by_name_or_tag(tmp_path: Path) -> None:
    write(
        tmp_path,
        "a.yaml",
        "rules:\n  - name: t\n    any: [x]\n    feeds: [tass, wires]\n"
        "    channels: [pager, desk]\n",
    )
    ruleset = load_rules(tmp_path)
    feeds = {"reuters": ("wires",), "afp": ("wires",), "rt": ()}
    channels = {"mail": ("desk",), "chat": ("desk",)}
    [rule], errors = resolve_references(ruleset.rules, feeds, channels)
    messages = [str(e) for e in errors]
    assert any(
        "unknown feed or feed tag 'tass'; defined feeds: afp, reuters, rt" in m for m in messages
    )
    assert any("unknown channel or channel tag 'pager'" in m for m in messages)
    assert rule.feeds == ("reuters", "afp")
    assert rule.channels == ("mail", "chat")


def test_shipped_rules_are_valid() -> None:
    ruleset = load_rules(Path(__file__).parent.parent / "rules")
    assert ruleset.errors == ()
    names = {r.name for r in ruleset.rules}
    assert {
        "troop-movements",
        "military-exercises",
        "sanctions",
        "weapons-deliveries",
        "diplomacy-talks",
        "invasion-warnings",
    } <= names


def test_query_errors_point_at_the_character(tmp_path: Path) -> None:
    write(
        tmp_path,
        "q.yaml",
        "rules:\n"
        "  - name: near\n"
        "    match: troops NEAR/5\n"  # NEAR at column 19
        "  - name: parens\n"
        '    match: "(troops OR tanks"\n'  # ( at column 13 (inside the quotes)
        "  - name: field\n"
        "    any: [colour:red]\n"  # unknown field at column 11
        "  - name: redos\n"
        "    any: ['/(a+)\\1/']\n"  # backreference refused
        "  - name: bare-near\n"
        "    match: NEAR/5 border\n",
    )
    text = "\n".join(messages(tmp_path))
    assert "q.yaml:3:19: NEAR needs a term on both sides" in text and "(rule 'near')" in text
    assert "q.yaml:5:13: unbalanced '(': add the closing ')' (rule 'parens')" in text
    assert "q.yaml:7:11: unknown field 'colour'" in text
    assert "q.yaml:9:" in text and "regular expression refused" in text
    assert "backreferences" in text
    assert "q.yaml:11:12: expected a term, found 'NEAR' (rule 'bare-near')" in text


def test_match_and_groups_combine(tmp_path: Path) -> None:
    write(
        tmp_path,
        "a.yaml",
        "rules:\n"
        "  - name: t\n"
        "    match: troops NEAR/5 border\n"
        "    none: ['title:opinion']\n"
        "    min_terms: 1\n"
        "    any: [sanction~, 'title:/^breaking/i', 'tank*']\n",
    )
    ruleset = load_rules(tmp_path)
    assert ruleset.errors == ()
    [rule] = ruleset.rules
    assert rule.min_terms == 1
