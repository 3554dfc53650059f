"""The packages' import surface: monitor.deliver names its parts lazily, and reading the
settings (which checks templates with monitor.deliver.render_templates) does not load
apprise."""

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

import monitor.deliver
import monitor.store


@pytest.mark.parametrize("name", monitor.deliver.__all__)
def test_every_name_of_deliver_comes_from_its_module(name: str) -> None:
    value = getattr(monitor.deliver, name)
    homes = [
        module
        for module in ("channels", "send", "render_formats", "render_message", "render_templates")
        if getattr(importlib.import_module(f"monitor.deliver.{module}"), name, None) is value
    ]
    assert homes, name


def test_an_unknown_name_of_deliver_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        monitor.deliver.nothing  # noqa: B018


def loaded(imports: str, *modules: str) -> list[str]:
    """Which of ``modules`` a fresh interpreter has loaded after ``import {imports}``."""
    code = f"import sys, {imports}; print(' '.join(m for m in {modules!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.split()


@pytest.mark.process  # a fresh interpreter: what an import loads
def test_reading_settings_does_not_import_apprise() -> None:
    assert loaded("monitor.config, monitor.deliver.render_message", "apprise") == []


ROOT = Path(__file__).parent.parent / "monitor"


def test_database_libraries_are_imported_only_under_store() -> None:
    found = [
        str(path.relative_to(ROOT))
        for path in ROOT.rglob("*.py")
        if path.relative_to(ROOT).parts[0] != "store"
        and re.search(
            r"^\s*(import|from)\s+(sqlite3|sqlite_utils|psycopg)\b", path.read_text(), re.M
        )
    ]
    assert found == []


@pytest.mark.process  # a fresh interpreter: what an import loads
def test_the_storage_interface_loads_no_database_driver() -> None:
    imports = "monitor.store.interface, monitor.deliver.send, monitor.pipeline"
    assert loaded(imports, "sqlite3", "sqlite_utils") == []


@pytest.mark.process  # a fresh interpreter: what an import loads
def test_a_parse_worker_loads_the_matcher_without_the_rule_loader() -> None:
    # The forkserver preloads these for every parse worker (monitor/parse/pool.py): the
    # settings, YAML and templates that rule files need would cost each worker ~12 MiB.
    assert loaded("monitor.parse, monitor.match.matcher", "monitor.config", "yaml", "jinja2") == []


@pytest.mark.parametrize("name", monitor.store.__all__)
def test_every_name_of_store_resolves(name: str) -> None:
    assert getattr(monitor.store, name) is not None


def test_no_module_is_longer_than_one_sitting() -> None:
    lengths = {
        str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in ROOT.rglob("*.py")
    }
    assert {name: n for name, n in lengths.items() if n > 500} == {}
