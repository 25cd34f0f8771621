"""Precision and recall of the urgency rules on the labelled complaints in bench/data.

Prints figures (it asserts nothing): precision, recall and F1 for ``immediate``, the same
per language, a confusion table of expected against decided urgency, and the misses; for
each data set: ``urgency_labelled.jsonl`` (the rules were written alongside it) and
``urgency_holdout.jsonl`` (written after the rules were frozen: the honest figure).
Usage: ``python bench/urgency.py [--data FILE ...] [--rules-file FILE] [--verbose]``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from normalizer.urgency_rules import LEVELS, UrgencyRules

DATA_DIR = Path(__file__).resolve().parent / "data"
DATA = [DATA_DIR / "urgency_labelled.jsonl", DATA_DIR / "urgency_holdout.jsonl"]
ORDER = tuple(reversed(LEVELS))  # immediate, high, normal


def load(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def precision_recall(pairs: list[tuple[str, str]], level: str) -> tuple[float, float, float, int]:
    tp = sum(1 for want, got in pairs if want == level and got == level)
    fp = sum(1 for want, got in pairs if want != level and got == level)
    fn = sum(1 for want, got in pairs if want == level and got != level)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1, tp + fn


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, nargs="+", default=DATA)
    parser.add_argument("--rules-file", help="a rules file instead of the packaged one")
    parser.add_argument("--verbose", "-v", action="store_true", help="print every wrong decision")
    args = parser.parse_args(argv)

    rules = UrgencyRules.from_config({"rules_file": args.rules_file} if args.rules_file else {})
    for path in args.data:
        print(f"== {path.name}")
        report(rules, load(path), args.verbose)
        print()
    return 0


def report(rules: UrgencyRules, items: list[dict[str, Any]], verbose: bool) -> None:
    started = time.perf_counter()
    decided = []
    for item in items:
        match = rules.classify(item["text"])
        decided.append((item, match.level if match else "normal", match.rule if match else "-"))
    elapsed = time.perf_counter() - started

    print(f"{len(items)} labelled complaints ({', '.join(f'{k}: {v}' for k, v in sorted(Counter(i['lang'] for i in items).items()))}),"
          f" {len(rules.rules)} rules, {elapsed * 1000 / max(1, len(items)):.2f} ms per complaint\n")
    pairs = [(item["urgency"], got) for item, got, _ in decided]
    print(f"{'':10} {'precision':>9} {'recall':>7} {'f1':>6} {'support':>8}")
    for level in ("immediate", "high"):
        p, r, f1, support = precision_recall(pairs, level)
        print(f"{level:10} {p:9.3f} {r:7.3f} {f1:6.3f} {support:8d}")
    print("\nimmediate per language:")
    for lang in sorted({item["lang"] for item in items}):
        p, r, f1, support = precision_recall([(i["urgency"], g) for i, g, _ in decided if i["lang"] == lang], "immediate")
        print(f"  {lang:8} {p:9.3f} {r:7.3f} {f1:6.3f} {support:8d}")

    print("\nconfusion (rows: labelled, columns: decided):")
    counts = Counter(pairs)
    print(f"{'':12}" + "".join(f"{level:>11}" for level in ORDER))
    for want in ORDER:
        print(f"{want:12}" + "".join(f"{counts[(want, got)]:11d}" for got in ORDER))

    wrong = [(item, got, rule) for item, got, rule in decided if got != item["urgency"]]
    print(f"\n{len(wrong)} wrong decision(s)" + (":" if verbose and wrong else ""))
    if verbose:
        for item, got, rule in wrong:
            print(f"  {item['id']}: labelled {item['urgency']}, decided {got} ({rule}): {item['text']}")


if __name__ == "__main__":
    sys.exit(main())
