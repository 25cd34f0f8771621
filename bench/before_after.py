"""The web form of an earlier commit against this checkout, side by side in one run.

``python bench/before_after.py REF [--seconds 10] [--workers 2] [--backends sqlite]`` checks
REF out into a temporary git worktree and measures in turns, best of BENCH_REPEATS runs each
(as ``make bench`` does): the bare server, and the web form of REF and of this checkout on
Redis and on SQLite (``--backends``), one process each or ``--workers`` each. Both run with
this checkout's virtual environment (a REF that needs other dependencies cannot be measured
this way). Figures only.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, compare, flush_redis, gateway, row
from http_intake import bare_server, contender
from run import print_table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ref", help="the commit to compare with (a hash, a tag, HEAD~3 ...)")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--workers", type=int, default=1, help="gateway processes per side (the multi-process mode)")
    parser.add_argument("--backends", default="redis,sqlite", help="which registries to measure (default both)")
    args = parser.parse_args()
    processes = "1 process" if args.workers == 1 else f"{args.workers} processes"
    flush_redis()
    with ExitStack() as stack:
        before = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-before-"))) / "tree"
        subprocess.run(["git", "worktree", "add", "--detach", str(before), args.ref], cwd=ROOT, check=True,
                       capture_output=True)
        stack.callback(subprocess.run, ["git", "worktree", "remove", "--force", str(before)], cwd=ROOT,
                       capture_output=True)
        if (before / "setup.py").exists():  # its compiled modules, as the install builds them in this checkout
            subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=before, capture_output=True)
        bare = contender("http: bare aiohttp + XADD", bare_server(stack), args.seconds, 32)
        sides = [contender(f"http: web form, {backend}, {processes}, {name}",
                           stack.enter_context(gateway(backend, args.workers, flush=False, source=source)), args.seconds, 32)
                 for backend in args.backends.split(",") for name, source in ((args.ref, before), ("this checkout", ROOT))]
        compare([bare, *sides])
    base = bare.best()
    print_table([row(bare.name, base)] + [row(c.name, {**c.best(), "ratio": c.best()["rps"] / base["rps"]}) for c in sides])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
