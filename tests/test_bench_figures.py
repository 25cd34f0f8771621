"""The benchmark's figures (bench/common.py): how a side's runs are set against the bare
server's, turn by turn, and each thread's share of a load."""
from __future__ import annotations

import importlib.util
import os
import sys
import threading
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


def test_thread_shares_are_each_threads_time_over_the_load_a_new_thread_from_zero() -> None:
    before = {1: (10.0, 1.0), 2: (3.0, 0.5), 3: (1.0, 0.0)}  # thread 3 ends during the load
    after = {1: (19.5, 1.1), 2: (4.5, 0.9), 4: (0.25, 0.05)}  # thread 4 starts during it
    shares = bench_common.thread_shares(before, after, 10.0)
    assert [tid for tid, _, _ in shares] == [1, 2, 4]  # the busiest first
    (_, loop_on, loop_wait), (_, other_on, other_wait), (_, new_on, new_wait) = shares
    assert (round(loop_on, 6), round(loop_wait, 6)) == (0.95, 0.01)
    assert (round(other_on, 6), round(other_wait, 6)) == (0.15, 0.04)
    assert (round(new_on, 6), round(new_wait, 6)) == (0.025, 0.005)


def test_thread_times_read_this_process_threads() -> None:
    started, stop = threading.Event(), threading.Event()
    worker = threading.Thread(target=lambda: (started.set(), stop.wait()))
    worker.start()
    started.wait()
    try:
        times = bench_common.thread_times(os.getpid())
        assert os.getpid() in times and worker.native_id in times
        assert times[os.getpid()][0] > 0  # this thread has run
    finally:
        stop.set()
        worker.join()
