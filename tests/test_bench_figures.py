"""The benchmark's comparison figures (bench/common.py): how a side's runs are set against
the bare server's, turn by turn."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

# bench/ is scripts, not a package: its common.py is loaded under a name of its own
_spec = importlib.util.spec_from_file_location("bench_common", Path(__file__).resolve().parent.parent / "bench" / "common.py")
assert _spec is not None and _spec.loader is not None
bench_common = sys.modules["bench_common"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_common)
Contender, against = bench_common.Contender, bench_common.against


def measured(name: str, rates: list[float]) -> Contender:
    side = Contender(name, pid=0, measure=lambda: {})
    side.runs = [{"rps": rate, "cpu_ms": 0.1, "helper_cpu_ms": 0.0} for rate in rates]
    return side


def test_the_paired_ratio_is_the_median_of_each_turns_ratio_and_the_ratio_best_over_best() -> None:
    bare = measured("bare", [10_000, 6_000, 9_000])  # the neighbours were busy in the second turn
    full = measured("full", [5_500, 4_800, 5_400])
    figures = against(full, bare)
    assert figures["rps"] == 5_500
    assert figures["ratio"] == 0.55  # 5 500 / 10 000: the best runs came from different turns
    assert figures["paired"] == 0.6  # the turns' ratios 0.55, 0.8 and 0.6


def test_a_turn_whose_bare_run_answered_nothing_is_left_out() -> None:
    figures = against(measured("full", [5_000, 4_000]), measured("bare", [0.0, 8_000]))
    assert figures["paired"] == 0.5
