"""Precision and recall of the shipped rules on hand-labelled headlines.

    python benchmarks/rule_quality.py [--rules rules] [--data tests/data/headlines.yaml] [-v]

Each headline in the data file is labelled with the rules an analyst would want to fire.
Prints per-rule and overall (micro-averaged) precision and recall; -v lists every miss and
false alarm.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from monitor.match import Matcher, load_rules
from monitor.models import Article

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Score:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    false_alarms: list[str] = field(default_factory=list)
    misses: list[str] = field(default_factory=list)

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0


def evaluate(rules_dir: Path, data: Path) -> tuple[dict[str, Score], Score, int]:
    ruleset = load_rules(rules_dir)
    if ruleset.errors:
        raise SystemExit("\n".join(str(e) for e in ruleset.errors))
    matcher = Matcher(ruleset.rules)
    items = yaml.safe_load(data.read_text())
    scores = {rule.name: Score() for rule in ruleset.rules}
    total = Score()
    for index, item in enumerate(items):
        text, expect = item["text"], set(item["expect"])
        unknown = expect - scores.keys()
        if unknown:
            raise SystemExit(f"{data}: item {index}: unknown rule(s) {sorted(unknown)}")
        article = Article(feed="eval", uid=str(index), title=text, link="")
        got = {hit.rule for hit in matcher.match(article)}
        for name, score in scores.items():
            if name in got and name in expect:
                score.tp += 1
            elif name in got:
                score.fp += 1
                score.false_alarms.append(text)
            elif name in expect:
                score.fn += 1
                score.misses.append(text)
    for score in scores.values():
        total.tp += score.tp
        total.fp += score.fp
        total.fn += score.fn
    return scores, total, len(items)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--rules", type=Path, default=ROOT / "rules")
    parser.add_argument("--data", type=Path, default=ROOT / "tests/data/headlines.yaml")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    scores, total, count = evaluate(args.rules, args.data)
    print(f"{count} labelled headlines\n")
    print(f"{'rule':<22} {'TP':>4} {'FP':>4} {'FN':>4} {'precision':>10} {'recall':>8}")
    for name, s in scores.items():
        print(f"{name:<22} {s.tp:>4} {s.fp:>4} {s.fn:>4} {s.precision:>10.3f} {s.recall:>8.3f}")
    print(
        f"{'all (micro)':<22} {total.tp:>4} {total.fp:>4} {total.fn:>4} "
        f"{total.precision:>10.3f} {total.recall:>8.3f}"
    )
    if args.verbose:
        for name, s in scores.items():
            for text in s.false_alarms:
                print(f"FALSE ALARM {name}: {text}")
            for text in s.misses:
                print(f"MISS        {name}: {text}")


if __name__ == "__main__":
    main()
