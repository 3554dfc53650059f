"""The rule loader's old address: it lives in :mod:`monitor.match.ruleset` now.

Kept only because ``monitor/feedsfile.py`` still imports ``load_rules`` from here; delete
this module once that import names :mod:`monitor.match`.
"""

from monitor.match.ruleset import load_rules

__all__ = ["load_rules"]
