"""The old home of :mod:`monitor.config.yamlfile`, kept while monitor.ruleset still imports
the YAML loader from here; it can go once that import names monitor.config.yamlfile."""

from monitor.config.yamlfile import YamlList, YamlMap, load_yaml, located, offset_position

__all__ = ["YamlList", "YamlMap", "load_yaml", "located", "offset_position"]
