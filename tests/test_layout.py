"""The packages' import surface: monitor.deliver names its parts lazily, and reading the
settings (which checks templates with monitor.deliver.render_templates) does not load
apprise."""

import importlib
import subprocess
import sys

import pytest

import monitor.deliver


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


def test_reading_settings_does_not_import_apprise() -> None:
    code = (
        "import sys, monitor.config, monitor.deliver.render_message;print('apprise' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
