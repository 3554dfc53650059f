"""news-monitor: watch news feeds, match stories against YAML rules, store hits, alert."""

__version__ = "0.1.0"
